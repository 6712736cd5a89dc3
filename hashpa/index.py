"""``hashpa index``: embed an image folder once, store both representations, build FAISS indexes.

    INDEX_DIR/store.h5               rows: paths, labels, float embeddings, packed codes (hashpa.store)
                                     and, with ``codes="itq"``, codes fitted to this folder
    INDEX_DIR/float-<spec>.faiss     float index (inner product), ``faiss.read_index``
    INDEX_DIR/binary-<spec>.faiss    binary index (Hamming), ``faiss.read_index_binary``
    INDEX_DIR/index.json             what was built, from which model and store, with which options

FAISS ids are store rows. Re-running on the same folder embeds only new or changed files and
drops deleted ones; finished batches of an interrupted run are kept in INDEX_DIR/.partial-<model>/
and not embedded again. Every file is written to a temporary name and renamed; index.json, written
last, names the store_id its indexes were built from, so a half-finished rebuild is detected.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashpa import __version__
from hashpa.codes import check_bits
from hashpa.data.folder import Sample, find_images
from hashpa.errors import HashpaError
from hashpa.fileio import atomic_path, write_json_atomic
from hashpa.quantizers import fit_itq
from hashpa.store import STORE_FILE, FittedCodes, Store, read_store, write_store

log = logging.getLogger(__name__)

INDEX_JSON = "index.json"
DEFAULT_FLOAT_INDEXES = ("Flat",)
DEFAULT_BINARY_INDEXES = ("BFlat",)
CODE_SOURCES = ("model", "itq")
ITQ_SAMPLE = 100_000  # embeddings the database-fitted quantiser is trained on, at most


def index_file_name(kind: str, spec: str) -> str:
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', spec)}.faiss"


def build_float_index(embeddings: np.ndarray, spec: str):
    """A FAISS inner-product index from a factory string (Flat, HNSW32, IVF256,Flat, ...); ids are rows.

    embeddings: float32 [N, dim], L2-normalised (so inner product is cosine).
    """
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    try:
        index = faiss.index_factory(x.shape[1], spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise HashpaError(f"--float-index {spec!r} is not a FAISS factory string FAISS accepts ({_first_line(error)})") from None
    _train(index, x, spec, "--float-index")
    index.add(x)
    return index


def build_binary_index(codes: np.ndarray, spec: str):
    """A FAISS binary (Hamming) index from a factory string (BFlat, BHNSW32, BIVF256, ...); ids are rows.

    codes: uint8 [N, bits/8] packed codes.
    """
    import faiss

    x = np.ascontiguousarray(codes, dtype=np.uint8)
    try:
        index = faiss.index_binary_factory(x.shape[1] * 8, spec)
    except RuntimeError as error:
        raise HashpaError(f"--binary-index {spec!r} is not a FAISS binary factory string ({_first_line(error)}); try BFlat, BHNSW32 or BIVF256") from None
    _train(index, x, spec, "--binary-index")
    index.add(x)
    return index


def _train(index, x: np.ndarray, spec: str, option: str) -> None:
    if index.is_trained:
        return
    nlist = getattr(index, "nlist", 0)
    if nlist and len(x) < nlist:
        raise HashpaError(f"{option} {spec} needs at least {nlist} vectors to train its {nlist} lists, the folder has {len(x)}: use fewer lists or Flat")
    index.train(x)


def write_faiss(index, path: Path) -> None:
    import faiss

    writer = faiss.write_index_binary if isinstance(index, faiss.IndexBinary) else faiss.write_index
    with atomic_path(path) as tmp:
        writer(index, str(tmp))


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[-1][:200]


@dataclass
class IndexSummary:
    out: Path
    rows: int
    embedded: int  # images embedded by this run
    reused: int  # rows taken from the previous store or an interrupted run
    removed: int  # rows of files that no longer exist (or changed)
    skipped: list[str] = field(default_factory=list)  # unreadable files
    seconds: float = 0.0
    images_per_second: float = 0.0
    indexes: dict = field(default_factory=dict)


@dataclass
class _Row:
    size: int
    mtime: int
    embedding: np.ndarray
    code: np.ndarray


def index(
    folder: str | Path,
    model: str | Path,
    out: str | Path,
    float_indexes: tuple[str, ...] = DEFAULT_FLOAT_INDEXES,
    binary_indexes: tuple[str, ...] = DEFAULT_BINARY_INDEXES,
    device: str = "auto",
    batch_size: int = 128,
    workers: int = 4,
    float16: bool = False,
    checkpoint: str = "best",
    decode: str = "pil",
    codes: str = "model",
    code_bits: int | None = None,
) -> IndexSummary:
    """Embed the images under `folder` with the trained model `model` (run dir or checkpoint) into `out`.

    decode "pil" decodes in DataLoader workers; "device" decodes JPEGs on `device` (nvJPEG on CUDA).
    codes "model": the binary indexes hold the model's hash codes; "itq": codes of the same length
    fitted to this folder's float embeddings by PCA-ITQ (unsupervised, refitted on every run; queries
    are encoded with the stored quantiser), which on classes the model never saw rank better;
    `code_bits` sets their length (default: the model's; at most the embedding dimension).
    """
    from hashpa.inference import resolve_device
    from hashpa.train.rundir import load_trained_model

    started = time.perf_counter()
    folder, out = Path(folder), Path(out)
    if not float_indexes and not binary_indexes:
        raise HashpaError("nothing to build: give at least one --float-index or --binary-index")
    if codes not in CODE_SOURCES:
        raise HashpaError(f"unknown code source {codes!r}; choose one of {', '.join(CODE_SOURCES)}")
    if code_bits is not None and codes != "itq":
        raise HashpaError("--code-bits sets the length of fitted codes: use it with --codes itq (the model's codes have the length it was trained with)")
    torch_device = resolve_device(device)
    net, state = load_trained_model(model, checkpoint, torch_device)
    fingerprint = net.fingerprint()
    files = find_images(folder)
    if not files:
        raise HashpaError(f"no images found under {folder}")
    out.mkdir(parents=True, exist_ok=True)

    known = _previous_rows(out, fingerprint)
    previous_paths = set(known)
    partial_dir = out / f".partial-{fingerprint}"
    known.update(_partial_rows(partial_dir))
    stats = {p.as_posix(): os.stat(folder / p) for p in files}
    todo = [p for p, st in stats.items() if not _unchanged(known.get(p), st)]
    for p in todo:
        known.pop(p, None)
    log.info("%d images: %d to embed, %d unchanged", len(files), len(todo), len(files) - len(todo))

    embed_seconds = _embed_missing(net, torch_device, folder, todo, stats, known, partial_dir, batch_size, workers, decode)
    skipped = [p for p in todo if p not in known]
    if skipped:
        log.warning("skipped %d unreadable images: %s", len(skipped), ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    present = [p for p in stats if p in known]
    if not present:
        raise HashpaError(f"none of the {len(files)} images under {folder} could be read")

    store = _assemble(present, known, state, folder, float16, fingerprint)
    if codes == "itq":
        store.fitted = fit_database_codes(store.embeddings, code_bits or store.bits)
    summary = IndexSummary(
        out=out, rows=len(store), embedded=len(todo) - len(skipped), reused=len(files) - len(todo),
        removed=len(previous_paths - set(stats)), skipped=skipped,
        images_per_second=round((len(todo) - len(skipped)) / embed_seconds, 2) if embed_seconds else 0.0,
    )
    run_info = {"folder": str(folder.resolve()), "model": str(Path(model).resolve()), "checkpoint": checkpoint}
    summary.indexes = write_index_dir(out, store, float_indexes, binary_indexes, run_info)
    summary.seconds = round(time.perf_counter() - started, 3)
    shutil.rmtree(partial_dir, ignore_errors=True)
    return summary


def _embed_missing(net, device, folder: Path, todo: list[str], stats, known: dict, partial_dir: Path, batch_size: int, workers: int, decode: str) -> float:
    """Embed `todo` into `known`, saving every finished batch under `partial_dir`; returns seconds spent."""
    from hashpa.inference import embed_batches

    if not todo:
        return 0.0
    started = time.perf_counter()
    partial_dir.mkdir(exist_ok=True)
    first = len(list(partial_dir.glob("batch-*.npz")))
    samples = [Sample(folder / p, -1) for p in todo]
    batches = embed_batches(net, samples, device, batch_size, workers, progress="embedding", decode=decode)
    for number, batch in enumerate(batches, start=first):
        done = [todo[i] for i in batch.positions]
        rows = [_Row(stats[p].st_size, stats[p].st_mtime_ns, e, c) for p, e, c in zip(done, batch.embeddings, batch.codes)]
        _write_partial(partial_dir / f"batch-{number:06d}.npz", done, rows)
        known.update(zip(done, rows))
    return time.perf_counter() - started


def _unchanged(row: _Row | None, stat: os.stat_result) -> bool:
    return row is not None and row.size == stat.st_size and row.mtime == stat.st_mtime_ns


def _previous_rows(out: Path, fingerprint: str) -> dict[str, _Row]:
    path = out / STORE_FILE
    if not path.is_file():
        return {}
    store = read_store(path)
    if store.attrs.get("model_fingerprint") != fingerprint:
        log.warning("%s was built with another model: every image is embedded again", path)
        return {}
    return {p: _Row(int(s), int(m), e, c) for p, s, m, e, c in zip(store.paths, store.sizes, store.mtimes, store.embeddings, store.codes)}


def _partial_rows(partial_dir: Path) -> dict[str, _Row]:
    rows: dict[str, _Row] = {}
    for path in sorted(partial_dir.glob("batch-*.npz")):
        try:
            with np.load(path, allow_pickle=False) as part:
                for p, s, m, e, c in zip(part["paths"], part["sizes"], part["mtimes"], part["embeddings"], part["codes"]):
                    rows[str(p)] = _Row(int(s), int(m), e, c)
        except (OSError, ValueError, KeyError):
            log.warning("ignoring damaged partial results %s", path)
    if rows:
        log.info("resuming: %d images already embedded by an interrupted run", len(rows))
    return rows


def _write_partial(path: Path, paths: list[str], rows: list[_Row]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                paths=np.array(paths, dtype=str),
                sizes=np.array([r.size for r in rows], dtype=np.int64),
                mtimes=np.array([r.mtime for r in rows], dtype=np.int64),
                embeddings=np.array([r.embedding for r in rows], dtype=np.float32).reshape(len(rows), -1),
                codes=np.array([r.code for r in rows], dtype=np.uint8).reshape(len(rows), -1),
            )


def _assemble(paths: list[str], known: dict[str, _Row], state: dict, folder: Path, float16: bool, fingerprint: str) -> Store:
    class_names = sorted({p.split("/")[0] for p in paths if "/" in p})
    class_index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([class_index[p.split("/")[0]] if "/" in p else -1 for p in paths], dtype=np.int32)
    rows = [known[p] for p in paths]
    model_config = state["config"]["model"]
    return Store(
        paths=paths,
        labels=labels,
        class_names=class_names,
        embeddings=np.stack([r.embedding for r in rows]).astype(np.float16 if float16 else np.float32),
        codes=np.stack([r.code for r in rows]).astype(np.uint8),
        sizes=np.array([r.size for r in rows], dtype=np.int64),
        mtimes=np.array([r.mtime for r in rows], dtype=np.int64),
        attrs={
            "backbone": model_config["backbone"],
            "model_config": model_config,
            "preprocessing": state["preprocessing"],
            "model_fingerprint": fingerprint,
            "root": str(folder.resolve()),
        },
    )


def fit_database_codes(embeddings: np.ndarray, bits: int, seed: int = 0) -> FittedCodes:
    """PCA-ITQ fitted to a database's float embeddings [N, dim] (at most ITQ_SAMPLE rows, drawn with
    `seed`), and the database's codes under it: uint8 [N, bits/8]."""
    n, dim = embeddings.shape
    check_bits(bits, 16, dim, f"--code-bits (at most the embedding dimension {dim})")
    if n <= bits:
        raise HashpaError(f"--codes itq fits {bits} bits to the folder's embeddings and needs more than {bits} images, "
                          f"the folder has {n}: use --codes model (the model's own codes) for small folders")
    if n < 10 * bits:
        log.warning("--codes itq: %d images for %d bits is little data to fit a quantiser; compare with --codes model", n, bits)
    started = time.perf_counter()
    sample = np.sort(np.random.default_rng(seed).choice(n, ITQ_SAMPLE, replace=False)) if n > ITQ_SAMPLE else slice(None)
    hasher = fit_itq(embeddings[sample].astype(np.float32), bits, seed=seed)
    codes = np.concatenate([hasher.encode(embeddings[start : start + 65536]) for start in range(0, n, 65536)])
    log.info("fitted %d-bit PCA-ITQ codes to %d embeddings in %.1f s", bits, min(n, ITQ_SAMPLE), time.perf_counter() - started)
    return FittedCodes(codes, hasher)


