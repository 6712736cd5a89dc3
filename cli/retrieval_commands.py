"""``hashpa index``, ``search``, ``compare``, ``info`` and ``export-codes``."""

from __future__ import annotations

from dataclasses import asdict

import click

from hashpa.cli.main import cli, echo_json, engine_option, friendly_errors, json_option, milvus_options, overwrite_option
from hashpa.indexdir.layout import CODE_SOURCES, DEFAULT_INDEXES
from hashpa.indexdir.settings import DECODERS, INDEX_SPLITS, IndexSettings
from hashpa.runs.directory import CHECKPOINTS
from hashpa.search.modes import MODE_FACTS, MODES, RERANK_CODES_SHORTLIST, default_shortlist

DEFAULTS = IndexSettings()


@cli.command()
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--run-dir", "--model", "run", required=True, type=click.Path(exists=True), help="The trained model: its run directory (or a checkpoint file).")
@click.option("--split", type=click.Choice(INDEX_SPLITS),
              help="Index this split of the model run's own data instead of FOLDER (test: the images its evaluation searched).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Index directory to create or update.")
@click.option("--float-index", "float_indexes", multiple=True, default=DEFAULT_INDEXES["float"], show_default=True,
              help="FAISS factory string, repeatable (Flat, HNSW32, IVF256,Flat ...).")
@click.option("--binary-index", "binary_indexes", multiple=True, default=DEFAULT_INDEXES["binary"], show_default=True,
              help="FAISS binary factory string, repeatable (BFlat, BHNSW32, BIVF256 ...).")
@click.option("--checkpoint", type=click.Choice(CHECKPOINTS), default=DEFAULTS.checkpoint, show_default=True)
@click.option("--float16", is_flag=True, help="Store float embeddings as float16 (half the disk).")
@click.option("--device", default=DEFAULTS.device, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=DEFAULTS.workers, show_default=True, help="DataLoader processes decoding images.")
@click.option("--decode", type=click.Choice(DECODERS), default=DEFAULTS.decode, show_default=True,
              help="device: read files in the workers, decode JPEGs and resize on --device (nvJPEG on a GPU).")
@click.option("--codes", type=click.Choice(tuple(CODE_SOURCES)), default=DEFAULTS.codes, show_default=True,
              help="Codes of the binary indexes: the model's hash head, or PCA-ITQ fitted to this folder's float "
                   "embeddings (no labels; better on classes the model never saw, see BENCHMARKS.md).")
@click.option("--code-bits", type=int, help="With --codes itq: length of the fitted codes (default: the model's bits).")
@click.option("--rerank-codes", metavar="SPEC",
              help="Also keep the float embeddings compressed by this FAISS quantiser (OPQ16,PQ16, PQ16, PQ32, SQ8, float16, PCA128,SQ8 ...; "
                   "fitted to this folder, no labels) for --mode rerank-codes: binary speed, re-ranked without the float32 embeddings.")
@click.option("--replace", is_flag=True, help="Rebuild an index that another model built (its embeddings are discarded).")
@click.option("--class-depth", type=click.IntRange(min=0), default=DEFAULTS.class_depth, show_default=True,
              help="The class of an image: 0, the folder it is in (nested folders: 'group/class'); N, its first N folders.")
@json_option
@friendly_errors
def index(folder, run, out, split, as_json, **settings) -> None:
    """Embed the images under FOLDER (or a split of the model's run) and build float and binary FAISS indexes in --out."""
    from hashpa.indexdir.build import build_index

    summary = build_index(folder, run, out, split, **settings)
    if summary is None:  # another rank of torchrun's: rank 0 reports
        return
    if as_json:
        echo_json(summary.to_dict())
        return
    click.echo(
        f"Indexed {summary.rows} images into {summary.out}: {summary.embedded} embedded"
        f" ({summary.images_per_second:.0f} img/s), {summary.reused} unchanged, {summary.removed} removed,"
        f" {len(summary.skipped)} unreadable; {summary.seconds:.1f} s"
    )
    _echo_indexes(summary.indexes)


@cli.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("queries", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--mode", type=click.Choice(MODES), default="float", show_default=True,
              help="rerank: a Hamming shortlist re-ranked by the float embeddings; rerank-codes: re-ranked by the compressed "
                   "embeddings (indexes built with --rerank-codes); asymmetric: the query's real-valued projection against the "
                   "database's codes (indexes built with --codes itq).")
