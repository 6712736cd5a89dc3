"""``hashpa export``: a trained model as an ONNX graph, with everything a client needs beside it to
reproduce an embedding without hashpa: the preprocessing, the outputs, the bit rule and bit order.

    RUN_DIR/model.onnx        input "images" float32 [N, 3, S, S] (preprocessed); outputs "embeddings"
                              float32 [N, dim] (L2-normalised) and "hash_logits" float32 [N, bits]
    RUN_DIR/model.onnx.json   the preprocessing and the code rule (``export_card``)

The preprocessing is the test transform's (``hashpa.data.preprocess.TestTransform``): RGB, the
short side resized to ``resize_short`` with ``interpolation``, a centre crop of ``input_size``,
pixels scaled to [0, input_range], minus ``mean``, divided by ``std`` (channels first). A code bit
is 1 where its hash logit is > 0, packed 8 to a byte, most significant bit first (numpy's
``packbits``). The export is checked against the network it came from (onnxruntime against torch)
before it is written.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashpa import __version__
from hashpa.data.preprocess import same_test_input
from hashpa.errors import HashpaError
from hashpa.exported import CARD_FORMAT, card_path, card_preprocessing, card_problem, run_export
from hashpa.fileio import write_json
from hashpa.outputs import check_replaceable, write_output

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4  # onnxruntime against torch on the same inputs, embeddings and hash logits


@dataclass
class ExportSummary:
    model: Path
    card: Path
    bytes: int
    embedding_difference: float  # the largest, onnxruntime against torch, on the check batch
    logit_difference: float


def export(run: str | Path, out: str | Path | None = None, checkpoint: str = "best", overwrite: bool = False) -> ExportSummary:
    """Export the model of the run directory `run` (its `checkpoint`) as ONNX to `out` (default
    RUN/model.onnx) with its card beside it (`out`.json). Raises HashpaError when the graph cannot be
    exported or does not reproduce the torch model within PARITY_TOLERANCE; files are written under
    the write rule (``hashpa.outputs``), checked before anything runs."""
    from hashpa.embed import load

    run = Path(run)
    model_path = Path(out) if out is not None else run_export(run)
    card = card_path(model_path)
    for path in (model_path, card):
        check_replaceable(path, overwrite)
    onnx, onnxruntime = _onnx_modules()
    model = load(run, checkpoint, "cpu")
    size = model.preprocessing.input_size
    check = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    graph = _graph(model.network, size, model.network.config.backbone)
    onnx.checker.check_model(onnx.load_from_string(graph))
    differences = _parity(model.network, graph, check, onnxruntime)
    write_output(model_path, lambda tmp: tmp.write_bytes(graph), overwrite)
    values = export_card(model, model_path.name)
    if card_problem(values) or not same_test_input(card_preprocessing(values), model.preprocessing):
        problem = card_problem(values) or "its preprocessing differs"
        raise HashpaError(f"the card of {run}'s export would not describe its model ({problem}): nothing was written")
    write_output(card, lambda tmp: write_json(tmp, values), overwrite)
    log.debug("exported %s (%s) to %s: %d bytes, onnxruntime within %.1e of torch", run, model.checkpoint, model_path, len(graph), max(differences))
    return ExportSummary(model_path, card, len(graph), *differences)


def export_card(model, file_name: str) -> dict:
    """What a client needs beside the graph (see the module)."""
    from hashpa.data.preprocess import test_resize

    p = model.preprocessing
    return {
        "format": CARD_FORMAT, "hashpa_version": __version__, "model": file_name, "fingerprint": model.fingerprint,
        "inputs": {"images": {"dtype": "float32", "shape": ["N", 3, p.input_size, p.input_size], "layout": "NCHW"}},
        "outputs": {"embeddings": {"dtype": "float32", "shape": ["N", model.dim], "l2_normalised": True},
                    "hash_logits": {"dtype": "float32", "shape": ["N", model.bits]}},
        "preprocessing": {"color": "BGR" if p.bgr else "RGB", "resize_short": test_resize(p), "interpolation": p.interpolation,
                          "center_crop": p.input_size, "input_range": p.input_range, "mean": list(p.mean), "std": list(p.std)},
        "codes": {"bits": model.bits, "bit_is_one_where": "hash_logits > 0", "packing": "8 bits a byte, most significant bit first (numpy packbits)"},
    }


def _onnx_modules():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise HashpaError("hashpa export needs onnx and onnxruntime: pip install 'hashpa[export]'") from None
    return onnx, onnxruntime


def _outputs_module(network):
    """`network` as a module of images -> (embeddings, hash_logits), in eval mode, for the exporter."""
    import torch

    class Outputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.network = network

        def forward(self, images):
            output = self.network(images)
            return output.embeddings, output.hash_logits

    return Outputs().eval()


def _graph(network, size: int, backbone: str) -> bytes:
    """The ONNX graph (bytes) of a copy of `network` in eval mode, dynamic in the batch."""
    import io
    import warnings

    import torch

    exported = _outputs_module(copy.deepcopy(network).eval())
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notices about its own future
            torch.onnx.export(exported, (torch.zeros(2, 3, size, size),), buffer, input_names=["images"], output_names=["embeddings", "hash_logits"],
                              dynamic_axes={name: {0: "batch"} for name in ("images", "embeddings", "hash_logits")}, opset_version=OPSET,
                              dynamo=False)
    except Exception as error:  # the exporter's own failures: an operator ONNX has no counterpart for, a graph it cannot trace
        raise HashpaError(f"the {backbone} model cannot be exported to ONNX (opset {OPSET}): {str(error).splitlines()[0][:300]}") from None
    return buffer.getvalue()


def _parity(network, graph: bytes, images: np.ndarray, onnxruntime) -> tuple[float, float]:
    """(largest embedding difference, largest hash-logit difference) of onnxruntime against torch on `images`."""
    import torch

    runtime = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    embeddings, logits = runtime.run(None, {"images": images})
    with torch.no_grad():
        expected = network.eval()(torch.from_numpy(images))
    differences = (float(np.abs(embeddings - expected.embeddings.numpy()).max()), float(np.abs(logits - expected.hash_logits.numpy()).max()))
    if max(differences) > PARITY_TOLERANCE:
        raise HashpaError(f"the ONNX graph does not reproduce the model (differences {differences[0]:.1e} in the embeddings, "
                          f"{differences[1]:.1e} in the hash logits, more than {PARITY_TOLERANCE:g}): nothing was written")
    return differences
