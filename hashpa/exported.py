"""A model exported by ``hashpa export``, run by onnxruntime: the query path without torch.

``ExportedModel`` embeds images as ``hashpa.embed.Model`` does (the same inputs, the same
preprocessing, the same outputs: L2-normalised float32 embeddings and packed codes), from the ONNX
graph and its card alone. Its card is checked before anything is run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from hashpa.data.decode import read_rgb
from hashpa.data.preprocess import PIL_INTERPOLATIONS, Preprocessing, test_pixels, test_resize
from hashpa.data.query_images import query_pictures
from hashpa.errors import HashpaError
from hashpa.quantizers import pack_signs
from hashpa.settings import whole_number

log = logging.getLogger(__name__)

EXPORT_NAME = "model.onnx"  # the export of a run, in its directory
CARD_FORMAT = 1


def card_path(model_path: Path) -> Path:
    """The card beside an exported graph: model.onnx -> model.onnx.json."""
    return model_path.with_name(model_path.name + ".json")


def run_export(run: str | Path) -> Path:
    """Where a run's export lives: RUN/model.onnx."""
    return Path(run) / EXPORT_NAME


def read_card(model_path: Path) -> dict:
    """The checked card of the exported graph `model_path`, or a HashpaError saying what is wrong."""
    path = card_path(model_path)
    redo = f"export the run again: hashpa export RUN --overwrite (out: {model_path})"
    if not model_path.is_file() or not path.is_file():
        raise HashpaError(f"no ONNX export at {model_path} (or no card {path.name} beside it): {redo}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise HashpaError(f"{path} is damaged ({error}): {redo}") from None
    problem = card_problem(card)
    if problem:
        raise HashpaError(f"{path} is not a hashpa export card ({problem}): {redo}")
    return card


def card_problem(card) -> str | None:
    """What is wrong with a card as read from disk, or None (what ``export_card`` writes)."""
    if not isinstance(card, dict):
        return f"it holds a {type(card).__name__}, not an object"
    if card.get("format") != CARD_FORMAT:
        return f"format {card.get('format')!r}, this hashpa reads format {CARD_FORMAT}"
    p, codes, outputs = card.get("preprocessing"), card.get("codes"), card.get("outputs")
    if not all(isinstance(part, dict) for part in (p, codes, outputs)):
        return "preprocessing, codes and outputs must be objects"
    if not isinstance(card.get("fingerprint"), str) or not card["fingerprint"]:
        return "no model fingerprint"
    sizes = [p.get("resize_short"), p.get("center_crop"), codes.get("bits")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        return "resize_short, center_crop and bits must be positive whole numbers"
    if codes["bits"] % 8 or p["center_crop"] > p["resize_short"]:
        return f"bits {codes['bits']} is no multiple of 8, or the crop {p['center_crop']} is larger than the resize {p['resize_short']}"
    if p.get("interpolation") not in PIL_INTERPOLATIONS or p.get("color") not in ("RGB", "BGR"):
        return f"interpolation {p.get('interpolation')!r} or color {p.get('color')!r} unknown"
    numbers = [p.get("input_range"), *(p.get("mean") or []), *(p.get("std") or [])]
    if not (len(p.get("mean") or []) == len(p.get("std") or []) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                                              and np.isfinite(v) for v in numbers)
            and min(p["std"]) > 0 and p["input_range"] > 0):
        return "input_range, mean and std must be finite numbers (3 of each, std and range positive)"
    dim = (outputs.get("embeddings") or {}).get("shape", [None, None])[-1]
    if not isinstance(dim, int) or dim <= 0 or (outputs.get("hash_logits") or {}).get("shape", [None, None])[-1] != codes["bits"]:
        return "the outputs' shapes are not [N, dim] embeddings and [N, bits] hash logits"
    return None


def card_preprocessing(card: dict) -> Preprocessing:
    """The Preprocessing a checked card describes (its resize recovered exactly, or a HashpaError)."""
    p = card["preprocessing"]
    preprocessing = Preprocessing(input_size=p["center_crop"], mean=tuple(p["mean"]), std=tuple(p["std"]), input_range=float(p["input_range"]),
                                  bgr=p["color"] == "BGR", interpolation=p["interpolation"], crop_pct=p["center_crop"] / p["resize_short"])
    if test_resize(preprocessing) != p["resize_short"]:
        raise HashpaError(f"the export card's resize {p['resize_short']} and crop {p['center_crop']} cannot be reproduced: export the run again")
    return preprocessing


class ExportedModel:
    """An exported model ready to embed images: ``emb, codes = model.embed(images)`` (see
    ``hashpa.embed.Model.embed``: the same inputs and outputs)."""

    def __init__(self, model_path: str | Path, threads: int = 0):
        import onnxruntime

        self.model_path = Path(model_path)
        self.card = read_card(self.model_path)
        self.preprocessing = card_preprocessing(self.card)
        self.bits, self.fingerprint = self.card["codes"]["bits"], self.card["fingerprint"]
        self.dim = self.card["outputs"]["embeddings"]["shape"][-1]
        self.source, self.checkpoint = str(self.model_path), "export"
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self._runtime = onnxruntime.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own failures: a damaged or foreign graph
            raise HashpaError(f"onnxruntime cannot load {self.model_path} ({str(error).splitlines()[0][:200]}): "
                              "export the run again: hashpa export RUN --overwrite") from None
        names = [o.name for o in self._runtime.get_outputs()]
        if names != ["embeddings", "hash_logits"] or [i.name for i in self._runtime.get_inputs()] != ["images"]:
            raise HashpaError(f"{self.model_path} is not a hashpa export (inputs/outputs {names}): export the run again")

    def embed(self, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """(float32 embeddings [N, dim], L2-normalised; packed uint8 codes [N, bits/8]) of `images`."""
        batch_size = whole_number(batch_size, "batch_size")
        return self._embed_pictures(query_pictures(images), batch_size)

    def embed_files(self, paths: Sequence[Path], batch_size: int = 64, workers: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(embeddings [n, dim], packed codes [n, bits/8], int64 positions [n] in `paths` of the n
        readable files); unreadable files are skipped with a warning (by ``read_rgb``). `workers`
        is accepted for the torch model's signature; onnxruntime uses its own threads."""
        batch_size = whole_number(batch_size, "batch_size")
        embeddings, codes, positions = [np.zeros((0, self.dim), np.float32)], [np.zeros((0, self.bits // 8), np.uint8)], []
        for start in range(0, len(paths), batch_size):  # a batch of pictures in memory at a time
            read = [(position, read_rgb(Path(paths[position]))) for position in range(start, min(start + batch_size, len(paths)))]
            read = [(position, picture) for position, picture in read if picture is not None]
            if read:
                e, c = self._embed_pictures([picture for _, picture in read], batch_size)
                embeddings.append(e)
                codes.append(c)
                positions += [position for position, _ in read]
        return np.concatenate(embeddings), np.concatenate(codes), np.asarray(positions, np.int64)

    def _embed_pictures(self, pictures: list, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        embeddings, logits = [], []
        for start in range(0, len(pictures), batch_size):
            batch = np.stack([test_pixels(p, self.preprocessing) for p in pictures[start : start + batch_size]])
            e, h = self._runtime.run(None, {"images": batch})
            embeddings.append(e)
            logits.append(h)
        return np.concatenate(embeddings).astype(np.float32, copy=False), pack_signs(np.concatenate(logits))
