"""Cold ``hashpa search INDEX photo.jpg``: the real command in a fresh process each time, its query
embedded by onnxruntime from the run's ONNX export (``--engine onnx``) against PyTorch from its
checkpoint (``--engine torch``), alternated in one run; the wall time of each (median and best of
the repeats), the time of ``import torch`` alone, whether both engines answer alike, and the export
(its size, and how closely onnxruntime reproduces torch). Every index's run is exported first
(``hashpa export``, replacing an earlier export of its own).

    python -m eval.bench_cold_search indexes/demo indexes/lite0 --benchmarks docs/benchmarks/deploy.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from eval.publish import command_line, parse_benchmark_args, publish
from hashpa.export import export
from hashpa.indexdir.layout import model_source, read_meta
from hashpa.indexdir.open import IndexDir

ENGINES = ("onnx", "torch")


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def hashpa_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hashpa.cli", *args]


def measure_index(index: Path, query: Path | None, repeats: int) -> dict:
    meta = read_meta(index)
    run = model_source(index, meta)
    summary = export(run, checkpoint=meta.checkpoint, overwrite=False)
    query = query or _first_image(index)
    seconds: dict[str, list[float]] = {engine: [] for engine in ENGINES}
    answers: dict[str, list] = {}
    for _ in range(repeats):
        for engine in ENGINES:
            took, out = timed(hashpa_command("search", str(index), str(query), "-k", "10", "--json", "--engine", engine))
            seconds[engine].append(took)
            answers[engine] = json.loads(out)[0]["hits"]
    same_rows = [h["row"] for h in answers["onnx"]] == [h["row"] for h in answers["torch"]]
    score_gap = float(np.abs(np.array([h["score"] for h in answers["onnx"]]) - np.array([h["score"] for h in answers["torch"]])).max())
    return {"index": str(index), "rows": meta.rows, "backbone": _backbone(run), "bits": meta.bits, "query": str(query),
            "export_bytes": summary.bytes, "embedding_difference": summary.embedding_difference, "logit_difference": summary.logit_difference,
            "seconds": {e: {"median": round(statistics.median(s), 3), "best": round(min(s), 3), "all": [round(x, 3) for x in s]}
                        for e, s in seconds.items()},
            "same_hits": same_rows, "largest_score_difference": score_gap}


def _first_image(index: Path) -> Path:
    with IndexDir(index) as opened:
        return opened.image_root() / opened.store.paths[0]


def _backbone(run: Path) -> str:
    return json.loads((run / "config.json").read_text(encoding="utf-8"))["model"]["backbone"]


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]
    import_torch = [timed([sys.executable, "-c", "import torch"])[0] for _ in range(args.repeats)]
    indexes = [measure_index(index, args.query, args.repeats) for index in args.indexes]
    return {"repeats": args.repeats, "import_torch_seconds": round(statistics.median(import_torch), 3), "indexes": indexes,
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "cores": os.cpu_count()}


def markdown(r: dict) -> str:
    lines = [f"Each figure: the median (best) wall time of {r['repeats']} cold runs of `hashpa search INDEX QUERY -k 10 --json --engine E`, "
             f"the engines alternated; `python -c \"import torch\"` alone takes {r['import_torch_seconds']:.2f} s (median) on this machine. "
             f"Load average {r['load_average'][0]} before, {r['load_average'][1]} after"
             f"{' (a busy machine: slower figures than an idle one)' if max(r['load_average']) > r['cores'] else ''}.", "",
             "| index | backbone, bits | rows | onnx s | torch s | same top 10 | export bytes | onnxruntime against torch |",
             "|---|---|---|---|---|---|---|---|"]
    for i in r["indexes"]:
        onnx, torch = i["seconds"]["onnx"], i["seconds"]["torch"]
        lines.append(f"| `{Path(i['index']).name}` | {i['backbone']}, {i['bits']} | {i['rows']:,} | {onnx['median']:.2f} ({onnx['best']:.2f}) | "
                     f"{torch['median']:.2f} ({torch['best']:.2f}) | {'yes' if i['same_hits'] else 'no'} (scores within "
                     f"{i['largest_score_difference']:.0e}) | {i['export_bytes']:,} | embeddings {i['embedding_difference']:.0e}, "
                     f"hash logits {i['logit_difference']:.0e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("indexes", type=Path, nargs="+", help="index directories (their runs are exported first)")
    parser.add_argument("--query", type=Path, help="the query photo (default: the first image of each index)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parse_benchmark_args(parser, "cold-search", argv)
    results = run(args)
    publish(args, "cold-search", command_line("eval.bench_cold_search", argv), results, markdown(results))


if __name__ == "__main__":
    main()
