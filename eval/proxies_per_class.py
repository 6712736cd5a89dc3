"""Several proxies per class against one (``--proxies-per-class K``: each class's similarity the
smooth maximum over its K proxies, as SoftTriple does) on Flowers-102, on unseen classes (the
paper's protocol) and on seen classes (the deep-hashing protocol).

    python -m eval.proxies_per_class --data ../shared/data/flowers102-112 --out bench-results/paper-frontier

Every run uses the short CPU schedule of ``eval.flowers_runs`` (3 epochs by default, then the code
stage) with Proxy Anchor's defaults (alpha 32, delta 0.1); K = 1 on unseen classes is the
sensitivity grid's default cell, reused when the same --out holds it. Reported: Recall@1 and MAP@R of
the float embedding and of the 64-bit codes at the end of each run. Finished runs are reused and the
report is rewritten after every run.
"""

from __future__ import annotations

import argparse
import logging

from eval.flowers_runs import add_schedule_options, run_name, train_run, training_seconds
from eval.publish import command_line, data_missing, parse_benchmark_args, publish

log = logging.getLogger("eval.proxies_per_class")

SPLITS = {"half": "unseen classes (the first half of the classes train)", "seen": "seen classes (a fifth of every class held out)"}
DEFAULT_ALPHA, DEFAULT_DELTA = 32, 0.1


def run(args, argv: list[str] | None) -> dict:
    rows, seconds = [], 0.0
    for split in args.splits:
        for k in args.k:
            variant = [*((f"k{k}",) if k > 1 else ()), *(("seen",) if split == "seen" else ())]
            result = train_run(args, run_name(DEFAULT_ALPHA, DEFAULT_DELTA, args.bits, *variant),
                               {"proxies_per_class": k, "bits": args.bits, "baseline": False, "eval_every": args.epochs}, split)
            final = result.history[-1]
            seconds += training_seconds(result)
            rows.append({"split": split, "k": k, "float": final["float"], "codes": final["codes"], "seconds": training_seconds(result)})
            report = {"rows": rows, "bits": args.bits, "epochs": args.epochs, "training_seconds": seconds,
                      "finished": len(rows) == len(args.splits) * len(args.k)}
            publish(args, "proxies-per-class", command_line("eval.proxies_per_class", argv), report, markdown(report, args))
    return report


def markdown(report: dict, args) -> str:
    lines = [f"Flowers-102, {args.backbone} ({args.weights} weights), {args.image_size} px, batch {args.batch_size}, {report['epochs']} epochs, "
             f"then the code stage; Proxy Anchor alpha {DEFAULT_ALPHA}, delta {DEFAULT_DELTA}; each run's end (nothing chosen on the test photos)."
             + ("" if report["finished"] else " (Unfinished: the rows so far.)"), "",
             f"| classes | proxies per class | float R@1 | float MAP@R | {report['bits']}-bit codes R@1 | codes MAP@R | training s |",
             "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {SPLITS[r['split']]} | {r['k']} | {r['float']['recall@1']:.4f} | {r['float']['map@r']:.4f} | "
                     f"{r['codes']['recall@1']:.4f} | {r['codes']['map@r']:.4f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_schedule_options(parser, epochs=3, code_views=1)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4], help="proxies per class")
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    parser.add_argument("--bits", type=int, default=64)
    args = parse_benchmark_args(parser, "proxies-per-class", argv)
    if data_missing(args.data, "proxies per class"):
        return
    run(args, argv)


if __name__ == "__main__":
    main()
