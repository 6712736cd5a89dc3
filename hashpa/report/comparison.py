"""``hashpa compare``: every index of an index directory side by side, quality against speed and memory.

For each method (float Flat, binary Flat, each other FAISS index built, rerank, where the index keeps
compressed embeddings the shortlist re-ranked by them, and where the codes were fitted to the
database the asymmetric scan and the asymmetric re-scoring of a Hamming shortlist)
it reports Recall@1/2/4/8 and MAP@R (labels required), batched queries/s, single-query latency
p50/p99, bytes per image in memory and the index size on disk. Without query images every labelled
image queries the rest (itself excluded).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from hashpa.errors import HashpaError
from hashpa.fileio import write_json
from hashpa.indexdir.layout import EXACT_INDEXES
from hashpa.metrics.hashing import hashing_scores, too_many_pairs
from hashpa.metrics.relevance import has_label, relevant_at, relevant_counts
from hashpa.metrics.retrieval import RECALL_KS, average_precision_at_r, recall_hits
from hashpa.milvus import MILVUS, MILVUS_MODES
from hashpa.outputs import check_replaceable, write_output
from hashpa.report.frontier import frontier_methods
from hashpa.report.machine import machine_info
from hashpa.report.pareto import best_within, check_limits, fronts
from hashpa.report.plots import plot_compare, plot_pr_curves
from hashpa.report.tables import compare_table
from hashpa.report.timing import busy_cores, search_speed
from hashpa.search.index import Index, open_index
from hashpa.search.modes import default_shortlist, image_bytes, kept_bytes
from hashpa.search.queries import expand_queries

log = logging.getLogger(__name__)

REPORT_FILES = ("compare.json", "compare.md", "compare.png", "compare-pr.png")  # what compare writes, in its output folder
SPEED_K = 10


@dataclass
class Method:
    name: str
    mode: str
    spec: str | None  # the FAISS index searched (None: the asymmetric scan of the codes themselves; "milvus": the published collection)
    shortlist: int | None = None


def methods_of(ix: Index, shortlist: int | None, k: int) -> list[Method]:
    """Every method compare measures on `ix`; those with a shortlist re-rank `shortlist` candidates
    (None: their mode's default at `k`)."""
    def size(mode: str) -> int:
        return shortlist or default_shortlist(mode, k)

    methods = [Method(f"float {s}", "float", s) for s in ix.directory.specs("float")]
    binary = ix.directory.specs("binary")
    methods += [Method(f"binary {s}", "binary", s) for s in binary]
    shortlist_spec = EXACT_INDEXES["binary"] if EXACT_INDEXES["binary"] in binary else (binary[0] if binary else None)  # where shortlists come from
    if shortlist_spec:
        methods.append(Method(f"rerank {shortlist_spec}", "rerank", shortlist_spec, size("rerank")))
        if "rerank-codes" in ix.faiss_modes:
            methods.append(Method(f"rerank {ix.store.rerank_codes} {shortlist_spec}", "rerank-codes", shortlist_spec, size("rerank-codes")))
    if "asymmetric" in ix.faiss_modes:
        methods.append(Method("asymmetric scan", "asymmetric", None))
        if shortlist_spec:
            methods.append(Method(f"asymmetric {shortlist_spec}", "asymmetric", shortlist_spec, size("asymmetric")))
    if ix.published is not None:
        methods += [Method(f"{mode} {MILVUS}", mode, MILVUS, size(mode) if mode == "rerank" else None) for mode in MILVUS_MODES]
    return methods


def compare(
    index_dir: str | Path,
    queries: str | Path | None = None,
    ks: Sequence[int] = RECALL_KS,
    shortlist: int | None = None,
    run: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    repeats: int = 3,
    latency_queries: int = 200,
    out: str | Path | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    frontier: bool = False,
    overwrite: bool = False,
    engine: str = "auto",
    milvus: str | None = None,
    collection: str | None = None,
    budget_bytes: float | None = None,
    min_qps: float | None = None,
) -> dict:
    """Evaluate every method of `index_dir`; write compare.json, compare.md and compare.png to `out`
    (default: the index directory) and return the report. `frontier` adds other representations
    of the same embeddings fitted to the database (``hashpa.report.frontier``); `milvus` adds the
    float, binary and rerank searches of the Milvus collection the index was published to
    (``hashpa.milvus``; `collection`, default from its name) beside FAISS's. The report marks the
    Pareto fronts of Recall@1 against bytes per image and against queries/s, and with `budget_bytes`
    or `min_qps` names the best method within them (``hashpa.report.pareto``). The files are
    written under the write rule (``hashpa.outputs``): files of those names that hashpa did not
    write are replaced only with `overwrite` (checked before anything is measured)."""
    import faiss

    _check_settings(threads, repeats, latency_queries, shortlist)
    check_limits(budget_bytes, min_qps)
    report_files = [Path(out or index_dir) / name for name in REPORT_FILES]
    for path in report_files:
        check_replaceable(path, overwrite)
    if threads:
        faiss.omp_set_num_threads(threads)
    ix = open_index(index_dir, nprobe, ef_search, run, device, engine, milvus, collection)
    store = ix.store
    speed_k = min(SPEED_K, len(store))
    q_emb, q_codes, q_labels, self_rows = _queries(ix, queries)
    labelled = has_label(q_labels)
    if not labelled.any():
        log.warning("no labelled queries: only speed and memory are reported (labels come from class sub-folders)")
    n_positive = _positives(store.relevance_labels, q_labels, self_rows)
    judged = labelled & (n_positive > 0)
    if (labelled & ~judged).any():
        log.warning("%d labelled queries have no other image of their class in the index: they are left out of Recall@K and MAP@R "
                    "(nothing could be found for them)", int((labelled & ~judged).sum()))
    depth = min(len(store), max(max(ks), int(n_positive.max(initial=0))) + (self_rows is not None))
    load_before = busy_cores()
    if load_before > 0.5 * (os.cpu_count() or 1):
        log.warning("the machine is busy (load average %.1f on %d cores): the speed figures will be slower and more erratic than on a quiet one",
                    load_before, os.cpu_count() or 1)
    asked = _Asked(q_emb, q_codes, q_labels, judged, store.relevance_labels, self_rows, depth, tuple(ks), speed_k, repeats, latency_queries)
    rows = []
    for method in methods_of(ix, shortlist, speed_k):
        def ids_of(qe, qc, k, method=method):
            return ix.search(qe, k, method.mode, codes=qc, shortlist=method.shortlist and max(method.shortlist, k), index=method.spec).ids

        fields = {"method": method.name, "mode": method.mode, "index": method.spec or "codes"}
        rows.append(_measured(asked, {**fields, **({"shortlist": method.shortlist} if method.shortlist else {})}, ids_of, memory_of(ix, method)))
    skipped = "no labelled query has a relevant image in the index" if not judged.any() else too_many_pairs(int(judged.sum()), len(store))
    stored = ix.directory.float_rows(np.arange(len(store))) if frontier or not skipped else None  # every float embedding, read once
    if frontier:
        log.info("frontier: fitting float16, PCA, PQ, RaBitQ and PCA-ITQ representations to the %d embeddings", len(store))
        for extra in frontier_methods(stored):
            memory = {"bytes_per_image": extra.code_bytes, "index_bytes": extra.index_bytes}
            rows.append(_measured(asked, {"method": extra.name, "mode": "frontier", "index": extra.name},
                                  lambda qe, qc, k, extra=extra: extra.search(qe, k), memory))
    if skipped:
        log.info("the deep-hashing protocol is left out: %s", skipped)
        hashing = {"skipped": skipped}
    else:
        hashing = hashing_protocol(ix, stored, q_emb[judged], q_codes[judged], q_labels[judged], None if self_rows is None else self_rows[judged])
    report = {
        "index": str(ix.path),
        "database": len(store),
        "queries": int(len(q_labels)),
        "labelled_queries": int(labelled.sum()),
        "judged_queries": int(judged.sum()),  # labelled queries with at least one relevant image in the index: what Recall and MAP average over
        "protocol": "leave-one-out: every labelled image queries the others" if self_rows is not None else f"queries from {queries}",
        "bits": store.bits,
        "code_source": store.code_source,
        "dim": int(store.embeddings.shape[1]),
        "ks": list(ks),
        "speed_k": speed_k,
        "search_params": {"nprobe": nprobe, "ef_search": ef_search},
        "machine": machine_info(),
        "load_average": {"before": load_before, "after": busy_cores()},
        "latency_threads": 1,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "methods": rows,
        "fronts": fronts(rows),
        **({"choice": best_within(rows, budget_bytes, min_qps)} if budget_bytes is not None or min_qps is not None else {}),
        "hashing": hashing,
    }
    json_file, table_file, plot_file, pr_file = report_files
    write_output(json_file, lambda tmp: write_json(tmp, report), overwrite)
    write_output(table_file, lambda tmp: tmp.write_text(compare_table(report) + "\n", encoding="utf-8"), overwrite)
    plot_compare(report, plot_file, overwrite)
    if "skipped" not in hashing:
        plot_pr_curves(hashing, f"{report['database']:,} images, {report['judged_queries']:,} queries", pr_file, overwrite)
    return report


def hashing_protocol(ix: Index, stored: np.ndarray, embeddings: np.ndarray, codes: np.ndarray, labels: np.ndarray,
                     own_rows: np.ndarray | None) -> dict:
    """The deep-hashing protocol's figures (``hashpa.metrics.hashing``) of the stored float
    embeddings (`stored`, [N, dim]) and of the codes the binary indexes hold, for queries that have
    something to find: an exhaustive ranking of the whole database, whatever index a method searches."""
    store = ix.store
    return {
        "float": hashing_scores(embeddings, labels, stored, store.relevance_labels, metric="cosine", own_rows=own_rows),
        "codes": hashing_scores(codes, labels, store.index_codes, store.relevance_labels, metric="hamming", own_rows=own_rows),
    }


@dataclass
class _Asked:
    """The queries of a comparison and what judging their answers needs."""

    embeddings: np.ndarray
    codes: np.ndarray
    labels: np.ndarray  # int64 [Q], -1: unlabelled; or multi-hot bool [Q, C]
    judged: np.ndarray  # bool [Q]: labelled, with at least one relevant image in the index
    db_labels: np.ndarray
    self_rows: np.ndarray | None  # leave-one-out: each query's own store row
    depth: int
    ks: tuple[int, ...]
    speed_k: int
    repeats: int
    latency_queries: int


def _measured(asked: _Asked, fields: dict, ids_of: Callable, memory: dict) -> dict:
    """One method's row: `fields`, its recalls and MAP@R, speed and `memory`; ids_of(embeddings, codes, k) -> ids [Q, k]."""
    row = dict(fields)
    judged = asked.judged
    if judged.any():
        relevant = _relevance(ids_of(asked.embeddings, asked.codes, asked.depth), asked.db_labels, asked.labels, asked.self_rows, asked.depth)
        row.update({f"recall@{k}": float(v) for k, v in zip(asked.ks, recall_hits(relevant[judged], asked.ks).mean(axis=0))})
        n_positive = _positives(asked.db_labels, asked.labels, asked.self_rows)
        ap, _ = average_precision_at_r(relevant[judged], n_positive[judged])
        row["map@r"] = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    row.update(search_speed(lambda qe, qc: ids_of(qe, qc, asked.speed_k), (asked.embeddings, asked.codes), asked.repeats, asked.latency_queries))
    row.update(memory)
    log.debug("%s: %s", row["method"], ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float)))
    return row


