"""An index directory's layout, written down once: file names, the keys of its FAISS indexes, where
the binary codes come from, and the schema of index.json.

    INDEX_DIR/store.h5               rows: paths, labels, float embeddings, packed codes (``store``)
    INDEX_DIR/float-<spec>.faiss     float index (inner product), ``faiss.read_index``
    INDEX_DIR/binary-<spec>.faiss    binary index (Hamming), ``faiss.read_index_binary``
    INDEX_DIR/index.json             what was built, from which model and store, with which options

FAISS ids are store rows. index.json is written last and names the store_id its indexes were built
from, so a half-finished rebuild is detected instead of searched.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hashpa.errors import HashpaError
from hashpa.paths import found
from hashpa.settings import check_types

STORE_FILE = "store.h5"
INDEX_JSON = "index.json"
KINDS = ("float", "binary")
DEFAULT_INDEXES = {"float": ("Flat",), "binary": ("BFlat",)}
EXACT_INDEXES = {"float": "Flat", "binary": "BFlat"}  # the exhaustive index of each kind (exact top k under the ranking rule)
# where the binary indexes' codes come from, and how hashpa info and compare describe it
CODE_SOURCES = {"model": "the model's hash head", "itq": "PCA-ITQ fitted to this database"}


def index_key(kind: str, spec: str) -> str:
    """The name of a built FAISS index in index.json: "<kind>:<factory string>"."""
    return f"{kind}:{spec}"


def index_file_name(kind: str, spec: str) -> str:
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', spec)}.faiss"


@dataclass
class IndexMeta:
    """index.json."""

    model: str  # the run directory (or checkpoint file) of the model that embedded the images, absolute
    model_from_index: str  # the same, relative to the index directory
    checkpoint: str  # "best" or "last"
    model_fingerprint: str
    folder: str  # the indexed folder, absolute
    folder_from_index: str  # the same, relative to the index directory (found again when both move together)
    store_id: str
    rows: int
    bits: int
    code_source: str  # a key of CODE_SOURCES
    dim: int
    embeddings_dtype: str
    labels: bool
    class_depth: int = 0  # how labels come from paths (hashpa.data.labels.class_of)
    rerank_codes: str = ""  # the quantiser of the store's compressed embeddings (hashpa index --rerank-codes), or ""
    indexes: dict = field(default_factory=dict)  # index_key -> {"kind", "spec", "file", "ntotal", "bytes", "build_seconds"}
    files: dict = field(default_factory=dict)  # file name -> {"bytes", "crc32"}: every file the index wrote, checked on use
    store: str = STORE_FILE
    hashpa_version: str = ""

    def specs(self, kind: str) -> list[str]:
        return [entry["spec"] for entry in self.indexes.values() if entry["kind"] == kind]

    def entry(self, kind: str, spec: str) -> dict | None:
        return self.indexes.get(index_key(kind, spec))


def write_meta(index_dir: Path, meta: IndexMeta) -> None:
    from hashpa.fileio import write_json_atomic

    write_json_atomic(Path(index_dir) / INDEX_JSON, asdict(meta))


def read_meta(index_dir: str | Path) -> IndexMeta:
    """The index.json of `index_dir`, or a HashpaError saying what is wrong with it."""
    path = Path(index_dir) / INDEX_JSON
    if not path.is_file():
        raise HashpaError(f"{index_dir} is not a hashpa index (no {INDEX_JSON}); build it with hashpa index FOLDER --run-dir RUN --out {index_dir}")
    damaged = f"{path} is damaged"
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise TypeError(f"it holds a {type(values).__name__}, not an object")
        values.setdefault("folder_from_index", "")  # written before index directories recorded these
        values.setdefault("model_from_index", "")
        values.setdefault("files", {})
        values.setdefault("class_depth", 1)  # the rule before class depths: the top-level folder
        check_types(IndexMeta, values, damaged)
        meta = IndexMeta(**values)
        for key, entry in meta.indexes.items():
            well_formed = isinstance(entry, dict) and not {"kind", "spec", "file"} - set(entry) and entry["kind"] in KINDS
            if not well_formed or key != index_key(entry["kind"], entry["spec"]):
                raise TypeError(f"index entry {key!r} is not a hashpa index entry")
        problem = meta_problem(meta)
        if problem:
            raise TypeError(problem)
        return meta
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError) as error:
        raise HashpaError(f"{damaged} ({error}); rebuild the index with hashpa index") from None
    except HashpaError as error:
        raise HashpaError(f"{error}; rebuild the index with hashpa index") from None


GENERATION_NAME = re.compile(r"gen-[0-9a-f]{16}")  # the names hashpa.indexdir.generations.new_generation gives
EMBEDDING_DTYPES = ("float32", "float16")
MAX_BITS = 4096


def meta_problem(meta: IndexMeta) -> str | None:
    """What in index.json is not as hashpa writes it, or None: every file it names a member name of
    the current generation (or of the top level, the layout before generations), never index.json
    itself; sizes, counts and kinds in their ranges."""
    from hashpa.owned import member_problem

    generation, _, store_name = meta.store.rpartition("/")
    if store_name != STORE_FILE or (generation and not GENERATION_NAME.fullmatch(generation)):
        return f"store {meta.store!r} is not {STORE_FILE} of a generation folder"
    named = [(name, "a file") for name in meta.files] + [(entry["file"], f"index {key}") for key, entry in meta.indexes.items()]
    for name, what in named:
        problem = member_problem(name)
        if problem:
            return f"{what}: {problem}"
        if name.rpartition("/")[0] != generation or name.rpartition("/")[2] in (INDEX_JSON, ".hashpa.json", ".hashpa.lock"):
            return f"{what}: {name!r} is not a file of the index's generation {generation or '(top level)'}"
    for name, recorded in meta.files.items():
        if not (isinstance(recorded, dict) and _count(recorded.get("bytes")) and isinstance(recorded.get("crc32"), str)):
            return f"the record of {name!r} is not {{bytes, crc32}}"
    for key, entry in meta.indexes.items():
        if not isinstance(entry["spec"], str) or ("ntotal" in entry and not _count(entry["ntotal"])):
            return f"index {key}: its spec or size is not as hashpa writes it"
    checks = [
        (_count(meta.rows), f"rows {meta.rows!r} is not a count"),
        (isinstance(meta.bits, int) and 8 <= meta.bits <= MAX_BITS and meta.bits % 8 == 0, f"bits {meta.bits!r} is not a code length in bytes"),
        (isinstance(meta.dim, int) and 1 <= meta.dim <= 1 << 16, f"dim {meta.dim!r} is out of range"),
        (meta.code_source in CODE_SOURCES, f"code_source {meta.code_source!r} is not one of {', '.join(CODE_SOURCES)}"),
        (meta.checkpoint in ("best", "last"), f"checkpoint {meta.checkpoint!r} is not best or last"),
        (meta.embeddings_dtype in EMBEDDING_DTYPES, f"embeddings_dtype {meta.embeddings_dtype!r} is not one of {', '.join(EMBEDDING_DTYPES)}"),
        (_count(meta.class_depth), f"class_depth {meta.class_depth!r} is not a count"),
    ]
    return next((message for ok, message in checks if not ok), None)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 62


def image_root(index_dir: str | Path, meta: IndexMeta) -> Path:
    """Where the indexed images are now: beside the index as they were (both moved together), or at
    the absolute path recorded when it was built."""
    root = found(index_dir, meta.folder_from_index, meta.folder)
    if root is None or not root.is_dir():
        raise HashpaError(f"the images of {index_dir} are no longer at {meta.folder}: move them back, or rebuild the index from their new folder")
    return root


def model_source(index_dir: str | Path, meta: IndexMeta) -> Path:
    """Where the model that built the index is now: beside the index as it was, or at its recorded path."""
    source = found(index_dir, meta.model_from_index, meta.model)
    if source is None:
        raise HashpaError(f"the model that built {index_dir} is no longer at {meta.model}: move it back, or give the run directory with --run-dir")
    return source


def rebuild_hint(index_dir: str | Path) -> str:
    """How to repair a damaged index directory: the same hashpa index command rewrites every file."""
    return f"run the hashpa index command that built {index_dir} again to rebuild it (its embeddings are reused when store.h5 is intact)"
