"""The deep-hashing field's benchmark: CIFAR-10 at the ``cifar10`` protocol (1,000 queries, 100 a
class; 5,000 training photos, 500 a class; the other 54,000 the database), hashpa's default design
against the deep-hashing methods as their papers define them (``hashpa train --method``), every
run on the same backbone, resolution, augmentation, epochs and seed.

    python -m eval.cifar10 --root ../shared/data/cifar10 --benchmarks docs/benchmarks/cifar10.md

The CPU schedule: tf_efficientnet_lite0 with its ImageNet weights, the 32-px photos enlarged to
64 px, 6 epochs of batch 64 (the first with the backbone frozen, as every hashpa run), frozen
BatchNorm, the photos decoded once (``--data-path cache``), no evaluation during training: each
run's last checkpoint is evaluated once by ``hashpa eval`` (mAP@ALL by id and tie-aware,
mAP@1000, P@H<=2, Recall@1 of the codes; nothing is chosen on the queries). The first length
(``--bits``) runs every method and variant; ``--more-bits`` then runs hashpa, the best baseline
at the first length and the variants named by ``--more-variants``. Finished runs and evaluations
are reused, interrupted runs continued; the page is rewritten after every run, so an interrupted
benchmark leaves the rows it has.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from eval.flowers_runs import trained, training_seconds
from eval.publish import command_line, data_missing, parse_benchmark_args, publish
from hashpa.fileio import write_json_atomic
from hashpa.methods import HASHPA, METHOD_NAMES, METHODS
from hashpa.report.evaluation import evaluate

log = logging.getLogger("eval.cifar10")

# Published figures on CIFAR-10, mAP over the whole database, each with its backbone, resolution, protocol and
# source: what others measured, on other backbones and schedules, so not comparable row for row. "cifar10-59k":
# 1,000 queries against the other 59,000, the training photos drawn from them. No CIFAR-10 figure of CSQ's or
# OrthoHash's papers is quoted here: CSQ's paper reports none (its repository neither); HashNet's authors say
# they report none; the rows of those methods are the reference re-implementations'.
PUBLISHED = [
    {"method": "DPSH (its paper)", "bits": "12 / 24 / 32 / 48", "map": "0.713 / 0.727 / 0.744 / 0.757", "backbone": "CNN-F (VGG-F)",
     "size": 224, "protocol": "cifar10", "source": "Li et al., IJCAI 2016, as quoted in the README of jiangqy/DPSH-pytorch"},
    {"method": "DPSH (DeepHash-pytorch)", "bits": "48", "map": "0.775", "backbone": "AlexNet", "size": 224, "protocol": "cifar10",
     "source": "swuxyj/DeepHash-pytorch README"},
    {"method": "HashNet (DeepHash-pytorch)", "bits": "48", "map": "0.782", "backbone": "AlexNet", "size": 224, "protocol": "cifar10",
     "source": "swuxyj/DeepHash-pytorch README"},
    {"method": "GreedyHash (its paper)", "bits": "48", "map": "0.822", "backbone": "as the paper", "size": 224, "protocol": "cifar10-59k",
     "source": "Su et al., NeurIPS 2018, as quoted in the swuxyj/DeepHash-pytorch README (its own run: 0.817, AlexNet)"},
    {"method": "CSQ (DeepHash-pytorch)", "bits": "64", "map": "0.787", "backbone": "AlexNet", "size": 224, "protocol": "cifar10-59k",
     "source": "swuxyj/DeepHash-pytorch, CSQ.py's record of its run"},
    {"method": "OrthoHash (its repository)", "bits": "64", "map": "0.824 (best epoch)", "backbone": "AlexNet", "size": 224,
     "protocol": "cifar10-59k", "source": "kamwoh/orthohash README"},
]

# Variants of hashpa's design (method hashpa with these settings), run at the first length after the methods.
VARIANTS = {
    "hashpa-orthohash-codes": ("hashpa, its codes trained by OrthoHash's loss with the backbone (no code stage)",
                               {"code_loss": "orthohash", "codes_train_backbone": True, "code_epochs": 0}),
    "hashpa-no-spread": ("hashpa without the terms that spread codes for new classes (no distillation, no bit decorrelation)",
                         {"distill_weight": 0.0, "decorrelation_weight": 0.0}),
    "hashpa-codes-train-backbone": ("hashpa, the code loss's gradients reaching the backbone",
                                    {"codes_train_backbone": True}),
    "hashpa-orthohash-stage": ("hashpa, its code stage fitting the hash head by OrthoHash's loss (each class gathered at one codeword)",
                               {"code_objective": "orthohash"}),
}

KEPT = ("map@all", "map@all_tie_aware", "map@1000", "p@h<=2", "p@h<=2_empty")


def run_settings(args: argparse.Namespace, design: str, bits: int, out: Path) -> dict:
    method, overrides = (HASHPA, VARIANTS[design][1]) if design in VARIANTS else (design, {})
    return {"dataset": args.protocol, "root": str(args.root), "method": method, "bits": bits, "out": str(out), "seed": args.seed, **overrides,
            "backbone": args.backbone, "weights": args.weights, "image_size": args.image_size, "epochs": args.epochs,
            "batch_size": args.batch_size, "freeze_bn": True, "data_path": "cache", "baseline": False, "eval_every": 0,
            "workers": args.workers, "device": args.device, **({"code_views": args.code_views} if method == HASHPA else {})}


def measured(args: argparse.Namespace, method: str, bits: int) -> dict:
    """The row of `method` at `bits`: trained (or continued, or reused), then its last checkpoint
    evaluated (or the saved evaluation read back)."""
    name = f"{method}-{bits}bit"
    run_dir, saved = args.out / "runs" / name, args.out / "evaluations" / f"{name}.json"
    started = time.perf_counter()
    result = trained(run_dir, run_settings(args, method, bits, run_dir))
    if saved.is_file():
        report = json.loads(saved.read_text(encoding="utf-8"))
    else:
        report = evaluate(run_dir, checkpoint="last", device=args.device, workers=args.workers)
        write_json_atomic(saved, report)
    codes = report["hashing"]["codes"]
    recall = next(row for row in report["rows"] if row["key"] == "codes")["recall@1"]
    log.info("%s ready in %.0f s", name, time.perf_counter() - started)
    return {"method": method, "bits": bits, **{k: codes[k] for k in KEPT}, "recall@1": recall,
            "train_seconds": round(training_seconds(result)), "eval_seconds": round(report["seconds"]), "split": report["split"]}


def plan(args: argparse.Namespace, rows: list[dict]) -> list[tuple[str, int]]:
    """The (method, bits) runs still to come: every method and variant at the first length, then
    hashpa, the best baseline there (by mAP@ALL) and the chosen variants at the others."""
    first = [(m, args.bits) for m in [*args.methods, *args.variants]]
    done = {(r["method"], r["bits"]) for r in rows}
    if not all(run in done for run in first):
        return [run for run in first if run not in done][:1]
    baselines = [r for r in rows if r["bits"] == args.bits and r["method"] in METHODS and r["method"] != HASHPA]
    best = [max(baselines, key=lambda r: r["map@all"])["method"]] if baselines else []
    chosen = [m for m in [HASHPA, *best] if m in args.methods] + [v for v in args.more_variants if v in args.variants]
    return [(m, b) for b in args.more_bits for m in chosen if (m, b) not in done][:1]


def run(args: argparse.Namespace, argv: list[str] | None) -> dict:
    rows: list[dict] = []
    report: dict = {}
    while True:
        upcoming = plan(args, rows)
        if upcoming:
            rows.append(measured(args, *upcoming[0]))
        finished = not plan(args, rows)
        report = {"protocol": args.protocol, "rows": rows, "finished": finished, "published": PUBLISHED,
                  "schedule": {k: getattr(args, k) for k in ("backbone", "image_size", "epochs", "batch_size", "seed")}}
        publish(args, "cifar10", command_line("eval.cifar10", argv), report, markdown(report))
        if finished:
            return report


def markdown(report: dict) -> str:
    s = report["schedule"]
    split = report["rows"][0]["split"].split(" at ")[0] if report["rows"] else report["protocol"]
    lines = [f"{split}. Every method: {s['backbone']} (ImageNet weights) at {s['image_size']} px, {s['epochs']} epochs of batch "
             f"{s['batch_size']} (the first with the backbone frozen), seed {s['seed']}, the last checkpoint; the photos are JPEG "
             "re-encodings (quality 75) of CIFAR-10's pixels." + ("" if report["finished"] else " (Unfinished: the rows so far.)"), "",
             "| bits | method | mAP@ALL | mAP@ALL (ties averaged) | mAP@1000 | P@H<=2 (queries finding none) | R@1 | training s |",
             "|---|---|---|---|---|---|---|---|"]
    order = [*METHOD_NAMES, *VARIANTS]
    for row in sorted(report["rows"], key=lambda r: (r["bits"], order.index(r["method"]))):
        title = METHODS[row["method"]].title if row["method"] in METHODS else VARIANTS[row["method"]][0]
        lines.append(f"| {row['bits']} | {title} | {row['map@all']:.4f} | {row['map@all_tie_aware']:.4f} | "
                     f"{row['map@1000']:.4f} | {row['p@h<=2']:.4f} ({row['p@h<=2_empty']:,}) | {row['recall@1']:.4f} | "
                     f"{row['train_seconds']:,} |")
    lines += ["", "Published figures (mAP over the whole database; other backbones, 224 px and schedules of 50-150 epochs on a GPU: "
              "a reference for the order of magnitude, not a row-by-row comparison):", "",
              "| method | bits | mAP@ALL | backbone | px | protocol | source |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['bits']} | {r['map']} | {r['backbone']} | {r['size']} | {r['protocol']} | {r['source']} |" for r in PUBLISHED]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("../shared/data/cifar10"), help="CIFAR-10 as train/<class>/ and test/<class>/")
    parser.add_argument("--protocol", default="cifar10", choices=("cifar10", "cifar10-59k", "cifar10-50k"))
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(METHOD_NAMES))
    parser.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=list(VARIANTS),
                        help="variants of hashpa's design, at the first length")
    parser.add_argument("--more-variants", nargs="*", choices=list(VARIANTS), default=["hashpa-orthohash-stage"],
                        help="variants that also run at the other lengths")
    parser.add_argument("--bits", type=int, default=64, help="the length every method runs at")
    parser.add_argument("--more-bits", type=int, nargs="*", default=[16, 32, 48], help="lengths for hashpa and the best baseline")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--weights", default="imagenet")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--code-views", type=int, default=3, help="hashpa's code stage: augmented passes of the training photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=1)
    args = parse_benchmark_args(parser, "cifar10", argv)
    if data_missing(args.root, "CIFAR-10"):
        return
    run(args, argv)


if __name__ == "__main__":
    main()