def _check_settings(threads, repeats, latency_queries, shortlist) -> None:
    for name, value, low in (("--threads", threads, 1), ("--repeats", repeats, 1), ("--latency-queries", latency_queries, 0), ("--shortlist", shortlist, 1)):
        if value is not None and (not isinstance(value, int) or value < low):
            raise HashpaError(f"{name} must be a whole number of at least {low}, got {value!r}")


def _queries(ix: Index, queries):
    """(embeddings, codes, labels int64, self_rows): the store's labelled rows themselves, or the images of a query folder."""
    store = ix.store
    if queries is None:
        rows = np.flatnonzero(has_label(store.relevance_labels)) if store.has_labels else np.arange(len(store))
        labels = store.relevance_labels[rows]
        return ix.directory.float_rows(rows), store.index_codes[rows], labels if labels.ndim == 2 else labels.astype(np.int64), rows
    found = expand_queries([queries], ix.meta.class_depth)
    index = {name: i for i, name in enumerate(store.class_names)}
    labels = np.array([index.get(name, -1) for _, name in found], dtype=np.int64)  # classes the index does not hold: unlabelled
    if store.label_sets is not None:  # a query folder's class, as one of the index's label sets
        labels = (labels[:, None] == np.arange(len(store.class_names))[None, :])
    embeddings, codes, positions = ix.embed_files([p for p, _ in found])
    own = _own_rows(ix, [found[i][0] for i in positions])
    if (own >= 0).all():
        log.info("every query is an image of the index: each leaves its own row out, as in leave-one-out")
        return embeddings, codes, labels[positions], own
    if (own >= 0).any():
        log.warning("%d of the %d queries are images of the index and find themselves at rank 1, which lifts Recall and MAP: "
                    "query with images outside the indexed folder, or leave out --queries (every indexed image then queries the "
                    "others)", int((own >= 0).sum()), len(own))
    return embeddings, codes, labels[positions], None


