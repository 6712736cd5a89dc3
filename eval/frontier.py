"""The quality-per-byte frontier on Flowers-102's unseen classes: one trained run, its test split
indexed, every representation of the same embeddings side by side (``hashpa compare --frontier``,
plus the asymmetric modes of codes fitted to the photos).

    python -m eval.frontier bench-results/flowers-64-cpu/runs/proxy_anchor-64bit --benchmarks BENCHMARKS.md --plot docs/frontier.png

Speeds are on --threads FAISS threads (1 by default: the figures of one core).
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import hashpa
from eval.publish import command_line, parse_benchmark_args, publish
from hashpa.report import compare
from hashpa.report.plots import plot_compare

log = logging.getLogger("eval.frontier")


def run(args) -> dict:
    index, fitted = args.out / "index", args.out / "index-itq"
    if not (index / "index.json").is_file():
        hashpa.build_index(None, args.run, index, split="test")
    if not (fitted / "index.json").is_file():
        shutil.rmtree(fitted, ignore_errors=True)
        shutil.copytree(index, fitted)  # the same embeddings: only the codes are fitted again
        hashpa.build_index(None, args.run, fitted, split="test", codes="itq")
    settings = {"threads": args.threads, "repeats": args.repeats, "latency_queries": args.latency_queries}
    report = compare(index, frontier=True, out=args.out / "model-codes", **settings)
    asymmetric = compare(fitted, out=args.out / "fitted-codes", **settings)
    rows = report["methods"] + [dict(row, method=f"{row['method']} (PCA-ITQ {asymmetric['bits']} bits)")
                                for row in asymmetric["methods"] if row["mode"] == "asymmetric"]
    return {**report, "run": str(args.run), "methods": rows}


def comparisons(rows: dict) -> list[str]:
    """Plain sentences on who wins at equal bytes, from the measured rows."""
    said = []
    code64 = rows.get("binary BFlat")
    for pq, bits in (("PQ8", 64), ("PQ16", 128), ("PQ32", 256)):
        itq = rows.get(f"PCA-ITQ {bits} bits")
        if pq in rows and itq:
            better, worse = (rows[pq], itq) if rows[pq]["recall@1"] > itq["recall@1"] else (itq, rows[pq])
            said.append(f"At {bits // 8} bytes per image {better['method']} (R@1 {better['recall@1']:.3f}, {better['queries_per_second']:,.0f} q/s) "
                        f"beats {worse['method']} (R@1 {worse['recall@1']:.3f}, {worse['queries_per_second']:,.0f} q/s).")
    if code64 and "PQ8" in rows:
        said.append(f"The model's own 64-bit codes: R@1 {code64['recall@1']:.3f} at {code64['queries_per_second']:,.0f} q/s, "
                    f"against PQ8's {rows['PQ8']['recall@1']:.3f} at {rows['PQ8']['queries_per_second']:,.0f} q/s.")
    return said


def markdown(report: dict) -> str:
    lines = [f"Run `{report['run']}`, its unseen test classes indexed ({report['database']:,} photos, each querying the others); "
             f"{report['dim']}-d float embeddings; speeds on {report['methods'][0].get('threads', 'the given')} FAISS threads.", "",
             "| method | R@1 | R@4 | MAP@R | bytes/image | queries/s | p50 ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(report["methods"], key=lambda r: r["bytes_per_image"]):
        lines.append(f"| {row['method']} | {row['recall@1']:.4f} | {row['recall@4']:.4f} | {row['map@r']:.4f} | {row['bytes_per_image']:,.1f} "
                     f"| {row['queries_per_second']:,.0f} | {row['latency_p50_ms']:.3f} |")
    lines += ["", "Bytes per image: each image's code in the index (frontier rows: FAISS's code size, codebooks apart); rerank adds the floats.", ""]
    lines += comparisons({row["method"]: row for row in report["methods"]})
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a trained run directory (its test split is indexed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--plot", type=Path, help="also write the plot here (e.g. docs/frontier.png)")
    args = parse_benchmark_args(parser, "frontier", argv)
    report = run(args)
    for row in report["methods"]:
        row["threads"] = args.threads
    plot_compare(report, args.out / "frontier.png")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "frontier.png", args.plot)
    publish(args, "frontier", command_line("eval.frontier", argv), report, markdown(report))


if __name__ == "__main__":
    main()
