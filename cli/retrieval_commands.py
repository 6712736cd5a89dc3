"""``hashpa index``, ``search``, ``compare``, ``info`` and ``export-codes``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np

from hashpa.cli.main import cli, friendly_errors


@cli.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--model", required=True, type=click.Path(exists=True), help="Training run directory (or checkpoint file).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Index directory to create or update.")
@click.option("--float-index", "float_indexes", multiple=True, default=("Flat",), show_default=True,
              help="FAISS factory string, repeatable (Flat, HNSW32, IVF256,Flat ...).")
@click.option("--binary-index", "binary_indexes", multiple=True, default=("BFlat",), show_default=True,
              help="FAISS binary factory string, repeatable (BFlat, BHNSW32, BIVF256 ...).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--float16", is_flag=True, help="Store float embeddings as float16 (half the disk).")
@click.option("--device", default="auto", show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--workers", type=int, default=4, show_default=True, help="DataLoader processes decoding images.")
@click.option("--decode", type=click.Choice(["pil", "device"]), default="pil", show_default=True,
              help="device: read files in the workers, decode JPEGs and resize on --device (nvJPEG on a GPU).")
@click.option("--codes", type=click.Choice(["model", "itq"]), default="model", show_default=True,
              help="Codes of the binary indexes: the model's hash head, or PCA-ITQ fitted to this folder's float "
                   "embeddings (no labels; better on classes the model never saw, see BENCHMARKS.md).")
@click.option("--code-bits", type=int, help="With --codes itq: length of the fitted codes (default: the model's bits).")
@friendly_errors
def index(folder, model, out, float_indexes, binary_indexes, checkpoint, float16, device, batch_size, workers, decode, codes, code_bits) -> None:
    """Embed the images under FOLDER and build float and binary FAISS indexes in --out."""
    from hashpa.index import index as build_index

    summary = build_index(folder, model, out, tuple(float_indexes), tuple(binary_indexes), device, batch_size, workers, float16, checkpoint, decode,
                          codes, code_bits)
    click.echo(
        f"Indexed {summary.rows} images into {summary.out}: {summary.embedded} embedded"
        f" ({summary.images_per_second:.0f} img/s), {summary.reused} unchanged, {summary.removed} removed,"
        f" {len(summary.skipped)} unreadable; {summary.seconds:.1f} s"
    )
    for name, entry in summary.indexes.items():
        click.echo(f"  {name:<18} {entry['file']:<26} {entry['bytes']:>12,} bytes")


@cli.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("queries", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--mode", type=click.Choice(["float", "binary", "rerank", "asymmetric"]), default="float", show_default=True,
              help="asymmetric: the query's real-valued projection against the database's codes (indexes built with --codes itq).")
@click.option("--shortlist", type=int, help="rerank: Hamming candidates re-ranked by cosine (default 10*k); asymmetric: "
              "Hamming candidates from the binary index re-scored asymmetrically (default: exact scan of every code).")
@click.option("--index", "index_spec", help="Which built index to search (default Flat / BFlat).")
@click.option("--model", type=click.Path(exists=True), help="Embed queries with this model (must be the index's).")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--grid", type=click.Path(dir_okay=False), help="Write a PNG of each query and its results.")
@click.option("--show-codes", is_flag=True, help="Show the query's hash code as bits.")
@click.option("--nprobe", type=int, help="IVF indexes: lists visited per query.")
@click.option("--ef-search", type=int, help="HNSW indexes: search beam width.")
@friendly_errors
def search(index_dir, queries, k, mode, shortlist, index_spec, model, device, as_json, grid, show_codes, nprobe, ef_search) -> None:
    """Search INDEX_DIR with query images (files or folders)."""
    from hashpa.search import search as run_search

    results = run_search(index_dir, queries, k, mode, shortlist, index_spec, model, device, nprobe, ef_search)
    if grid:
        from hashpa.plots import result_grid

        result_grid(results, index_dir, grid)
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
        return
    score_name = {"binary": "Hamming", "asymmetric": "score"}.get(mode, "cosine")
    for result in results:
        click.echo(f"query {result.query}")
        if show_codes:
            click.echo(f"  code {result.code}")
        for hit in result.hits:
            score = f"{hit.score:.0f}" if mode == "binary" else f"{hit.score:.4f}"
            click.echo(f"  {hit.rank:>3}  {score_name} {score:>7}  {hit.path}")
    if grid:
        click.echo(f"wrote {grid}")


@cli.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--queries", type=click.Path(exists=True, file_okay=False),
              help="Folder of query images (class sub-folders give labels). Default: every labelled image queries the rest.")
@click.option("--shortlist", type=int, help="rerank and shortlisted asymmetric: Hamming candidates per query (default 100).")
@click.option("--threads", type=int, help="FAISS threads (default: all cores).")
@click.option("--repeats", type=int, default=3, show_default=True, help="Timed repeats of the batched search.")
@click.option("--latency-queries", type=int, default=200, show_default=True, help="Single queries timed for p50/p99.")
@click.option("--model", type=click.Path(exists=True))
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(file_okay=False), help="Where compare.json/.md/.png go (default: INDEX_DIR).")
@click.option("--nprobe", type=int, help="IVF indexes: lists visited per query.")
@click.option("--ef-search", type=int, help="HNSW indexes: search beam width.")
@friendly_errors
def compare(index_dir, queries, shortlist, threads, repeats, latency_queries, model, device, out, nprobe, ef_search) -> None:
    """Float vs binary vs rerank, side by side: Recall@K, MAP@R, speed, memory."""
    from hashpa.eval.compare import compare as run_compare
    from hashpa.eval.compare import markdown_table

    report = run_compare(index_dir, queries, shortlist=shortlist, model=model, device=device, threads=threads,
                         repeats=repeats, latency_queries=latency_queries, out=out, nprobe=nprobe, ef_search=ef_search)
    click.echo(markdown_table(report))
    click.echo(f"\nwrote compare.json, compare.md and compare.png in {out or index_dir}")


@cli.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@friendly_errors
def info(index_dir) -> None:
    """What an index holds: model, rows, files, and per-bit statistics of its codes."""
    from hashpa.codes import bit_statistics
    from hashpa.search import OpenIndex
    from hashpa.store import CODE_SOURCES

    opened = OpenIndex(index_dir)
    meta, store = opened.meta, opened.store
    stats = bit_statistics(store.index_codes)
    click.echo(f"index {opened.path}: {len(store)} images from {meta['folder']}")
    click.echo(f"model {meta['model']} ({meta['checkpoint']}, fingerprint {meta['model_fingerprint']}), backbone {store.attrs.get('backbone')}")
    labels = f"{len(store.class_names)} classes" if store.has_labels else "no labels"
    click.echo(f"{store.bits}-bit codes from {CODE_SOURCES[store.code_source]}, {meta['dim']}-d {meta['embeddings_dtype']} embeddings, {labels}")
    for name, entry in meta["indexes"].items():
        click.echo(f"  {name:<18} {entry['file']:<26} {entry['bytes']:>12,} bytes")
    click.echo(f"bits: mean entropy {stats['mean_entropy']:.3f} (1.0 = every bit balanced), "
               f"{stats['dead_bits']} dead bits, mean |correlation| between bits {stats['mean_abs_correlation']:.3f}")
    ones = stats["ones_fraction"]
    click.echo(f"fraction of ones per bit: min {ones.min():.3f}, median {np.median(ones):.3f}, max {ones.max():.3f}")


@cli.command("export-codes")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "binary"]), default="text", show_default=True,
              help="text: 'path<TAB>bits' lines; binary: the packed codes back to back, bits/8 bytes per image, in store order.")
@friendly_errors
def export_codes(index_dir, output, fmt) -> None:
    """Write an index's hash codes to OUTPUT."""
    from hashpa.codes import export_codes as write_codes
    from hashpa.search import OpenIndex

    opened = OpenIndex(index_dir)
    write_codes(opened.store.index_codes, opened.store.paths, Path(output), fmt)
    click.echo(f"wrote {len(opened.store)} codes of {opened.store.bits} bits to {output}")

