"""``hashpa index``: embed an image folder once, store both representations, build FAISS indexes.

Re-running on the same folder embeds only new or changed files and drops deleted ones; finished
batches of an interrupted run are kept (``partial``) and not embedded again. What is indexed comes
from ``sources``; the result is written as a new generation (``write``, ``generations``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hashpa.codes import check_bits
from hashpa.compressed import check_rerank_spec, fit_compressed
from hashpa.data.folder import Sample
from hashpa.data.labels import label_paths
from hashpa.distributed import barrier, is_main_process, process_group, rank, rank_device, world_size
from hashpa.errors import HashpaError
from hashpa.fileio import folder_lock, remove_temporaries, verify
from hashpa.indexdir.changes import FolderFiles, contained, keep_unreadable_folders, unchanged_rows
from hashpa.indexdir.faiss_files import make_faiss_index
from hashpa.indexdir.layout import STORE_FILE, IndexMeta
from hashpa.indexdir.partial import PartialBatches, Rows
from hashpa.indexdir.settings import IndexSettings
from hashpa.indexdir.sources import files_to_index
from hashpa.indexdir.store import FittedCodes, Store, StoredRows, read_store_rows
from hashpa.indexdir.write import current_meta, write_index_dir
from hashpa.outputs import check_folder, claim_folder
from hashpa.quantizers import LOW_DATA_ROWS_PER_BIT, enough_rows, fit_itq

log = logging.getLogger(__name__)

ITQ_SAMPLE = 100_000  # embeddings the database-fitted quantiser is trained on, at most


@dataclass
class IndexSummary:
    out: Path
    rows: int
    embedded: int  # images embedded by this run
    reused: int  # rows taken from the previous store or an interrupted run
    removed: int  # rows of files that no longer exist
    skipped: list[str] = field(default_factory=list)  # unreadable files
    seconds: float = 0.0
    images_per_second: float = 0.0
    indexes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


def build_index(folder: str | Path | None, run: str | Path, out: str | Path, split: str | None = None, **settings) -> IndexSummary:
    """Embed the images under `folder` with the model trained in `run` (its run directory, or a
    checkpoint file) into the index directory `out`, creating or updating it; `settings` are IndexSettings' fields.

    `split` ("train", "test" or, for In-Shop, "gallery") indexes that split of the run's own data
    instead of a folder (`folder` None), labelled as the run labels it. codes "itq" fills the
    binary indexes with codes of the same length (or `code_bits`) fitted to the indexed float
    embeddings by PCA-ITQ (unsupervised, refitted on every run; queries are encoded with the
    stored quantiser), which rank better on classes the model never saw. rerank_codes (a FAISS
    quantiser's factory string) adds the embeddings compressed by it, fitted on every run, for
    the rerank-codes search mode (``hashpa.compressed``).
    """
    started = time.perf_counter()
    options = IndexSettings.of(settings)
    for name, value in (("folder", folder), ("run", run), ("out", out)):
        if not isinstance(value, (str, os.PathLike)) and (value is not None or name != "folder"):
            raise HashpaError(f"{name} must be a path (a str or a pathlib.Path), got {value!r}")
    out = Path(out)
    with process_group(options.device):
        main = is_main_process()
        if main:
            check_folder(out, "index")
        folder, files = files_to_index(folder, run, split, options.class_depth)
        if main:
            claim_folder(out, "index")
        with folder_lock(out, "hashpa index") if main else contextlib.nullcontext():  # rank 0 holds it for all
            if main:
                remove_temporaries(out)
            barrier()
            return _build(folder, files, run, out, options, started)


def _build(folder: Path, files: FolderFiles, run: str | Path, out: Path, options: IndexSettings, started: float) -> IndexSummary | None:
    """Under torchrun every rank embeds its share of the batches; rank 0 then assembles and writes
    the index (the other ranks return None)."""
    from hashpa.devices import resolve_device
    from hashpa.embed import load

    if not len(files):
        raise HashpaError(f"no images found under {folder}" + (f" ({len(files.unusable)} unusable image files)" if files.unusable else ""))
    embedder = load(run, options.checkpoint, rank_device(resolve_device(options.device)))
    _check_before_embedding(options, embedder, len(files))
    meta = current_meta(out, damaged_ok=options.replace)
    previous = _previous_rows(out, meta, embedder, options.replace)
    _warn_left_out(out, meta, options)
    files, kept = keep_unreadable_folders(files, previous.paths, previous.sizes, previous.mtimes)
    if kept:
        log.warning("%d folders could not be read (%s): their %d indexed images are kept as they were", len(files.unreadable_folders),
                    ", ".join(files.unreadable_folders[:3]), kept)
    partial = PartialBatches(out, embedder.fingerprint)
    from_store = unchanged_rows(files, previous.paths, previous.sizes, previous.mtimes)
    done = partial.read(embedder.dim, embedder.bits // 8, announce=True)
    from_partial = np.where(from_store < 0, unchanged_rows(files, done.paths, done.sizes, done.mtimes), -1)
    todo = np.flatnonzero((from_store < 0) & (from_partial < 0))
    log.info("%d images: %d to embed, %d unchanged", len(files), len(todo), len(files) - len(todo))
    del done
    barrier()  # every rank has read the kept batches before any writes more: else a late rank's share would shift and skip images

    started_embedding = time.perf_counter()
    _embed(embedder, folder, files, todo, partial, options)
    barrier()  # every rank's batches are on disk: rank 0 reads them all
    if not is_main_process():
        return None
    done = partial.read(embedder.dim, embedder.bits // 8)
    embed_seconds = time.perf_counter() - started_embedding if len(todo) else 0.0
    from_partial = np.where(from_store < 0, unchanged_rows(files, done.paths, done.sizes, done.mtimes), -1)
    present = (from_store >= 0) | (from_partial >= 0)
    skipped = [str(p) for p in files.paths[~present]] + [path for path, _ in files.unusable]
    if skipped:
        log.warning("skipped %d unreadable images: %s", len(skipped), ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    if not present.any():
        raise HashpaError(f"none of the {len(files)} images under {folder} could be read")

    store = _assemble(files, present, from_store, previous, from_partial, done, embedder, folder, options)
    if options.codes == "itq":
        store.fitted = fit_database_codes(store.embeddings, store.bits if options.code_bits is None else options.code_bits)
    if options.rerank_codes:
        store.compressed = fit_compressed(store.embeddings, options.rerank_codes)
    embedded = len(todo) - int(np.count_nonzero(~present))
    summary = IndexSummary(out=out, rows=len(store), embedded=embedded, reused=len(files) - len(todo),
                           removed=int(np.count_nonzero(~contained(files, previous.paths))),
                           skipped=skipped, images_per_second=round(embedded / embed_seconds, 2) if embed_seconds else 0.0)
    summary.indexes = write_index_dir(out, store, options.float_indexes, options.binary_indexes,
                                      {"folder": folder, "model": Path(run).resolve(), "checkpoint": embedder.checkpoint})
    summary.seconds = round(time.perf_counter() - started, 3)
    partial.remove()
    return summary


def _embed(embedder, folder: Path, files: FolderFiles, todo: np.ndarray, partial: PartialBatches, options: IndexSettings) -> None:
    """Embed this process's batches of the files at positions `todo` (every one, or under torchrun
    every world_size-th batch of batch_size files: each image in the same batch as in one process),
    keeping every finished batch in `partial`."""
    from hashpa.embed import embed_batches

    batches = [todo[start : start + options.batch_size] for start in range(0, len(todo), options.batch_size)]
    todo = np.concatenate(batches[rank()::world_size()]) if batches[rank()::world_size()] else todo[:0]
    samples = [Sample(folder / files.paths[i], -1) for i in todo]
    for batch in embed_batches(embedder.network, samples, embedder.device, options.batch_size, options.workers, progress="embedding",
                               decode=options.decode):
        if len(batch.positions):
            rows = todo[batch.positions]
            partial.write(Rows(files.paths[rows], files.sizes[rows], files.mtimes[rows], batch.embeddings, batch.codes))


def _check_before_embedding(options: IndexSettings, embedder, images: int) -> None:
    """What would fail after the embedding fails now: the FAISS factory strings, the fitted code length."""
    bits = embedder.bits if options.code_bits is None else options.code_bits
    if options.rerank_codes:
        check_rerank_spec(options.rerank_codes, embedder.dim)
    if options.codes == "itq":
        check_bits(bits, "--code-bits", at_most=embedder.dim, why=f"the embedding dimension {embedder.dim}")
    for spec in options.float_indexes:
        make_faiss_index("float", spec, embedder.dim, images)
    for spec in options.binary_indexes:
        make_faiss_index("binary", spec, bits, images)


def _warn_left_out(out: Path, meta: IndexMeta | None, options: IndexSettings) -> None:
    """Say so when this run leaves out codes the index held (`meta`: its index.json): every run writes what its options ask for."""
    if meta is None:
        return
    if meta.rerank_codes and not options.rerank_codes:
        log.warning("%s holds %s rerank codes and this run leaves them out (--mode rerank-codes stops working): give "
                    "--rerank-codes %s to keep them", out, meta.rerank_codes, meta.rerank_codes)
    if meta.code_source == "itq" and options.codes != "itq":
        log.warning("%s holds codes fitted to its images and this run uses the model's (--mode asymmetric stops working): give "
                    "--codes itq to keep them", out)


def _previous_rows(out: Path, meta: IndexMeta | None, embedder, replace: bool) -> StoredRows:
    """The rows of the store in `out` (`meta`: its index.json) when the same model built it; none for
    a new index, a store that cannot be read (rebuilt from the images), or, with `replace`, another
    model's store."""
    path = out / (meta.store if meta else STORE_FILE)
    nothing = StoredRows(path, np.empty(0, object), np.empty(0, np.int64), np.empty(0, np.int64), {})
    if meta is None or not path.is_file():
        return nothing
    try:
        if meta.store in meta.files:
            verify(path, meta.files[meta.store], "it is rebuilt from the images")
        store = read_store_rows(path)
    except HashpaError as error:
        log.warning("%s; every image is embedded again", error)
        return nothing
    built_by = store.attrs.get("model_fingerprint")
    if built_by != embedder.fingerprint:
        if not replace:
            raise HashpaError(f"{out} was built by another model ({built_by}, {store.attrs.get('bits')}-bit codes), not by {embedder.source} "
                              f"({embedder.fingerprint}, {embedder.bits}-bit): pass --replace to rebuild it with this model, or choose another --out")
        log.warning("--replace: %s was built by model %s; every image is embedded again with %s", out, built_by, embedder.fingerprint)
        return nothing
    return store