def _own_rows(ix: Index, paths: list[Path]) -> np.ndarray:
    """int64 [len(paths)]: the store row of each query file when it is an indexed image itself, else -1."""
    try:
        root = ix.directory.image_root().resolve()
    except HashpaError:
        return np.full(len(paths), -1, dtype=np.int64)
    row_of = {path: row for row, path in enumerate(ix.store.paths)}
    rows = []
    for path in paths:
        resolved = Path(path).resolve()
        rows.append(row_of.get(resolved.relative_to(root).as_posix(), -1) if resolved.is_relative_to(root) else -1)
    return np.array(rows, dtype=np.int64)


def _positives(db_labels, q_labels, self_rows) -> np.ndarray:
    """Each query's relevant database items, its own row left out (leave-one-out)."""
    return relevant_counts(q_labels, db_labels) - (self_rows is not None) * has_label(q_labels)


def _relevance(ids, db_labels, q_labels, self_rows, depth) -> np.ndarray:
    if self_rows is not None:  # drop each query's own row wherever the index returned it
        keep = ids != self_rows[:, None]
        ids = np.stack([row[mask][: depth - 1] for row, mask in zip(ids, keep)])
    return relevant_at(q_labels, db_labels, ids)


def memory_of(ix: Index, method: Method) -> dict:
    """What a method keeps in all (``hashpa.search.modes.kept_bytes``; for the Milvus collection, the
    vectors its mode reads there) and per image: what each image adds (``image_bytes``), as for the
    frontier's rows. {"bytes_per_image", "index_bytes"}."""
    if method.spec == MILVUS:
        per_image = ix.published.read_bytes(method.mode)
        return {"bytes_per_image": per_image, "index_bytes": len(ix.store) * per_image}
    return {"bytes_per_image": image_bytes(ix.directory, method.mode, method.spec), "index_bytes": kept_bytes(ix.directory, method.mode, method.spec)}
