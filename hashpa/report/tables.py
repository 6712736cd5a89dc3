"""Reports as text: the compare table, the eval table and the training summary."""

from __future__ import annotations

from hashpa.fileio import size_text
from hashpa.indexdir.layout import CODE_SOURCES
from hashpa.metrics.retrieval import RECALL_KS
from hashpa.report.machine import describe_machine
from hashpa.report.pareto import limits_text


def compare_table(report: dict) -> str:
    """``hashpa compare``'s report as a Markdown table with its footnotes."""
    ks = report["ks"]
    front = report.get("fronts", {})
    header = ["method"] + [f"R@{k}" for k in ks] + ["MAP@R", "queries/s", "p50 ms", "p99 ms", "bytes/image", "on disk"] + (["front"] if front else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["methods"]:
        recalls = [f"{row[f'recall@{k}']:.4f}" if f"recall@{k}" in row else "-" for k in ks]
        cells = [row["method"] + (f" (shortlist {row['shortlist']})" if row.get("shortlist") else ""), *recalls,
                 f"{row['map@r']:.4f}" if "map@r" in row else "-", f"{row['queries_per_second']:,.0f}",
                 _ms(row["latency_p50_ms"]), _ms(row["latency_p99_ms"]), f"{row['bytes_per_image']:.1f}", size_text(row["index_bytes"])]
        if front:
            cells.append(", ".join(name for name, members in front.items() if row["method"] in members) or "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{report['database']:,} images, {report['queries']:,} queries ({report['protocol']}); "
                 f"{report['bits']}-bit codes ({CODE_SOURCES[report.get('code_source', 'model')]}), "
                 f"{report['dim']}-d floats; speed at k={report['speed_k']}.")
    unjudged = report.get("labelled_queries", 0) - report.get("judged_queries", report.get("labelled_queries", 0))
    if unjudged:
        lines.append(f"{unjudged:,} labelled queries have no other image of their class in the index: Recall and MAP leave them out "
                     f"(they average over {report['judged_queries']:,}).")
    if any(row["mode"] == "frontier" for row in report["methods"]):
        lines.append("Frontier rows (float16 to PCA-ITQ): other representations of the same float embeddings, fitted to this database "
                     "without labels and held in memory, not index files (hashpa compare --frontier); their bytes/image are each image's code, "
                     "their size in all (codebooks and matrices included) is under on disk.")
    lines.append("bytes/image: what each image adds to what a method keeps in memory (codes, embeddings, index entries); "
                 "quantisers and codebooks, kept once, are counted under on disk, which is everything it keeps.")
    if front:
        lines.append("front: on the Pareto front of Recall@1 against bytes per image (bytes) or against queries/s (speed): "
                     "no other method is as good in both and better in one.")
    if "choice" in report:
        choice = report["choice"]
        lines.append(f"Best within {limits_text(choice['budget_bytes'], choice['min_qps'])}: "
                     + (f"{choice['method']}, {choice['reason']}." if choice["method"] else f"none, {choice['reason']}."))
    lines.append(f"Machine: {describe_machine(report['machine'])}")
    load = report.get("load_average")
    if load:
        spread = max((row.get("batched_spread", 0.0) for row in report["methods"]), default=0.0)
        lines.append(f"Batched: the median of the timed repeats (largest spread {spread:.0%}); single queries on {report.get('latency_threads', 1)} "
                     f"FAISS thread; load average {load['before']:.1f} before, {load['after']:.1f} after"
                     + (" (a busy machine: slower and erratic figures)." if load["before"] > 0.5 * (report["machine"]["cpu_cores"] or 1) else "."))
    if "skipped" in report.get("hashing", {}):
        lines += ["", f"Deep-hashing protocol left out: {report['hashing']['skipped']}."]
    elif report.get("hashing"):
        lines += ["", hashing_table(report["hashing"]), "", "Over the stored float embeddings and the codes the binary indexes hold, "
                  "each query ranking the whole database (whatever index a method searches)."]
    return "\n".join(lines)


def eval_table(report: dict) -> str:
    """``hashpa eval``'s report as a Markdown table with a header line."""
    after = " after the code stage" if report["after_code_stage"] else ""
    ks = [k for k in RECALL_KS if f"recall@{k}" in report["rows"][0]]
    lines = [
        f"{report['run']} ({report['checkpoint']}: epoch {report['epoch']}{after}) on {report['split']}: "
        f"{report['queries']:,} queries, {report['database']:,} database images each",
        "",
        "| method | size | " + " | ".join(f"R@{k}" for k in ks) + " | expected R@1 (ties) | MAP@R |",
        "|---|---|" + "---|" * len(ks) + "---|---|",
    ]
    for row in report["rows"]:
        size = f"{row['bits']} bits" if "bits" in row else f"{row['dim']}-d"
        expected = f"{row['expected_recall@1']:.4f}" if "expected_recall@1" in row else "-"
        lines.append(f"| {row['method']} | {size} | " + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in ks) + f" | {expected} | {row['map@r']:.4f} |")
    if len(report["rows"]) > 2:
        lines.append("\nLSH and PCA-ITQ rows are fitted to the training images; \"fitted to the test photos\" to the database "
                     "itself, without labels (hashpa index --codes itq); asymmetric: the queries' real-valued projections against those codes.")
    if "skipped" in report.get("hashing", {}):
        lines += ["", f"Deep-hashing protocol left out: {report['hashing']['skipped']}."]
    elif "hashing" in report:
        lines += ["", hashing_table(report["hashing"])]
    lines.append(f"\n{report['seconds']:.0f} s on {describe_machine(report['machine'])}")
    return "\n".join(lines)


