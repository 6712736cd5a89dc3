"""Search speed at scale: float Flat, binary Flat / HNSW / IVF and rerank on synthetic data.

    python -m hashpa.eval.bench_search --n 1000000 --out bench-results/search

N clustered 512-d unit vectors (a Gaussian mixture, so approximate indexes see structure like real
embeddings) and codes made from them by sign random projection (64 and 128 bits); the asymmetric
scan uses PCA-ITQ codes fitted to the data instead (what ``--codes itq`` indexes hold), on the first
--asymmetric-queries queries, its recall measured against the exact float top k like rerank's (on these
isotropic clusters PCA keeps 64 or 128 of 512 equally noisy directions, so that recall says little
about real embeddings: see the Flowers-102 compare). For each method,
batched queries/s and single-query latency at 1 and 2 threads, bytes per vector, and for the
binary Flat index the Hamming distances per second against this machine's popcount limit
(np.bitwise_count over a large uint64 array, one core). Writes search.json and search.md.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from hashpa.eval.report import add_output_options, command_line, publish
from hashpa.eval.timing import percentiles_ms, time_calls

log = logging.getLogger("hashpa.bench_search")


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


def build(kind: str, spec: str, data: np.ndarray):
    import faiss

    started = time.perf_counter()
    if kind == "float":
        index = faiss.index_factory(data.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.index_binary_factory(data.shape[1] * 8, spec)
    if not index.is_trained:
        index.train(data[: min(len(data), 256 * getattr(index, "nlist", 1))])
    index.add(data)
    return index, time.perf_counter() - started


def index_bytes(index) -> int:
    import faiss

    writer = faiss.serialize_index_binary if isinstance(index, faiss.IndexBinary) else faiss.serialize_index
    return int(writer(index).size)


def measure(search, queries: tuple, n_latency: int, repeats: int) -> dict:
    batched = time_calls(lambda: search(*queries), repeats=repeats)
    single = []
    for i in range(n_latency):
        one = tuple(q[i : i + 1] for q in queries)
        single += time_calls(lambda: search(*one), repeats=1, warmup=1 if i == 0 else 0)
    return {"queries_per_second": len(queries[0]) / float(np.median(batched)), **{f"latency_{k}": v for k, v in percentiles_ms(single).items()}}


def recall_vs_exact(ids: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, exact)]))


def run(args) -> dict:
    import faiss

    x = synthetic(args.n, args.dim, args.clusters, args.seed)
    queries = synthetic(args.queries, args.dim, args.clusters, args.seed)  # same centres: in-distribution queries
    k = args.k
    results = {"popcount_per_second_one_core": popcount_limit(), "k": k, "rows": []}
    limit = results["popcount_per_second_one_core"]["cache"]
    for bits in args.bits:
        projection = np.random.default_rng(args.seed + bits).standard_normal((args.dim, bits)).astype(np.float32)
        codes = np.packbits(x @ projection > 0, axis=1)
        query_codes = np.packbits(queries @ projection > 0, axis=1)
        flat_float, float_build = build("float", "Flat", x)
        flat_binary, binary_build = build("binary", "BFlat", codes)
        exact_float = flat_float.search(queries, k)[1]
        exact_binary = flat_binary.search(query_codes, k)[1]
        methods = [("float Flat", "float", flat_float, float_build), ("binary BFlat", "binary", flat_binary, binary_build)]
        asymmetric = _asymmetric_setup(x, queries[: args.asymmetric_queries], bits, k, args.shortlist)
        for spec in args.binary_indexes:
            index, seconds = build("binary", spec, codes)
            if hasattr(index, "nprobe"):
                index.nprobe = args.nprobe
            if hasattr(index, "hnsw"):
                index.hnsw.efSearch = args.ef_search
            methods.append((f"binary {spec}", "binary", index, seconds))
        for threads in args.threads:
            faiss.omp_set_num_threads(threads)
            for name, kind, index, build_seconds in methods:
                q = (queries,) if kind == "float" else (query_codes,)
                row = {"method": name, "bits": bits, "threads": threads, "build_seconds": build_seconds,
                       "bytes_per_vector": index_bytes(index) / index.ntotal}
                row.update(measure(lambda a, ix=index: ix.search(a, k), q, args.latency_queries, args.repeats))
                ids = index.search(*q, k)[1]
                row["recall_vs_exact"] = recall_vs_exact(ids, exact_float if kind == "float" else exact_binary)
                if name == "binary BFlat":
                    per_second = row["queries_per_second"] * args.n
                    row["hamming_per_second"] = per_second
                    row["fraction_of_popcount_limit"] = per_second * (bits / 64) / (limit * threads)  # one popcount per 64 bits
                    row.update(_where_time_goes(codes, query_codes, k, threads, args))
                results["rows"].append(row)
                log.info("%s", {k_: (round(v, 4) if isinstance(v, float) else v) for k_, v in row.items()})
            shortlist = args.shortlist
            rerank = lambda qe, qc: _rerank(flat_binary, x, qe, qc, k, shortlist)  # noqa: E731
            row = {"method": f"rerank BFlat (shortlist {shortlist})", "bits": bits, "threads": threads,
                   "bytes_per_vector": bits / 8 + 4 * args.dim}
            row.update(measure(rerank, (queries, query_codes), args.latency_queries, args.repeats))
            row["recall_vs_exact"] = recall_vs_exact(rerank(queries, query_codes), exact_float)
            results["rows"].append(row)
            log.info("%s", row)
            for method in ("scan", "shortlist"):
                results["rows"].append(_asymmetric_row(asymmetric, method, exact_float, bits, threads, args))
                log.info("%s", results["rows"][-1])
    return results


def _asymmetric_setup(x: np.ndarray, queries: np.ndarray, bits: int, k: int, shortlist: int) -> dict:
    """PCA-ITQ fitted to (a sample of) the data as ``hashpa index --codes itq`` does, its codes of
    all rows in a BFlat index, the queries' projections and codes, and the two asymmetric searches
    (the exact scan; the BFlat shortlist re-scored), each taking (projections, codes)."""
    import faiss

    from hashpa.index import ITQ_SAMPLE
    from hashpa.quantizers import fit_itq
    from hashpa.search import asymmetric_scan, rescore_asymmetric

    started = time.perf_counter()
    hasher = fit_itq(x[:ITQ_SAMPLE], bits)
    codes = hasher.encode(x)
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(codes)
    return {
        "scan": lambda projected, _: asymmetric_scan(projected, codes, k).ids,
        "shortlist": lambda projected, query_codes: rescore_asymmetric(projected, flat.search(query_codes, shortlist)[1], codes, k).ids,
        "names": {"scan": "asymmetric scan (PCA-ITQ codes fitted to the data)",
                  "shortlist": f"asymmetric, BFlat shortlist {shortlist} (same codes)"},
        "projected": hasher.project(queries), "query_codes": hasher.encode(queries), "build_seconds": time.perf_counter() - started,
    }


def _asymmetric_row(setup: dict, method: str, exact_float: np.ndarray, bits: int, threads: int, args) -> dict:
    """One asymmetric search ("scan" or "shortlist"; numpy with BLAS limited to `threads`, FAISS
    with its own threads) over PCA-ITQ codes: speed, and its top k against the exact float top k."""
    from threadpoolctl import threadpool_limits

    inputs = (setup["projected"], setup["query_codes"])
    with threadpool_limits(threads):
        row = {"method": setup["names"][method], "bits": bits, "threads": threads,
               "build_seconds": setup["build_seconds"], "bytes_per_vector": bits / 8, "queries": len(inputs[0])}
        row.update(measure(setup[method], inputs, min(args.latency_queries, len(inputs[0])), args.repeats))
        row["recall_vs_exact"] = recall_vs_exact(setup[method](*inputs), exact_float[: len(inputs[0])])
    return row


def _rerank(binary_index, embeddings, q_emb, q_codes, k, shortlist):
    _, candidates = binary_index.search(q_codes, shortlist)
    scores = np.einsum("qd,qcd->qc", q_emb, embeddings[candidates])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1)


def _where_time_goes(codes, query_codes, k, threads, args) -> dict:
    """Split IndexBinaryFlat's time: all distances alone (faiss.hammings) vs with top-k selection."""
    import faiss

    nq = min(len(query_codes), 64)
    q = np.ascontiguousarray(query_codes[:nq])
    out = np.empty((nq, len(codes)), dtype=np.int32)
    distances_only = min(time_calls(
        lambda: faiss.hammings(faiss.swig_ptr(q), faiss.swig_ptr(codes), nq, len(codes), codes.shape[1], faiss.swig_ptr(out)), repeats=2))
    return {"hammings_only_per_second": nq * len(codes) / distances_only}


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
    add_output_options(parser, "search")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    results = run(args)
    publish(args, "search", command_line("hashpa.eval.bench_search", argv), results, markdown(results))


if __name__ == "__main__":
    main()
