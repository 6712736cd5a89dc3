"""``hashpa compare``: every index of an index directory side by side, quality against speed and memory.

For each method (float Flat, binary Flat, each other FAISS index built, rerank, and where the codes
were fitted to the database the asymmetric scan and the asymmetric re-scoring of a Hamming shortlist)
it reports
Recall@1/2/4/8 and MAP@R (labels required), batched queries/s, single-query latency p50/p99,
bytes per image in memory and the index size on disk. Without query images every labelled image
queries the rest (itself excluded).
"""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from hashpa.eval.metrics import average_precision_at_r, recall_hits
from hashpa.eval.report import describe_machine, machine_info
from hashpa.eval.timing import percentiles_ms, time_calls
from hashpa.fileio import atomic_path, write_json_atomic, write_text_atomic
from hashpa.search import OpenIndex, embed_queries, expand_queries
from hashpa.store import CODE_SOURCES

log = logging.getLogger(__name__)

SPEED_K = 10


@dataclass
class Method:
    name: str
    mode: str
    spec: str
    shortlist: int | None = None


def methods_of(opened: OpenIndex, shortlist: int | None) -> list[Method]:
    methods = [Method(f"float {s}", "float", s) for s in opened.specs("float")]
    methods += [Method(f"binary {s}", "binary", s) for s in opened.specs("binary")]
    binary = opened.specs("binary")
    shortlist_spec = "BFlat" if "BFlat" in binary else (binary[0] if binary else None)  # where shortlists come from
    if shortlist_spec:
        methods.append(Method(f"rerank {shortlist_spec}", "rerank", shortlist_spec, shortlist))
    if opened.store.fitted:
        methods.append(Method("asymmetric scan", "asymmetric", "codes"))
        if shortlist_spec:
            methods.append(Method(f"asymmetric {shortlist_spec}", "asymmetric", shortlist_spec, shortlist))
    return methods