def _assemble(files: FolderFiles, present: np.ndarray, from_store: np.ndarray, previous: StoredRows, from_partial: np.ndarray, done: Rows,
              embedder, folder: Path, options: IndexSettings) -> Store:
    """The store of the readable files, in path order, each row taken from where it was embedded."""
    rows = np.flatnonzero(present)
    in_store = from_store[rows] >= 0
    embeddings = np.empty((len(rows), embedder.dim), np.float16 if options.float16 else np.float32)
    codes = np.empty((len(rows), embedder.bits // 8), np.uint8)
    previous.copy_into("embeddings", from_store[rows[in_store]], embeddings, np.flatnonzero(in_store))
    previous.copy_into("codes", from_store[rows[in_store]], codes, np.flatnonzero(in_store))
    embeddings[~in_store], codes[~in_store] = done.embeddings[from_partial[rows[~in_store]]], done.codes[from_partial[rows[~in_store]]]
    paths = [str(p) for p in files.paths[rows]]
    label_sets = None
    if files.label_sets is not None:  # multi-label data: every class kept, the first as the label
        class_names, label_sets = files.class_names, files.label_sets[rows]
        labels = np.where(label_sets.any(axis=1), label_sets.argmax(axis=1), -1).astype(np.int32)
    elif files.classes is not None:  # a dataset split, labelled as it labels its images
        class_names = sorted(set(files.classes[rows]))
        position = {name: i for i, name in enumerate(class_names)}
        labels = np.array([position[c] for c in files.classes[rows]], dtype=np.int32)
    else:
        labels, class_names = label_paths(paths, depth=options.class_depth)
    model_config = embedder.state["config"]["model"]
    return Store(
        paths=paths, labels=labels, class_names=class_names, embeddings=embeddings, codes=codes,
        sizes=files.sizes[rows], mtimes=files.mtimes[rows], label_sets=label_sets,
        attrs={"backbone": model_config["backbone"], "model_config": model_config, "preprocessing": embedder.preprocessing.to_dict(),
               "model_fingerprint": embedder.fingerprint, "root": str(folder.resolve()), "class_depth": options.class_depth},
    )


def fit_database_codes(embeddings: np.ndarray, bits: int, seed: int = 0) -> FittedCodes:
    """PCA-ITQ fitted to a database's float embeddings [N, dim] (at most ITQ_SAMPLE rows, drawn with
    `seed`), and the database's codes under it: uint8 [N, bits/8]."""
    n, dim = embeddings.shape
    check_bits(bits, "--code-bits", at_most=dim, why=f"the embedding dimension {dim}")
    if not enough_rows(n, bits):
        raise HashpaError(f"--codes itq fits {bits} bits to the folder's embeddings and needs more than {bits} images, "
                          f"the folder has {n}: use --codes model (the model's own codes) for small folders")
    if n < LOW_DATA_ROWS_PER_BIT * bits:
        log.warning("--codes itq: %d images for %d bits is little data to fit a quantiser; compare with --codes model", n, bits)
    started = time.perf_counter()
    sample = np.sort(np.random.default_rng(seed).choice(n, ITQ_SAMPLE, replace=False)) if n > ITQ_SAMPLE else slice(None)
    hasher = fit_itq(embeddings[sample].astype(np.float32), bits, seed=seed)
    codes = np.concatenate([hasher.encode(embeddings[start : start + 65536]) for start in range(0, n, 65536)])
    log.info("fitted %d-bit PCA-ITQ codes to %d embeddings in %.1f s", bits, min(n, ITQ_SAMPLE), time.perf_counter() - started)
    return FittedCodes(codes, hasher)