@click.option("--shortlist", type=int, help="rerank and rerank-codes: Hamming candidates re-ranked (default 10*k; rerank-codes at least "
              f"{RERANK_CODES_SHORTLIST}); asymmetric: "
              "Hamming candidates from the binary index re-scored asymmetrically (default: exact scan of every code).")
@click.option("--index", "index", help="Which built index to search (default Flat / BFlat).")
@click.option("--run-dir", "--model", "run", type=click.Path(exists=True), help="Embed queries with this run's model (it must be the index's).")
@click.option("--device", default="auto", show_default=True)
@engine_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--grid", type=click.Path(dir_okay=False), help="Write a PNG of each query and its results.")
@overwrite_option
@click.option("--show-codes", is_flag=True, help="Show the query's hash code as bits.")
@click.option("--nprobe", type=click.IntRange(min=1), help="IVF indexes: lists visited per query.")
@click.option("--ef-search", type=click.IntRange(min=1), help="HNSW indexes: search beam width.")
@milvus_options
@friendly_errors
def search(index_dir, queries, as_json, grid, overwrite, show_codes, **options) -> None:
    """Search INDEX_DIR with query images (files or folders)."""
    from hashpa.codes import escape_name
    from hashpa.outputs import check_replaceable
    from hashpa.search.queries import search as run_search

    if grid:
        check_replaceable(grid, overwrite)
    results = run_search(index_dir, queries, with_codes=show_codes or as_json, **options)
    if grid:
        from hashpa.report.plots import result_grid

        result_grid(results, index_dir, grid, overwrite=overwrite)
    if as_json:
        echo_json([asdict(r) for r in results])
        return
    facts = MODE_FACTS[options["mode"]]
    for result in results:
        click.echo(f"query {escape_name(result.query)}")
        if show_codes:
            click.echo(f"  code {result.code}")
        for hit in result.hits:
            score = f"{hit.score:.0f}" if facts.whole_scores else f"{hit.score:.4f}"
            click.echo(f"  {hit.rank:>3}  {facts.score_short} {score:>7}  {escape_name(hit.path)}")
    if grid:
        click.echo(f"wrote {grid}")


@cli.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--milvus", metavar="URI", required=True, help="A Milvus Lite file (./photos.db) or a Milvus server (http://host:19530).")
@click.option("--collection", help="The collection to create or bring up to date (default: from INDEX_DIR's name).")
@json_option
@friendly_errors
def publish(index_dir, milvus, collection, as_json) -> None:
    """Publish INDEX_DIR to a Milvus collection: codes, float embeddings, paths and labels; again after an
    update, only the changed rows are upserted and removed ones deleted."""
    from hashpa.milvus import publish as run_publish

    summary = run_publish(index_dir, milvus, collection)
    if as_json:
        echo_json(asdict(summary))
        return
    click.echo(f"Published {summary.rows} rows of {index_dir} to {summary.collection} at {milvus}: "
               f"{summary.upserted} upserted, {summary.deleted} deleted")


@cli.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--queries", type=click.Path(exists=True, file_okay=False),
              help="Folder of query images (class sub-folders give labels). Default: every labelled image queries the rest.")
@click.option("--shortlist", type=click.IntRange(min=1), help="rerank, rerank-codes and shortlisted asymmetric: Hamming candidates per query "
              f"(default at compare's k of 10: {default_shortlist('rerank', 10)}; rerank-codes {default_shortlist('rerank-codes', 10)}).")
@click.option("--threads", type=click.IntRange(min=1), help="FAISS threads (default: all cores).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Timed repeats of the batched search.")
@click.option("--latency-queries", type=click.IntRange(min=0), default=200, show_default=True, help="Single queries timed for p50/p99 (0: none).")
@click.option("--run-dir", "--model", "run", type=click.Path(exists=True), help="Embed query images with this run's model (it must be the index's).")
@click.option("--device", default="auto", show_default=True)
@engine_option
@click.option("--out", type=click.Path(file_okay=False), help="Where compare.json/.md/.png go (default: INDEX_DIR).")
@overwrite_option
@click.option("--nprobe", type=click.IntRange(min=1), help="IVF indexes: lists visited per query.")
@click.option("--ef-search", type=click.IntRange(min=1), help="HNSW indexes: search beam width.")
@click.option("--frontier", is_flag=True, help="Also float16, PCA-reduced floats, PQ8/16/32, RaBitQ and PCA-ITQ codes of 32-256 bits, "
                                                "fitted to the indexed embeddings: quality against bytes per image.")