def write_index_dir(out: str | Path, store: Store, float_specs=DEFAULT_FLOAT_INDEXES, binary_specs=DEFAULT_BINARY_INDEXES, info: dict | None = None) -> dict:
    """Write `store`, its FAISS indexes and index.json (last) into `out`; returns the indexes built.

    `store.attrs["model_fingerprint"]` names the model; `info` (folder, model, checkpoint) goes into index.json.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store_id = write_store(out / STORE_FILE, store)
    built = _build_indexes(store, out, float_specs, binary_specs)
    write_json_atomic(out / INDEX_JSON, {
        "hashpa_version": __version__,
        **(info or {}),
        "model_fingerprint": store.attrs.get("model_fingerprint"),
        "store": STORE_FILE,
        "store_id": store_id,
        "rows": len(store),
        "bits": store.bits,
        "code_source": store.code_source,
        "dim": int(store.embeddings.shape[1]),
        "embeddings_dtype": str(store.embeddings.dtype),
        "labels": store.has_labels,
        "indexes": built,
    })
    return built


def _build_indexes(store: Store, out: Path, float_specs, binary_specs) -> dict:
    built = {}
    embeddings = store.embeddings.astype(np.float32)
    for kind, specs, build, data in (("float", float_specs, build_float_index, embeddings), ("binary", binary_specs, build_binary_index, store.index_codes)):
        for spec in dict.fromkeys(specs):
            started = time.perf_counter()
            faiss_index = build(data, spec)
            name = index_file_name(kind, spec)
            write_faiss(faiss_index, out / name)
            built[f"{kind}:{spec}"] = {"kind": kind, "spec": spec, "file": name, "ntotal": int(faiss_index.ntotal),
                                       "bytes": (out / name).stat().st_size, "build_seconds": round(time.perf_counter() - started, 3)}
    for stale in set(p.name for p in out.glob("*.faiss")) - {b["file"] for b in built.values()}:
        (out / stale).unlink()
    return built