def hashing_table(hashing: dict) -> str:
    """The deep-hashing protocol's figures (``hashpa.metrics.hashing``) of each representation, as Markdown."""
    first = next(iter(hashing.values()))
    maps = [key for key in first if key.startswith("map@") and not key.endswith("tie_aware") and key != "map@all"]
    precisions = [key for key in first if key.startswith("precision@")]
    header = ["representation", *(key.replace("map@", "mAP@") for key in maps), "mAP@ALL", "mAP@ALL (ties averaged)",
              *(key.replace("precision@", "P@") for key in precisions), "P@H<=2 (queries finding none)"]
    lines = ["Deep-hashing protocol (by id: equal distances ordered by database row):", "", "| " + " | ".join(header) + " |",
             "|" + "---|" * len(header)]
    for name, scores in hashing.items():
        tie_aware = f"{scores['map@all_tie_aware']:.4f}" if "map@all_tie_aware" in scores else "-"
        radius = f"{scores['p@h<=2']:.4f} ({scores['p@h<=2_empty']:,})" if "p@h<=2" in scores else "-"
        cells = [name, *(f"{scores[key]:.4f}" for key in maps), f"{scores['map@all']:.4f}", tie_aware, *(f"{scores[key]:.4f}" for key in precisions), radius]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def train_summary(result) -> str:
    """What ``hashpa train`` prints when it ends: the best checkpoint's figures and the next step."""
    lines = [f"\nRun directory: {result.run_dir}"]
    best = result.best
    record = next((r for r in result.history if r["epoch"] == best.get("epoch") and r.get("stage") == best.get("stage")), None)
    if record is None:
        return "\n".join(lines + [f"No evaluation ran (--eval-every 0, or none was due yet): evaluate last.pt with "
                                   f"hashpa eval {result.run_dir} --checkpoint last"])
    after = {"codes": " after the code stage", "start": " (the starting model, before any training)"}.get(best.get("stage"), "")
    lines.append(f"Best: epoch {best['epoch']}{after} (by {best['metric']}):")
    lines.append("  " + " " * 14 + "".join(f"{'Recall@' + str(k):>10}" for k in RECALL_KS) + f"{'MAP@R':>10}")
    for name in ("float", "codes"):
        lines.append(f"  {name:<14}{_recall_cells(record[name])}")
    start = next((r for r in result.history if r.get("stage") == "start"), None)
    if start is not None:
        lines += _baseline_lines(start, record, trained=any("stage" not in r for r in result.history))
    if result.skipped_images:
        lines.append(f"{result.skipped_images} image files could not be read and were left out (see the warnings above).")
    lines.append(f"Files: config.json, history.jsonl, best.pt, last.pt in {result.run_dir}")
    lines.append(f"Next: hashpa index IMAGE_FOLDER --run-dir {result.run_dir} --out INDEX_DIR")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _baseline_lines(start: dict, best: dict, trained: bool) -> list[str]:
    """The start beside the best record, and whether training beat it."""
    lines = [f"  {'start features':<14}{_recall_cells(start['features'])}    (the backbone's pooled features, before any training)"]
    if "features_itq" in start:
        lines.append(f"  {'start PCA-ITQ':<14}{_recall_cells(start['features_itq'])}    (PCA-ITQ codes of those features)")
    float_start = max(start["float"]["recall@1"], start["features"]["recall@1"])
    codes_start = max(start["codes"]["recall@1"], start.get("features_itq", {}).get("recall@1", 0.0))
    beaten = [name for name, now, then in (("float", best["float"]["recall@1"], float_start), ("codes", best["codes"]["recall@1"], codes_start))
              if now <= then]
    if not trained:
        lines.append("No training epoch ran (--epochs 0): these are the starting model's figures.")
    elif beaten:
        lines.append(f"Training did NOT beat the start for the {' and the '.join(beaten)} (Recall@1): the untrained model is as good or "
                     "better; try more epochs, a lower --lr, or index with --codes itq")
    else:
        lines.append(f"Training beat the start: float Recall@1 {best['float']['recall@1']:.4f} against {float_start:.4f}, "
                     f"codes {best['codes']['recall@1']:.4f} against {codes_start:.4f}.")
    return lines


def _recall_cells(metrics: dict) -> str:
    values = "".join(f"{metrics[f'recall@{k}']:>10.4f}" if f"recall@{k}" in metrics else f"{'-':>10}" for k in RECALL_KS)
    return values + f"{metrics['map@r']:>10.4f}"