@click.option("--budget-bytes", type=click.FloatRange(min=0, min_open=True),
              help="Name the best method (highest Recall@1) within this many bytes per image; with --frontier among those too.")
@click.option("--min-qps", type=click.FloatRange(min=0, min_open=True),
              help="Name the best method (highest Recall@1) of at least this many batched queries/s; combines with --budget-bytes.")
@milvus_options
@json_option
@friendly_errors
def compare(index_dir, as_json, **options) -> None:
    """Float vs binary vs rerank, side by side: Recall@K, MAP@R, speed, memory; and the deep-hashing protocol
    (mAP@1000, mAP@ALL, P@K, P@H<=2, precision-recall curves) of the floats and the codes."""
    from hashpa.report.comparison import compare as run_compare
    from hashpa.report.tables import compare_table

    report = run_compare(index_dir, **options)
    if as_json:
        echo_json(report)
        return
    click.echo(compare_table(report))
    written = "compare.json, compare.md and compare.png" if "skipped" in report["hashing"] else "compare.json, compare.md, compare.png and compare-pr.png"
    click.echo(f"\nwrote {written} in {options['out'] or index_dir}")


@cli.command()
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@json_option
@friendly_errors
def info(index_dir, as_json) -> None:
    """What an index holds: model, rows, files, and per-bit statistics of its codes."""
    from hashpa.indexdir.facts import info as index_info

    facts = index_info(index_dir)
    if as_json:
        echo_json(facts)
        return
    stats, ones = facts["bit_statistics"], facts["bit_statistics"]["ones_fraction"]
    click.echo(f"index {facts['index']}: {facts['rows']} images from {facts['folder']}")
    click.echo(f"model {facts['model']} ({facts['checkpoint']}, fingerprint {facts['model_fingerprint']}), backbone {facts['backbone']}")
    labels = f"{facts['classes']} classes" if facts["classes"] else "no labels"
    click.echo(f"{facts['bits']}-bit codes from {facts['code_source_description']}, {facts['dim']}-d {facts['embeddings_dtype']} embeddings, {labels}")
    if facts["rerank_codes"]:
        click.echo(f"rerank codes: {facts['rerank_codes']}, {facts['rerank_code_bytes']} bytes an image (--mode rerank-codes)")
    _echo_indexes(facts["indexes"])
    click.echo(f"bits: mean entropy {stats['mean_entropy']:.3f} (1.0 = every bit balanced), "
               f"{stats['dead_bits']} dead bits, mean |correlation| between bits {stats['mean_abs_correlation']:.3f}")
    click.echo(f"fraction of ones per bit: min {ones['min']:.3f}, median {ones['median']:.3f}, max {ones['max']:.3f}")


@cli.command("export-codes")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "binary"]), default="text", show_default=True,
              help="text: 'path<TAB>bits' lines (backslashes and control characters in paths escaped, \\n, \\t, \\x1b ...); "
                   "binary: the packed codes back to back, bits/8 bytes per image, in store order.")
@overwrite_option
@friendly_errors
def export_codes(index_dir, output, fmt, overwrite) -> None:
    """Write an index's hash codes to OUTPUT."""
    from hashpa.codes import export_codes as write_codes
    from hashpa.indexdir.open import IndexDir

    opened = IndexDir(index_dir)
    write_codes(opened.store.index_codes, opened.store.paths, output, fmt, overwrite)
    click.echo(f"wrote {len(opened.store)} codes of {opened.store.bits} bits to {output}")


def _echo_indexes(indexes: dict) -> None:
    for name, entry in indexes.items():
        click.echo(f"  {name:<18} {entry['file']:<26} {entry['bytes']:>12,} bytes")


@cli.command()
@click.argument("index_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface; mind who can reach it).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--device", default="auto", show_default=True)
@engine_option
@click.option("--max-upload-mb", type=click.FloatRange(min=0.01), default=20.0, show_default=True, help="Larger uploads are refused (413).")
@click.option("--allow-host", "allow_hosts", multiple=True,
              help="Also answer requests whose Host is this name (repeatable); localhost and --host are always allowed.")
@milvus_options
@friendly_errors
def serve(index_dirs, host, port, device, engine, max_upload_mb, allow_hosts, milvus, collection) -> None:
    """Serve a search page and a JSON API over INDEX_DIRS: every search mode each index supports, side by side."""
    from hashpa.serve.app import serve as run_server

    click.echo(f"hashpa serve: http://{host}:{port}/ (Ctrl-C stops)")
    run_server(index_dirs, host, port, device, max_upload_mb, allow_hosts, engine, milvus, collection)
