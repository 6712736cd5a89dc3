"""``hashpa index``: embed an image folder once, store both representations, build FAISS indexes.

Re-running on the same folder embeds only new or changed files and drops deleted ones; finished
batches of an interrupted run are kept (``partial``) and not embedded again. Every file is written
to a temporary name and renamed; index.json, written last, names the store its indexes were built
from (``layout``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hashpa import __version__
from hashpa.codes import check_bits
from hashpa.data.folder import Sample
from hashpa.data.labels import label_paths
from hashpa.distributed import barrier, is_main_process, process_group, rank, rank_device, world_size
from hashpa.errors import HashpaError
from hashpa.fileio import check_free_space, checksum, folder_lock, remove_temporaries, verify
from hashpa.indexdir.changes import FolderFiles, contained, scan_folder, scan_samples, unchanged_rows
from hashpa.indexdir.faiss_files import build_faiss_index, make_faiss_index, write_faiss
from hashpa.indexdir.generations import new_generation, retire_unused
from hashpa.indexdir.layout import (
    DEFAULT_INDEXES,
    STORE_FILE,
    IndexMeta,
    index_file_name,
    index_key,
    read_meta,
    write_meta,
)
from hashpa.indexdir.partial import PartialBatches, Rows
from hashpa.indexdir.settings import INDEX_SPLITS, IndexSettings
from hashpa.indexdir.store import FittedCodes, Store, StoredRows, read_store_rows, write_store
from hashpa.outputs import check_folder, claim_folder
from hashpa.paths import recorded
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


def build_index(folder: str | Path | None, model: str | Path, out: str | Path, split: str | None = None, **settings) -> IndexSummary:
    """Embed the images under `folder` with the trained model `model` (run directory or checkpoint
    file) into the index directory `out`, creating or updating it; `settings` are IndexSettings' fields.

    `split` ("train", "test" or, for In-Shop, "gallery") indexes that split of the run's own data
    instead of a folder (`folder` None), labelled as the run labels it. codes "itq" fills the
    binary indexes with codes of the same length (or `code_bits`) fitted to the indexed float
    embeddings by PCA-ITQ (unsupervised, refitted on every run; queries are encoded with the
    stored quantiser), which rank better on classes the model never saw.
    """
    started = time.perf_counter()
    options = IndexSettings.of(settings)
    for name, value in (("folder", folder), ("model", model), ("out", out)):
        if not isinstance(value, (str, os.PathLike)) and (value is not None or name != "folder"):
            raise HashpaError(f"{name} must be a path (a str or a pathlib.Path), got {value!r}")
    out = Path(out)
    with process_group(options.device):
        main = is_main_process()
        if main:
            check_folder(out, "index")
        folder, files = _files_to_index(folder, model, split, options.class_depth)
        if main:
            claim_folder(out, "index")
        with folder_lock(out, "hashpa index") if main else contextlib.nullcontext():  # rank 0 holds it for all
            if main:
                remove_temporaries(out)
            barrier()
            return _build(folder, files, model, out, options, started)


def _files_to_index(folder: str | Path | None, model: str | Path, split: str | None, class_depth: int) -> tuple[Path, FolderFiles]:
    """(the folder the paths are relative to, its files): a folder's images, or a run's split."""
    if split is None:
        if folder is None:
            raise HashpaError("give an image folder to index, or --split test (or train) to index the model run's own split")
        return Path(folder), scan_folder(Path(folder))
    from hashpa.data.splits import build_split
    from hashpa.training.rundir import RunDir

    if split not in INDEX_SPLITS:
        raise HashpaError(f"--split must be one of {', '.join(INDEX_SPLITS)}, got {split!r}")
    if folder is not None:
        raise HashpaError("--split indexes the model run's own data: give it without an image folder")
    if not Path(model).is_dir():
        raise HashpaError(f"--split needs --model to be a run directory (it reads the run's data settings), got {model}")
    config = RunDir(model).read_config()
    chosen = build_split(**config.data_settings()).check()
    samples = {"train": chosen.train, "test": chosen.test, "gallery": chosen.gallery}[split]
    if samples is None:
        raise HashpaError(f"{chosen.description} has no gallery split (only In-Shop does): use --split test")
    root = Path(_split_root(config, split))
    classes = chosen.train_classes if split == "train" else chosen.test_classes
    log.info("indexing the %s split of %s: %d images of %d classes under %s", split, model, len(samples), len(classes), root)
    return root, scan_samples(root, samples, classes)


def _split_root(config, split: str) -> str:
    """The folder a run's split lives under: the one its paths are stored relative to."""
    from hashpa.data.builtin import builtin_dataset

    if config.dataset == "builtin":
        return builtin_dataset()
    if config.dataset == "folder":
        if config.train_dir or config.test_dir:
            return config.train_dir if split == "train" else config.test_dir
        return config.data
    return config.root


