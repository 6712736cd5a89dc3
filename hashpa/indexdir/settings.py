"""What ``hashpa index`` builds and how it embeds: its settings as data (no heavy imports: the
command line reads them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hashpa.codes import check_bits
from hashpa.compressed import check_spec_text
from hashpa.data.labels import LEAF, check_depth
from hashpa.errors import HashpaError
from hashpa.indexdir.layout import CODE_SOURCES, DEFAULT_INDEXES
from hashpa.settings import check_types

DECODERS = ("pil", "device")
INDEX_SPLITS = ("train", "test", "gallery")  # the splits of a run's own data hashpa index can index


@dataclass
class IndexSettings:
    """What ``build_index`` builds and how it embeds."""

    float_indexes: tuple[str, ...] = DEFAULT_INDEXES["float"]  # FAISS factory strings
    binary_indexes: tuple[str, ...] = DEFAULT_INDEXES["binary"]
    checkpoint: str = "best"  # of the model's run directory
    float16: bool = False  # store the float embeddings as float16
    codes: str = "model"  # a key of CODE_SOURCES: the binary indexes hold the model's codes, or PCA-ITQ codes fitted to the folder
    code_bits: int | None = None  # length of fitted codes (default: the model's)
    rerank_codes: str | None = None  # a FAISS quantiser (hashpa.compressed) compressing the embeddings for the rerank-codes mode
    device: str = "auto"
    batch_size: int = 128
    workers: int = 4
    decode: str = "pil"  # pil: decode in DataLoader workers; device: decode JPEGs on the device (nvJPEG on CUDA)
    replace: bool = False  # rebuild an index that another model built (its embeddings are lost)
    class_depth: int = LEAF  # the class of an image from its path (hashpa.data.labels)

    @classmethod
    def of(cls, settings: dict) -> "IndexSettings":
        """Checked settings from keyword arguments (``build_index(..., **settings)``)."""
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise HashpaError(f"unknown index settings: {', '.join(unknown)}; known: {', '.join(f.name for f in dataclasses.fields(cls))}")
        check_types(cls, settings, "index settings")
        return cls(**settings).check()

    def check(self) -> "IndexSettings":
        self.float_indexes, self.binary_indexes = _specs(self.float_indexes, "float_indexes"), _specs(self.binary_indexes, "binary_indexes")
        if not self.float_indexes and not self.binary_indexes:
            raise HashpaError("nothing to build: give at least one --float-index or --binary-index")
        if self.codes not in CODE_SOURCES:
            raise HashpaError(f"unknown code source {self.codes!r}; choose one of {', '.join(CODE_SOURCES)}")
        if self.code_bits is not None and self.codes != "itq":
            raise HashpaError("--code-bits sets the length of fitted codes: use it with --codes itq (the model's codes have the length it was trained with)")
        if self.rerank_codes is not None:
            check_spec_text(self.rerank_codes)
        if self.decode not in DECODERS:
            raise HashpaError(f"--decode must be one of {', '.join(DECODERS)}, got {self.decode!r}")
        if self.code_bits is not None:
            check_bits(self.code_bits, "--code-bits")
        if self.batch_size < 1 or self.workers < 0:
            raise HashpaError(f"--batch-size must be >= 1 and --workers >= 0, got {self.batch_size} and {self.workers}")
        check_depth(self.class_depth)
        if self.checkpoint not in ("best", "last"):
            raise HashpaError(f"--checkpoint must be best or last, got {self.checkpoint!r}")
        return self


def _specs(given, name: str) -> tuple[str, ...]:
    """FAISS factory strings, each once: one string, or a sequence of them."""
    specs = (given,) if isinstance(given, str) else given
    if not isinstance(specs, (list, tuple)) or not all(isinstance(spec, str) and spec for spec in specs):
        raise HashpaError(f"{name} must be FAISS factory strings (\"Flat\", [\"BFlat\", \"BHNSW32\"] ...), got {given!r}")
    return tuple(dict.fromkeys(specs))