def compare(
    index_dir: str | Path,
    queries: str | Path | None = None,
    ks: Sequence[int] = (1, 2, 4, 8),
    shortlist: int | None = None,
    model: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    repeats: int = 3,
    latency_queries: int = 200,
    out: str | Path | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> dict:
    """Evaluate every method of `index_dir`; write compare.json, compare.md and compare.png to `out`
    (default: the index directory) and return the report."""
    import faiss

    if threads:
        faiss.omp_set_num_threads(threads)
    opened = OpenIndex(index_dir, nprobe, ef_search)
    store = opened.store
    q_emb, q_codes, q_labels, self_rows = _queries(opened, queries, model, device)
    labelled = q_labels >= 0
    if not labelled.any():
        log.warning("no labelled queries: only speed and memory are reported (labels come from class sub-folders)")
    n_positive = _positives(store.labels, q_labels, self_rows)
    depth = min(len(store), max(max(ks), int(n_positive.max(initial=0))) + (self_rows is not None))
    shortlist = shortlist or 10 * SPEED_K
    rows = []
    for method in methods_of(opened, shortlist):
        run = lambda qe, qc, k: opened.search(qe, qc, k, method.mode, method.spec, method.shortlist and max(method.shortlist, k))  # noqa: E731
        result = run(q_emb, q_codes, depth)
        relevant = _relevance(result.ids, store.labels, q_labels, self_rows, depth)
        row = {"method": method.name, "mode": method.mode, "index": method.spec}
        if method.shortlist:
            row["shortlist"] = method.shortlist
        if labelled.any():
            hits = recall_hits(relevant[labelled], ks)
            row.update({f"recall@{k}": float(v) for k, v in zip(ks, hits.mean(axis=0))})
            ap, _ = average_precision_at_r(relevant[labelled], n_positive[labelled])
            row["map@r"] = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
        row.update(_speed(run, q_emb, q_codes, repeats, latency_queries))
        row.update(_memory(opened, method))
        rows.append(row)
        log.debug("%s: %s", method.name, ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
    report = {
        "index": str(opened.path),
        "database": len(store),
        "queries": int(len(q_labels)),
        "labelled_queries": int(labelled.sum()),
        "protocol": "leave-one-out: every labelled image queries the others" if self_rows is not None else f"queries from {queries}",
        "bits": store.bits,
        "code_source": store.code_source,
        "dim": int(store.embeddings.shape[1]),
        "ks": list(ks),
        "speed_k": SPEED_K,
        "search_params": {"nprobe": nprobe, "ef_search": ef_search},
        "machine": machine_info(),
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "methods": rows,
    }
    out = Path(out or opened.path)
    write_json_atomic(out / "compare.json", report)
    write_text_atomic(out / "compare.md", markdown_table(report) + "\n")
    plot_compare(report, out / "compare.png")
    return report


def _queries(opened: OpenIndex, queries, model, device):
    store = opened.store
    if queries is None:
        rows = np.flatnonzero(store.labels >= 0) if store.has_labels else np.arange(len(store))
        return opened.float_rows(rows), store.index_codes[rows], store.labels[rows], rows
    paths = expand_queries([queries])
    index = {name: i for i, name in enumerate(store.class_names)}
    labels = [index.get(Path(p).relative_to(queries).parts[0], -1) if len(Path(p).relative_to(queries).parts) > 1 else -1 for p in paths]
    embeddings, codes, positions = embed_queries(opened, paths, model, device)
    return embeddings, codes, np.asarray(labels, dtype=np.int64)[positions], None


def _positives(db_labels, q_labels, self_rows) -> np.ndarray:
    counts = np.bincount(db_labels[db_labels >= 0], minlength=max(int(db_labels.max(initial=-1)), int(q_labels.max(initial=-1))) + 1)
    n = np.where(q_labels >= 0, counts[np.maximum(q_labels, 0)], 0)
    return n - (self_rows is not None) * (q_labels >= 0)


def _relevance(ids, db_labels, q_labels, self_rows, depth) -> np.ndarray:
    if self_rows is not None:  # drop each query's own row wherever the index returned it
        keep = ids != self_rows[:, None]
        ids = np.stack([row[mask][: depth - 1] for row, mask in zip(ids, keep)])
    return (db_labels[np.maximum(ids, 0)] == q_labels[:, None]) & (ids >= 0) & (q_labels[:, None] >= 0)


def _speed(run, q_emb, q_codes, repeats: int, latency_queries: int) -> dict:
    batched = time_calls(lambda: run(q_emb, q_codes, SPEED_K), repeats=repeats)
    n = min(latency_queries, len(q_emb))
    single = []
    for i in range(n):
        single += time_calls(lambda: run(q_emb[i : i + 1], q_codes[i : i + 1], SPEED_K), repeats=1, warmup=1 if i == 0 else 0)
    return {"queries_per_second": len(q_emb) / float(np.median(batched)), **{f"latency_{k}": v for k, v in percentiles_ms(single).items()}}


def _memory(opened: OpenIndex, method: Method) -> dict:
    entry_of = lambda kind, spec: opened.meta["indexes"][f"{kind}:{spec}"]  # noqa: E731
    n = len(opened.store)
    float_bytes = opened.store.embeddings.itemsize * opened.store.embeddings.shape[1]
    if method.mode == "rerank":
        on_disk = entry_of("binary", method.spec)["bytes"] + n * float_bytes
    elif method.mode == "asymmetric":  # the codes and the quantiser; a shortlist also needs its binary index
        hasher = opened.store.fitted.hasher
        on_disk = opened.store.index_codes.nbytes + hasher.mean.nbytes + hasher.projection.nbytes
        if method.shortlist:
            on_disk += entry_of("binary", method.spec)["bytes"]
    else:
        on_disk = entry_of(method.mode, method.spec)["bytes"]
    return {"bytes_per_image": on_disk / n, "index_bytes": int(on_disk)}


def markdown_table(report: dict) -> str:
    ks = report["ks"]
    header = ["method"] + [f"R@{k}" for k in ks] + ["MAP@R", "queries/s", "p50 ms", "p99 ms", "bytes/image", "on disk"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["methods"]:
        recalls = [f"{row[f'recall@{k}']:.4f}" if f"recall@{k}" in row else "-" for k in ks]
        cells = [row["method"] + (f" (shortlist {row['shortlist']})" if row.get("shortlist") else ""), *recalls,
                 f"{row['map@r']:.4f}" if "map@r" in row else "-", f"{row['queries_per_second']:,.0f}",
                 f"{row['latency_p50_ms']:.3f}", f"{row['latency_p99_ms']:.3f}", f"{row['bytes_per_image']:.1f}", _size(row["index_bytes"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"{report['database']:,} images, {report['queries']:,} queries ({report['protocol']}); "
                 f"{report['bits']}-bit codes ({CODE_SOURCES[report.get('code_source', 'model')]}), "
                 f"{report['dim']}-d floats; speed at k={report['speed_k']}.")
    lines.append(f"Machine: {describe_machine(report['machine'])}")
    return "\n".join(lines)



def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def plot_compare(report: dict, path: Path) -> None:
    """Recall@1 against batched queries/s (log scale), one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for row in report["methods"]:
        y = row.get("recall@1", float("nan"))
        ax.scatter(row["queries_per_second"], y, s=40)
        ax.annotate(row["method"], (row["queries_per_second"], y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("queries per second (batched, log scale)")
    ax.set_ylabel("Recall@1")
    ax.set_title(f"{report['database']:,} images, {report['bits']}-bit codes vs {report['dim']}-d floats", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