def _build(folder: Path, files: FolderFiles, model: str | Path, out: Path, options: IndexSettings, started: float) -> IndexSummary | None:
    """Under torchrun every rank embeds its share of the batches; rank 0 then assembles and writes
    the index (the other ranks return None)."""
    from hashpa.devices import resolve_device
    from hashpa.embed import load

    if not len(files):
        raise HashpaError(f"no images found under {folder}" + (f" ({len(files.unusable)} unusable image files)" if files.unusable else ""))
    embedder = load(model, options.checkpoint, rank_device(resolve_device(options.device)))
    _check_before_embedding(options, embedder, len(files))
    previous = _previous_rows(out, embedder, options.replace)
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
    embedded = len(todo) - int(np.count_nonzero(~present))
    summary = IndexSummary(out=out, rows=len(store), embedded=embedded, reused=len(files) - len(todo),
                           removed=int(np.count_nonzero(~contained(files, previous.paths))),
                           skipped=skipped, images_per_second=round(embedded / embed_seconds, 2) if embed_seconds else 0.0)
    summary.indexes = write_index_dir(out, store, options.float_indexes, options.binary_indexes,
                                      {"folder": folder, "model": Path(model).resolve(), "checkpoint": embedder.checkpoint})
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
    if options.codes == "itq":
        check_bits(bits, "--code-bits", at_most=embedder.dim, why=f"the embedding dimension {embedder.dim}")
    for spec in options.float_indexes:
        make_faiss_index("float", spec, embedder.dim, images)
    for spec in options.binary_indexes:
        make_faiss_index("binary", spec, bits, images)


def _previous_rows(out: Path, embedder, replace: bool) -> StoredRows:
    """The rows of the store in `out` when the same model built it; none for a new index, a store
    that cannot be read (rebuilt from the images), or, with `replace`, another model's store."""
    meta = _current_meta(out)
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
    if files.classes is not None:  # a dataset split, labelled as it labels its images
        class_names = sorted(set(files.classes[rows]))
        position = {name: i for i, name in enumerate(class_names)}
        labels = np.array([position[c] for c in files.classes[rows]], dtype=np.int32)
    else:
        labels, class_names = label_paths(paths, depth=options.class_depth)
    model_config = embedder.state["config"]["model"]
    return Store(
        paths=paths, labels=labels, class_names=class_names, embeddings=embeddings, codes=codes,
        sizes=files.sizes[rows], mtimes=files.mtimes[rows],
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


def write_index_dir(out: str | Path, store: Store, float_specs=DEFAULT_INDEXES["float"], binary_specs=DEFAULT_INDEXES["binary"],
                    source: dict | None = None) -> dict:
    """Write `store` and its FAISS indexes as a new generation of the index directory `out`, publish
    it by replacing index.json, then remove older generations no reader holds (``generations``);
    returns the indexes built.

    Every FAISS index is built, and the free space checked, before anything is written, so a bad
    factory string or a full disk leaves an existing index as it was; searches running meanwhile
    answer from the old generation. `store.attrs["model_fingerprint"]` names the model; `source`
    gives the indexed "folder", the "model" and its "checkpoint" for index.json (defaults: the
    store's root, unknown). No file hashpa did not write is deleted.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = {"float": store.embeddings, "binary": store.index_codes}
    made = {(kind, spec): build_faiss_index(kind, data[kind], spec) for kind, specs in (("float", float_specs), ("binary", binary_specs))
            for spec in dict.fromkeys(specs)}
    build_seconds = round((time.perf_counter() - started) / max(len(made), 1), 3)
    check_free_space(out, _bytes_needed(store, made), "the index")
    previous = _current_meta(out)
    generation = new_generation()
    store_file = f"{generation}/{STORE_FILE}"
    store_id = write_store(out / store_file, store)
    files = {store_file: checksum(out / store_file)}
    built = {}
    for (kind, spec), faiss_index in made.items():
        name = f"{generation}/{index_file_name(kind, spec)}"
        write_faiss(faiss_index, out / name)
        files[name] = checksum(out / name)
        built[index_key(kind, spec)] = {"kind": kind, "spec": spec, "file": name, "ntotal": int(faiss_index.ntotal),
                                        "bytes": files[name]["bytes"], "build_seconds": build_seconds}
    source = source or {}
    folder, folder_from_index = recorded(source.get("folder") or store.attrs.get("root") or out, out)
    model, model_from_index = recorded(source["model"], out) if source.get("model") else ("", "")
    meta = IndexMeta(
        model=model, model_from_index=model_from_index, checkpoint=source.get("checkpoint", "best"),
        model_fingerprint=store.attrs.get("model_fingerprint", ""),
        folder=folder, folder_from_index=folder_from_index, store_id=store_id, rows=len(store), bits=store.bits,
        code_source=store.code_source, dim=int(store.embeddings.shape[1]), embeddings_dtype=str(store.embeddings.dtype),
        labels=store.has_labels, class_depth=int(store.attrs.get("class_depth", 0)), indexes=built, files=files, store=store_file,
        hashpa_version=__version__,
    )
    write_meta(out, meta)
    retire_unused(out, meta, previous)
    return built


def _bytes_needed(store: Store, made: dict) -> int:
    """About what writing `store` and the FAISS indexes `made` takes on disk."""
    vectors = store.embeddings.nbytes + store.codes.nbytes + (store.fitted.codes.nbytes if store.fitted else 0)
    faiss_bytes = sum(index.ntotal * (index.code_size if hasattr(index, "code_size") else 0) for index in made.values())
    return int(vectors + faiss_bytes + 64 * len(store) + 2**20)


def _current_meta(out: Path) -> IndexMeta | None:
    """The index directory's current index.json, if it has a readable one."""
    try:
        return read_meta(out)
    except HashpaError:
        return None
