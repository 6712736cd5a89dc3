"""Search speed at scale: every search mode of ``hashpa search`` over index directories of synthetic data.

    python -m eval.bench_search --n 1000000 --out bench-results/search

N clustered 512-d unit vectors (a Gaussian mixture, so approximate indexes see structure like real
embeddings) go into two index directories written by the library (``write_index_dir``), opened with
``hashpa.open_index`` and searched with ``Index.search``, the code users run:

- "model codes": codes by sign random projection (LSH) stand in for a model's codes (64 and 128
  bits): float Flat, binary BFlat and the --binary-indexes, rerank of a BFlat shortlist;
- "fitted codes": PCA-ITQ codes fitted to the vectors (``hashpa index --codes itq``): the asymmetric
  scan and the asymmetric re-scoring of a BFlat shortlist, on the first --asymmetric-queries queries.

Recall is measured against the exact top k of the representation each method approximates (the
float Flat search for float, rerank and asymmetric; BFlat for binary). On these isotropic clusters PCA
keeps 64 or 128 of 512 equally noisy directions, so the asymmetric rows' recall says little about
real embeddings (see the Flowers-102 compare). For each method: batched queries/s and single-query
latency at 1 and 2 threads (FAISS and BLAS), bytes per vector, and for BFlat the Hamming distances per
second against this machine's popcount limit (np.bitwise_count over a large uint64 array, one core).
Writes search.json and search.md.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import numpy as np

import hashpa
from eval.publish import command_line, parse_benchmark_args, publish
from hashpa.indexdir import Store, fit_database_codes, write_index_dir
from hashpa.quantizers import fit_lsh
from hashpa.report.comparison import Method, memory_of
from hashpa.report.timing import search_speed, time_calls

log = logging.getLogger("eval.bench_search")


def synthetic(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        x[start:stop] = centres[rng.integers(0, clusters, stop - start)] + 0.6 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def popcount_limit() -> dict:
    """uint64 popcounts per second on one core with np.bitwise_count: over a cache-resident array
    (the compute ceiling for 64-bit Hamming distances) and over a 512 MiB one (memory-bound)."""
    rng = np.random.default_rng(0)
    rates = {}
    for name, words, calls in (("cache", 1 << 15, 2000), ("memory", 1 << 26, 1)):
        data = rng.integers(0, 2**63, words, dtype=np.uint64)
        out = np.empty(words, dtype=np.uint8)

        def count():
            for _ in range(calls):
                np.bitwise_count(data, out=out)

        rates[name] = words * calls / min(time_calls(count, repeats=3, warmup=1))
    return rates


def index_dir(out: Path, x: np.ndarray, codes: np.ndarray, binary_specs: tuple[str, ...], args, fitted=None) -> hashpa.Index:
    """An index directory of the rows x (float) and codes, written and opened by the library."""
    shutil.rmtree(out, ignore_errors=True)
    n = len(x)
    store = Store(paths=[f"synthetic/{i:07d}" for i in range(n)], labels=np.full(n, -1, np.int32), class_names=[], embeddings=x, codes=codes,
                  sizes=np.zeros(n, np.int64), mtimes=np.zeros(n, np.int64), attrs={"model_fingerprint": "synthetic"}, fitted=fitted)
    write_index_dir(out, store, ("Flat",), binary_specs, {"folder": out, "model": "synthetic"})
    return hashpa.open_index(out, nprobe=args.nprobe, ef_search=args.ef_search)


def recall_vs_exact(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact)]))


def run(args) -> dict:
    import faiss
    from threadpoolctl import threadpool_limits

    x = synthetic(args.n, args.dim, args.clusters, args.seed)
    queries = synthetic(args.queries, args.dim, args.clusters, args.seed)  # same centres: in-distribution queries
    k, limit = args.k, popcount_limit()
    results = {"popcount_per_second_one_core": limit, "k": k, "rows": []}
    for bits in args.bits:
        lsh = fit_lsh(x, bits, seed=args.seed + bits)
        codes, query_codes = lsh.encode(x), lsh.encode(queries)
        lsh_index = index_dir(args.out / f"index-{bits}bit", x, codes, ("BFlat", *args.binary_indexes), args)
        fitted = index_dir(args.out / f"index-{bits}bit-itq", x, codes, ("BFlat",), args, fit_database_codes(x, bits))
        exact = {"float": lsh_index.search(queries, k, "float").ids, "binary": lsh_index.search(queries, k, "binary", codes=query_codes).ids}
        methods = [(lsh_index, Method(f"float {s}", "float", s), queries) for s in lsh_index.directory.specs("float")]
        methods += [(lsh_index, Method(f"binary {s}", "binary", s), queries) for s in lsh_index.directory.specs("binary")]
        methods.append((lsh_index, Method(f"rerank BFlat (shortlist {args.shortlist})", "rerank", "BFlat", args.shortlist), queries))
        asymmetric_queries = queries[: args.asymmetric_queries]
        methods.append((fitted, Method("asymmetric scan (PCA-ITQ codes fitted to the data)", "asymmetric", None), asymmetric_queries))
        methods.append((fitted, Method(f"asymmetric, BFlat shortlist {args.shortlist} (same codes)", "asymmetric", "BFlat", args.shortlist),
                        asymmetric_queries))
        for threads in args.threads:
            faiss.omp_set_num_threads(threads)
            with threadpool_limits(threads):
                for ix, method, q in methods:
                    row = {"bits": bits, "threads": threads, **measure(ix, method, q, query_codes[: len(q)], exact, args)}
                    if method.name == "binary BFlat":
                        row.update(popcount_share(ix, query_codes, bits, threads, row["queries_per_second"], limit["cache"]))
                    results["rows"].append(row)
                    log.info("%s", row)
    return results


def measure(ix: hashpa.Index, method: Method, queries: np.ndarray, codes: np.ndarray, exact: dict, args) -> dict:
    """One method's row as hashpa compare measures it: speed (``search_speed``), memory (``memory_of``)
    and its top k against the exact top k of the representation it approximates."""
    def search(q, c):
        return ix.search(q, args.k, method.mode, codes=c, shortlist=method.shortlist, index=method.spec)

    entry = ix.meta.entry("float" if method.mode == "float" else "binary", method.spec) if method.spec else None
    row = {"method": method.name, "queries": len(queries), "build_seconds": entry["build_seconds"] if entry else 0.0,
           "bytes_per_vector": memory_of(ix, method)["bytes_per_image"]}
    row.update(search_speed(search, (queries, codes), args.repeats, min(args.latency_queries, len(queries))))
    row["recall_vs_exact"] = recall_vs_exact(search(queries, codes).ids, exact["binary" if method.mode == "binary" else "float"][: len(queries)])
    return row


def popcount_share(ix: hashpa.Index, query_codes: np.ndarray, bits: int, threads: int, queries_per_second: float, limit: float) -> dict:
    """BFlat's Hamming distances per second, as a share of this machine's popcount limit, and those of
    all distances alone (faiss.hammings, no top-k selection): where its time goes."""
    import faiss

    per_second = queries_per_second * len(ix)
    codes = np.ascontiguousarray(ix.store.index_codes)
    q = np.ascontiguousarray(query_codes[:64])
    out = np.empty((len(q), len(codes)), dtype=np.int32)
    distances_only = min(time_calls(lambda: faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(codes), len(q), len(codes), codes.shape[1],
                                                           faiss.swig_ptr(out)), repeats=2))
    return {"hamming_per_second": per_second, "fraction_of_popcount_limit": per_second * (bits / 64) / (limit * threads),  # one popcount per 64 bits
            "hammings_only_per_second": len(q) * len(codes) / distances_only}


def markdown(results: dict) -> str:
    lines = [
        f"Popcount limit (np.bitwise_count, one core): {results['popcount_per_second_one_core']['cache'] / 1e9:.2f} G uint64/s "
        f"cache-resident, {results['popcount_per_second_one_core']['memory'] / 1e9:.2f} G/s from memory",
        "",
        "| method | bits | threads | queries/s | p50 ms | p99 ms | bytes/vector | recall@k vs exact | build s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['method']} | {r['bits']} | {r['threads']} | {r['queries_per_second']:,.1f} | {r['latency_p50_ms']:.2f} | "
            f"{r['latency_p99_ms']:.2f} | {r['bytes_per_vector']:.1f} | {r['recall_vs_exact']:.3f} | {r.get('build_seconds', 0):.1f} |"
        )
    flat = [r for r in results["rows"] if r["method"] == "binary BFlat"]
    if flat:
        lines += ["", "| BFlat | bits | threads | Hamming distances/s (search, k=%d) | fraction of popcount limit "
                  "| faiss.hammings, all distances, no top-k |" % results["k"], "|---|---|---|---|---|---|"]
        for r in flat:
            lines.append(f"| BFlat | {r['bits']} | {r['threads']} | {r['hamming_per_second'] / 1e9:.3f} G | {r['fraction_of_popcount_limit']:.1%} | "
                         f"{r['hammings_only_per_second'] / 1e9:.3f} G |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--bits", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--binary-indexes", nargs="*", default=["BHNSW32", "BIVF4096"])
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--shortlist", type=int, default=100)
    parser.add_argument("--asymmetric-queries", type=int, default=200, help="queries of the (slow, exact) asymmetric scan")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parse_benchmark_args(parser, "search", argv)
    results = run(args)
    publish(args, "search", command_line("eval.bench_search", argv), results, markdown(results))


if __name__ == "__main__":
    main()
