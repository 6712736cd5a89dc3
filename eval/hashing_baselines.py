"""Deep-hashing baselines on Flowers-102, the deep-hashing protocol: hashpa's default design against
the deep-hashing methods as their papers define them (``hashpa train --method``: CSQ, OrthoHash,
HashNet, DPSH, GreedyHash, each training backbone and hash layer by its own loss alone), and
against PCA-ITQ of hashpa's float embedding, on the same backbone, data and schedule.

    python -m eval.hashing_baselines --data ../shared/data/flowers102-112 --out bench-results/hashing-baselines

Seen classes (a fifth of every class held out, each test photo querying the others), the cpu-quick
recipe for 3 epochs, the first with the backbone frozen (``--frozen-epochs``, hashpa's warm-up) and
the others fine-tuning it, for every method; the photos decoded once (``--data-path cache``) and
one evaluation at the end. hashpa keeps its defaults, the code stage included (over the plain
training photos only, ``--code-views 0``, on the CPU schedule); PCA-ITQ is fitted to hashpa's
training embeddings. The report is rewritten after every run, so an interrupted benchmark leaves
the rows it finished. Reported: mAP@ALL (by id and tie-aware), mAP@1000, P@H<=2 and Recall@1 of the
codes, of each run's last checkpoint (nothing is chosen on the test photos). Finished runs are
reused (interrupt and rerun: it continues).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import hashpa
from eval.flowers_runs import trained
from eval.publish import command_line, data_missing, parse_benchmark_args, publish
from hashpa.devices import distance_device
from hashpa.embed import embed_labelled
from hashpa.methods import HASHPA, METHOD_NAMES, METHODS
from hashpa.metrics.hashing import hashing_scores
from hashpa.metrics.retrieval import retrieval_scores
from hashpa.quantizers import fit_itq
from hashpa.runs.data import run_config, run_split

log = logging.getLogger("eval.hashing_baselines")

def train_run(args, method: str, bits: int) -> Path:
    """The run of `method` at `bits`: trained, continued, or reused when finished."""
    out = args.out / "runs" / f"{method}-{bits}bit"
    settings = {"data": str(args.data), "split": "seen", "preset": "cpu-quick", "bits": bits, "epochs": args.epochs, "method": method,
                "warmup_epochs": args.frozen_epochs, "workers": args.workers, "out": str(out), "baseline": False, "eval_every": 0,
                "data_path": "cache", **({"code_views": args.code_views} if method == HASHPA else {}),
                **{name: getattr(args, name) for name in ("backbone", "weights", "image_size", "batch_size") if getattr(args, name) is not None}}
    trained(out, settings)
    return out


def scores_of(codes, labels, metric: str, device) -> dict:
    hashing = hashing_scores(codes, labels, metric=metric, device=device)
    recall = retrieval_scores(codes, labels, metric=metric, ks=(1,), device=device)
    keep = ("map@all", "map@all_tie_aware", "map@1000", "p@h<=2", "p@h<=2_empty")
    return {**{k: hashing[k] for k in keep if k in hashing}, "recall@1": recall["recall@1"]}


def run(args, argv: list[str] | None) -> dict:
    rows, split, report = [], None, {}
    with_pa = HASHPA in args.methods  # adds a PCA-ITQ row at each length and one float row
    expected = len(args.bits) * (len(args.methods) + with_pa) + with_pa
    for bits in args.bits:
        for design in args.methods:
            out = train_run(args, design, bits)
            model = hashpa.load(out, "last", device=args.device)  # the end of training: nothing chosen on the test photos
            split = run_split(run_config(out))
            loader = dict(device=model.device, workers=args.workers)
            test = embed_labelled(model.network, split.test, progress="test images", **loader)
            device = distance_device(model.device)
            rows.append({"bits": bits, "method": METHODS[design].title, "design": design, **scores_of(test.codes, test.labels, "hamming", device)})
            if design == HASHPA:
                train = embed_labelled(model.network, split.train, progress="training images", **loader)
                itq = fit_itq(train.embeddings, bits, seed=0).encode(test.embeddings)
                rows.append({"bits": bits, "method": "PCA-ITQ of hashpa's float embedding (fitted to the training photos)",
                             "design": "pca_itq", **scores_of(itq, test.labels, "hamming", device)})
                if bits == args.bits[0]:
                    rows.append({"bits": None, "method": "hashpa's float embedding (cosine)", "design": "float",
                                 **scores_of(test.embeddings, test.labels, "cosine", device)})
            log.info("%s", rows[-1])
            report = {"split": split.description.replace(str(args.data.resolve()), str(args.data)),  # the path as given, not this machine's
                       "epochs": args.epochs, "frozen_epochs": args.frozen_epochs, "code_views": args.code_views,
                      "rows": rows, "finished": len(rows) == expected}
            publish(args, "hashing-baselines", command_line("eval.hashing_baselines", argv), report, markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"Flowers-102, {report['split']}: cpu-quick recipe, {report['epochs']} epochs (the backbone frozen for "
             f"{report['frozen_epochs']}, then fine-tuned), hashpa's code stage over {report['code_views']} augmented views beside the plain one, "
             "each test photo querying the others; each run's last checkpoint." + ("" if report["finished"] else " (Unfinished: the rows so far.)"), "",
             "| bits | method | mAP@ALL | mAP@ALL (ties averaged) | mAP@1000 | P@H<=2 (queries finding none) | R@1 |",
             "|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        tie = f"{row['map@all_tie_aware']:.4f}" if "map@all_tie_aware" in row else "-"
        radius = f"{row['p@h<=2']:.4f} ({row['p@h<=2_empty']:,})" if "p@h<=2" in row else "-"
        lines.append(f"| {row['bits'] or 'float'} | {row['method']} | {row['map@all']:.4f} | {tie} | {row['map@1000']:.4f} | {radius} | "
                     f"{row['recall@1']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flowers102-112"))
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(METHOD_NAMES))
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (the CPU schedule: the cpu-quick recipe's batch and size, fewer epochs)")
    parser.add_argument("--frozen-epochs", type=int, default=1, help="epochs with the backbone frozen (the first ones; hashpa's warm-up)")
    parser.add_argument("--code-views", type=int, default=0, help="augmented passes of the training photos in Proxy Anchor's code stage "
                                                                   "(the CPU schedule: the plain pass only; hashpa train's default is 3)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backbone", help="instead of the recipe's (tests use a small one)")
    parser.add_argument("--weights")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--batch-size", type=int)
    args = parse_benchmark_args(parser, "hashing-baselines", argv)
    if data_missing(args.data, "hashing baselines"):
        return
    run(args, argv)


if __name__ == "__main__":
    main()
