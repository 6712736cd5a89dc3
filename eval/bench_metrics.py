"""How long an SOP-sized evaluation takes: every one of N images queries the other N - 1.

    python -m eval.bench_metrics --n 60000 --out bench-results/metrics-cpu

Synthetic data shaped like Stanford Online Products' test set (N images in classes of about 5):
float 512-d embeddings (cosine) and 64-bit codes (Hamming). Reports seconds and the peak memory
the evaluation added (resident-set high-water mark), for Recall@1/2/4/8, tie-aware Recall and MAP@R
computed in chunks. Writes metrics.json and metrics.md.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from eval.publish import command_line, parse_benchmark_args, publish
from hashpa.metrics import evaluate_retrieval

log = logging.getLogger("eval.bench_metrics")


def _rss(field: str) -> int:
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=60_000)
    parser.add_argument("--per-class", type=int, default=5)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--bits", type=int, default=64)
    args = parse_benchmark_args(parser, "metrics", argv)
    rng = np.random.default_rng(0)
    labels = np.arange(args.n) // args.per_class
    centres = rng.standard_normal((labels[-1] + 1, args.dim), dtype=np.float32)
    embeddings = centres[labels] + rng.standard_normal((args.n, args.dim), dtype=np.float32)
    codes = np.packbits(embeddings @ rng.standard_normal((args.dim, args.bits), dtype=np.float32) > 0, axis=1)
    rows = []
    for name, data, metric in (("float", embeddings, "cosine"), ("codes", codes, "hamming")):
        before = _rss("VmRSS")
        open("/proc/self/clear_refs", "w").write("5")
        result = evaluate_retrieval(data, labels, metric=metric)
        rows.append({"representation": name, "metric": metric, "seconds": result["seconds"], "peak_added_bytes": _rss("VmHWM") - before,
                     "recall@1": result["recall"][1], "map_at_r": result["map_at_r"]})
        log.info("%s", rows[-1])
    lines = ["", f"{args.n:,} queries x {args.n - 1:,} database items each ({args.dim}-d floats, {args.bits}-bit codes):", "",
             "| representation | seconds | memory added | Recall@1 | MAP@R |", "|---|---|---|---|---|"]
    lines += [f"| {r['representation']} ({r['metric']}) | {r['seconds']:.1f} | {r['peak_added_bytes'] / 2**20:,.0f} MiB "
              f"| {r['recall@1']:.4f} | {r['map_at_r']:.4f} |" for r in rows]
    publish(args, "metrics", command_line("eval.bench_metrics", argv), {"rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
