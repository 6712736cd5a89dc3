"""Milvus Lite against FAISS on the same rows: ``hashpa publish`` of an index directory (its insert
rate), then the binary (Hamming), float and rerank searches of the published collection
(``hashpa.milvus.MilvusCollection``) against the index directory's exact FAISS indexes
(``hashpa.search.modes``): queries per second, and how many of FAISS's top 10 the collection
returns (for Hamming: the share of equal distances, since tied rows may differ).

The rows are synthetic: unit-length Gaussian embeddings and 64-bit codes that are the signs of a
random projection of them (codes that agree with the embeddings, as a model's do).

    python -m eval.bench_milvus --rows 100000 1000000 --benchmarks docs/benchmarks/milvus.md
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.publish import command_line, parse_benchmark_args
from eval.publish import publish as write_report
from hashpa.indexdir import IndexDir, Store, write_index_dir
from hashpa.milvus import MilvusCollection, publish
from hashpa.search import modes

log = logging.getLogger("eval.bench_milvus")
K = 10


def synthetic_store(rows: int, dim: int, bits: int, seed: int) -> Store:
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((rows, dim), dtype=np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    projection = rng.standard_normal((dim, bits), dtype=np.float32)
    codes = np.packbits(embeddings @ projection > 0, axis=1)
    return Store(paths=[f"c{i % 100}/img_{i:08d}.jpg" for i in range(rows)], labels=(np.arange(rows) % 100).astype(np.int32),
                 class_names=[f"c{i}" for i in range(100)], embeddings=embeddings, codes=codes, sizes=np.zeros(rows, np.int64),
                 mtimes=np.zeros(rows, np.int64), attrs={"model_fingerprint": "synthetic"})


def per_second(search, queries: int) -> tuple[float, object]:
    started = time.perf_counter()
    result = search()
    return queries / (time.perf_counter() - started), result


def measured(rows: int, dim: int, bits: int, queries: int, shortlist: int, seed: int, work: Path) -> dict:
    store = synthetic_store(rows, dim, bits, seed)
    rng = np.random.default_rng(seed + 1)
    picked = rng.choice(rows, queries, replace=False)
    q_emb = store.embeddings[picked] + 0.05 * rng.standard_normal((queries, dim), dtype=np.float32)
    q_emb /= np.linalg.norm(q_emb, axis=1, keepdims=True)
    q_codes = store.codes[picked]
    index_dir = work / f"index-{rows}"
    write_index_dir(index_dir, store, ("Flat",), ("BFlat",))
    uri = str(work / f"milvus-{rows}.db")
    started = time.perf_counter()
    publish(index_dir, uri, "bench")
    insert_seconds = time.perf_counter() - started
    log.info("%d rows published in %.0f s", rows, insert_seconds)
    ix = IndexDir(index_dir)
    row = {"rows": rows, "dim": dim, "bits": bits, "queries": queries, "shortlist": shortlist,
           "insert_rows_per_s": rows / insert_seconds}
    with MilvusCollection(uri, "bench") as collection:
        collection.search(q_emb[:1], q_codes[:1], K, "binary")  # loaded and warm
        for mode, faiss_search in (("binary", lambda: modes.search_binary(ix, q_codes, K)),
                                   ("float", lambda: modes.search_float(ix, q_emb, K)),
                                   ("rerank", lambda: modes.search_rerank(ix, q_emb, q_codes, K, shortlist))):
            faiss_qps, want = per_second(faiss_search, queries)
            milvus_qps, (got, _) = per_second(lambda mode=mode: collection.search(q_emb, q_codes, K, mode, shortlist), queries)
            agreement = (np.mean(got.scores == want.scores) if mode == "binary"
                         else np.mean([len(set(g) & set(w)) / K for g, w in zip(got.ids, want.ids)]))
            row[mode] = {"faiss_qps": faiss_qps, "milvus_qps": milvus_qps, "agreement": float(agreement)}
            log.info("%d rows, %s: FAISS %.0f q/s, Milvus Lite %.0f q/s, agreement %.4f", rows, mode, faiss_qps, milvus_qps, agreement)
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| rows | dim | insert rows/s | mode | FAISS q/s | Milvus Lite q/s | agreement with FAISS's top 10 |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        for mode in ("binary", "float", "rerank"):
            m = r[mode]
            shown = f"{mode} (shortlist {r['shortlist']})" if mode == "rerank" else mode
            lines.append(f"| {r['rows']:,} | {r['dim']} | {r['insert_rows_per_s']:,.0f} | {shown} "
                         f"| {m['faiss_qps']:,.0f} | {m['milvus_qps']:,.0f} | {m['agreement']:.4f} |")
    lines += ["", "Agreement: binary, the share of the top 10's Hamming distances equal to FAISS's (tied rows may differ); "
              "float and rerank, the share of FAISS's top 10 rows returned. Queries are batched (all at once) in both."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=128, help="embedding size of the synthetic rows")
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--shortlist", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_benchmark_args(parser, "milvus", argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="hashpa-milvus-") as work:
        for rows in args.rows:
            results.append(measured(rows, args.dim, args.bits, args.queries, args.shortlist, args.seed, Path(work)))
            write_report(args, "milvus", command_line("eval.bench_milvus", argv), {"rows": results}, markdown(results))


if __name__ == "__main__":
    main()
