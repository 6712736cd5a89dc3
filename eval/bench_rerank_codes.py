"""The rerank-codes mode (``hashpa index --rerank-codes SPEC``, ``--mode rerank-codes``): a Hamming
shortlist re-ranked by compressed embeddings, against the float embeddings, the float rerank and
FAISS product quantisation scanned flat.

Quality, on index directories of real photos (every labelled photo queries the others): Recall@1 of
each quantiser SPEC at each shortlist size, the shortlist re-ranking every photo included, and
the smallest shortlist within 0.2 points of it; PQ flat scans (asymmetric distances) beside them.

    python -m eval.bench_rerank_codes quality INDEX_DIR ... --benchmarks docs/benchmarks/rerank-codes.md --tag NAME

Speed and memory at scale, on synthetic rows drawn with the statistics of an index's real
embeddings (their mean and covariance; codes: the signs of the least-squares linear map from the
embeddings to the index's codes): batched queries per second of the binary scan, the float scan,
the PQ flat scan, IVF-PQ, rerank from float32 and rerank-codes, and each one's bytes in memory.

    python -m eval.bench_rerank_codes speed INDEX_DIR --rows 1000000 --benchmarks docs/benchmarks/rerank-codes.md
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from eval.publish import command_line, parse_benchmark_args
from eval.publish import publish as write_report
from hashpa.compressed import fit_compressed
from hashpa.indexdir import IndexDir, Store, write_index_dir
from hashpa.report.frontier import float_method
from hashpa.search import open_index
from hashpa.search.modes import default_shortlist

log = logging.getLogger("eval.bench_rerank_codes")
SPECS = ("PQ8", "PQ16", "OPQ16,PQ16", "PQ32", "SQ8")
SHORTLISTS = (10, 20, 50, 100, 200, 500, 1000)
FLAT_SCANS = ("PQ8np", "PQ16np", "OPQ16,PQ16np", "PQ32np")  # FAISS factory strings of the flat scans beside the rerank
WITHIN = 0.002  # the shortlist default's target: Recall@1 this close to re-ranking every photo
SPEED_QUERIES = 200


def recall_at_1(ids: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> float:
    """Recall@1 of leave-one-out searches: ids int64 [Q, >=2] found for the stored rows `queries`,
    the first that is not the query itself judged by its label."""
    first = np.where(ids[:, 0] == queries, ids[:, 1], ids[:, 0])
    return float(np.mean(labels[first] == labels[queries]))


def quality(index_dir: Path, specs, shortlists, work: Path) -> dict:
    source = IndexDir(index_dir)
    store = source.store
    queries = np.flatnonzero(store.labels >= 0)
    embeddings, codes, labels = source.float_rows(queries), store.index_codes[queries], store.labels
    n = len(store)
    log.info("%s: %d rows, %d queries", index_dir, n, len(queries))
    row = {"index": str(index_dir), "rows": n, "queries": len(queries), "bits": store.bits, "dim": int(store.embeddings.shape[1])}
    ix = open_index(index_dir)
    row["float"] = recall_at_1(ix.search(embeddings, 2, "float").ids, labels, queries)
    row["binary"] = recall_at_1(ix.search(embeddings, 2, "binary", codes=codes).ids, labels, queries)
    row["rerank"] = {str(s): recall_at_1(ix.search(embeddings, 2, "rerank", codes=codes, shortlist=s + 1).ids, labels, queries)
                     for s in (*shortlists, n - 1)}
    stored = source.float_rows(np.arange(n))
    row["pq_flat"] = {}
    for spec in FLAT_SCANS:
        scan = float_method(spec, faiss.index_factory(stored.shape[1], spec, faiss.METRIC_L2), stored)
        row["pq_flat"][spec] = {"recall_at_1": recall_at_1(scan.search(embeddings, 2), labels, queries), "bytes": scan.code_bytes}
    row["specs"] = {}
    for spec in specs:
        copy = Store(**{**vars(store), "compressed": fit_compressed(stored, spec)})
        target = work / f"{index_dir.name}-{spec}"
        write_index_dir(target, copy, ("Flat",), ("BFlat",))
        with open_index(target) as compressed:
            by_shortlist = {str(s): recall_at_1(compressed.search(embeddings, 2, "rerank-codes", codes=codes, shortlist=s + 1).ids, labels, queries)
                            for s in (*shortlists, n - 1)}
            code_bytes = compressed.store.compressed.code_size
        everything = by_shortlist[str(n - 1)]
        enough = next((int(s) for s in by_shortlist if by_shortlist[s] >= everything - WITHIN), n - 1)
        row["specs"][spec] = {"code_bytes": code_bytes, "bytes_per_image": store.bits // 8 + code_bytes, "recall_at_1": by_shortlist,
                              "shortlist_within": enough}
        log.info("%s: R@1 %s; within %.1f pt of every photo from shortlist %d", spec, by_shortlist, 100 * WITHIN, enough)
    return row


def quality_markdown(rows: list[dict], shortlists) -> str:
    lines = []
    for r in rows:
        shown = [str(s) for s in shortlists if s < r["rows"] - 1] + [str(r["rows"] - 1)]
        lines += [f"`{r['index']}`: {r['rows']:,} photos, {r['queries']:,} queries, {r['bits']}-bit codes, {r['dim']}-d embeddings. "
                  f"Float (exact cosine) R@1 {r['float']:.4f}; binary (Hamming) {r['binary']:.4f}; "
                  + "; ".join(f"{name} flat scan {m['recall_at_1']:.4f} ({m['bytes']:.0f} B)" for name, m in r["pq_flat"].items()) + ".", "",
                  "| re-ranked by | bytes/image (code + rerank code) | " + " | ".join(f"R@1, shortlist {s}" for s in shown)
                  + f" | shortlist within {100 * WITHIN:.1f} pt of every photo |",
                  "|---|---|" + "---|" * len(shown) + "---|",
                  f"| float32 (rerank) | {r['bits'] // 8} + {4 * r['dim']} | " + " | ".join(f"{r['rerank'][s]:.4f}" for s in shown) + " | - |"]
        for spec, m in r["specs"].items():
            lines.append(f"| {spec} (rerank-codes) | {r['bits'] // 8} + {m['code_bytes']} | " + " | ".join(f"{m['recall_at_1'][s]:.4f}" for s in shown)
                         + f" | {m['shortlist_within']} |")
        lines.append("")
    lines.append("Each query's own photo is left out of its results; the shortlist size is the number of other photos re-ranked "
                 "(the last column re-ranks every photo). The flat scans are FAISS's own searches of its product quantisers (PQm: 8-bit "
                 "sub-quantisers; OPQ: a learned rotation first; L2 asymmetric distances), fitted to the same embeddings.")
    return "\n".join(lines)


def synthetic_store(index_dir: Path, rows: int, seed: int) -> Store:
    """`rows` rows drawn with the statistics of the index's embeddings: Gaussian with their mean and
    covariance, L2-normalised; codes the signs of the least-squares linear map from the
    (centred) embeddings to the index's +-1 codes."""
    store = IndexDir(index_dir).store
    real = np.asarray(store.embeddings, np.float64)
    mean, covariance = real.mean(axis=0), np.cov(real, rowvar=False)
    signs = np.unpackbits(store.index_codes, axis=1) * 2.0 - 1.0
    mapping = np.linalg.lstsq(real - mean, signs, rcond=None)[0].astype(np.float32)
    factor = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(mean))).astype(np.float32)
    rng = np.random.default_rng(seed)
    embeddings = np.empty((rows, len(mean)), np.float32)
    codes = np.empty((rows, store.index_codes.shape[1]), np.uint8)
    for start in range(0, rows, 65536):
        block = rng.standard_normal((min(65536, rows - start), len(mean)), dtype=np.float32) @ factor.T + mean.astype(np.float32)
        codes[start : start + len(block)] = np.packbits((block - mean.astype(np.float32)) @ mapping > 0, axis=1)
        embeddings[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return Store(paths=[f"s/{i:09d}.jpg" for i in range(rows)], labels=np.full(rows, -1, np.int32), class_names=[],
                 embeddings=embeddings, codes=codes, sizes=np.zeros(rows, np.int64), mtimes=np.zeros(rows, np.int64),
                 attrs={"model_fingerprint": "synthetic"})


def timed(search, queries: int) -> tuple[float, np.ndarray]:
    """(queries per second, ids [Q, k]) of search() -> ids: the first call warms (the FAISS index
    read, the pages touched), the second is timed."""
    search()
    started = time.perf_counter()
    ids = search()
    return queries / (time.perf_counter() - started), ids


def overlap(ids: np.ndarray, exact: np.ndarray) -> float:
    """The mean fraction of each row of `exact` (ids [Q, k]) found in the same row of `ids`."""
    return float(np.mean([len(np.intersect1d(a, b)) / exact.shape[1] for a, b in zip(ids, exact)]))


def speed(index_dir: Path, rows: int, spec: str, flats: list[str], ivf_pq: str, bivf: str, nprobe: int, shortlist: int | None, seed: int,
          work: Path) -> dict:
    store = synthetic_store(index_dir, rows, seed)
    log.info("%d synthetic rows drawn; fitting %s", rows, spec)
    store.compressed = fit_compressed(store.embeddings, spec)
    target = work / f"speed-{rows}"
    write_index_dir(target, store, ("Flat", *flats, ivf_pq), ("BFlat", bivf))
    del store
    ix = open_index(target, nprobe=nprobe)
    picked = np.random.default_rng(seed + 1).choice(rows, SPEED_QUERIES, replace=False)
    q_emb, q_codes = ix.directory.float_rows(picked), ix.store.index_codes[picked]
    k, dim, code_bytes = 10, q_emb.shape[1], ix.store.bits / 8
    floats_shortlist, codes_shortlist = shortlist or default_shortlist("rerank", k), shortlist or default_shortlist("rerank-codes", k)
    rerank_bytes = code_bytes + ix.store.compressed.code_size

    def mode(name, **options):
        return lambda: ix.search(q_emb, k, name, codes=q_codes, **options).ids

    def faiss_scan(spec):
        return lambda: ix.directory.faiss_index("float", spec).search(q_emb, k)[1]

    searches = {
        "binary (BFlat)": (mode("binary"), code_bytes),
        f"binary ({bivf}, nprobe {nprobe})": (mode("binary", index=bivf), None),
        "float32 (Flat)": (mode("float"), 4 * dim),
        **{f"{flat} flat scan (FAISS)": (faiss_scan(flat), None) for flat in flats},
        f"{ivf_pq} (FAISS, nprobe {nprobe})": (faiss_scan(ivf_pq), None),
        f"rerank from float32 (shortlist {floats_shortlist})": (mode("rerank", shortlist=floats_shortlist), code_bytes + 4 * dim),
        f"rerank-codes {spec} (shortlist {codes_shortlist})": (mode("rerank-codes", shortlist=codes_shortlist), rerank_bytes),
        f"rerank-codes {spec} (shortlist {codes_shortlist} from {bivf}, nprobe {nprobe})": (mode("rerank-codes", shortlist=codes_shortlist, index=bivf),
                                                                                            None),
    }
    row = {"rows": rows, "dim": dim, "bits": ix.store.bits, "queries": SPEED_QUERIES, "nprobe": nprobe, "methods": {}}
    exact = None
    for name, (search, bytes_per_row) in searches.items():
        qps, ids = timed(search, SPEED_QUERIES)
        exact = ids if name == "float32 (Flat)" else exact
        if bytes_per_row is None:  # as built: codes, list ids, codebooks (plus the rerank codes where they re-rank)
            built = ix.meta.entry(*built_index(name, bivf, ivf_pq, flats))["bytes"] / rows
            bytes_per_row = built + (rerank_bytes - code_bytes if name.startswith("rerank") else 0)
        row["methods"][name] = {"queries_per_s": qps, "bytes_per_row": bytes_per_row, "memory_bytes": bytes_per_row * rows, "ids": ids}
        log.info("%d rows, %s: %.0f q/s", rows, name, qps)
    for method in row["methods"].values():
        method["float_top10_overlap"] = overlap(method.pop("ids"), exact)
    ix.close()
    return row


def built_index(name: str, bivf: str, ivf_pq: str, flats: list[str]) -> tuple[str, str]:
    """(kind, spec) of the built FAISS index whose file gives the bytes a row of the method `name`."""
    if bivf in name:
        return "binary", bivf
    return "float", next((flat for flat in flats if name.startswith(flat)), ivf_pq)


def speed_markdown(rows: list[dict]) -> str:
    lines = ["", "| rows | method | queries/s (batched) | bytes a row | memory | overlap with float32's top 10 |", "|---|---|---|---|---|---|"]
    for r in rows:
        for name, m in r["methods"].items():
            lines.append(f"| {r['rows']:,} | {name} | {m['queries_per_s']:,.0f} | {m['bytes_per_row']:,.1f} | {m['memory_bytes'] / 2**20:,.0f} MiB | "
                         f"{m['float_top10_overlap']:.3f} |")
    lines += ["", f"{SPEED_QUERIES} queries (rows of the database) at k=10, all at once, on the FAISS threads of the machine; the first run of "
                  "each warms it and the second is timed. Memory: the rows' vectors the method reads (codes, compressed or float32 "
                  "embeddings; IVF indexes as built, list ids included). The overlap is with the exact float search on the same synthetic "
                  "rows: how much of its answer each approximation keeps, not a quality on real photos (the quality sections measure that)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("quality", "speed"))
    parser.add_argument("index_dirs", type=Path, nargs="+")
    parser.add_argument("--specs", nargs="+", default=list(SPECS), help="quality: the --rerank-codes quantisers")
    parser.add_argument("--shortlists", type=int, nargs="+", default=list(SHORTLISTS))
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000], help="speed: synthetic rows")
    parser.add_argument("--spec", default="OPQ16,PQ16", help="speed: the --rerank-codes quantiser")
    parser.add_argument("--flat", nargs="+", default=["PQ16np", "OPQ16,PQ16np", "PQ32np"], help="speed: the FAISS flat scans (factory strings)")
    parser.add_argument("--ivf-pq", default="IVF1024,PQ16", help="speed: the IVF-PQ index")
    parser.add_argument("--bivf", default="BIVF1024", help="speed: the binary IVF index, a multi-index Hamming shortlist")
    parser.add_argument("--nprobe", type=int, default=16, help="speed: lists the IVF indexes visit")
    parser.add_argument("--shortlist", type=int, help="speed: the Hamming shortlist re-ranked (default: each mode's own)")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_benchmark_args(parser, "rerank-codes", argv)
    command = command_line("eval.bench_rerank_codes", argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="hashpa-rerank-codes-") as work:
        if args.part == "quality":
            for index_dir in args.index_dirs:
                results.append(quality(index_dir, args.specs, args.shortlists, Path(work)))
            write_report(args, "rerank-codes", command, {"quality": results}, quality_markdown(results, args.shortlists))
            return
        for rows in args.rows:
            results.append(speed(args.index_dirs[0], rows, args.spec, args.flat, args.ivf_pq, args.bivf, args.nprobe, args.shortlist, args.seed,
                                  Path(work)))
            write_report(args, "rerank-codes-speed", command, {"speed": results}, speed_markdown(results))


if __name__ == "__main__":
    main()
