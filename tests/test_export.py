"""hashpa export: the ONNX graph reproduces the torch model on real images (embeddings to 1e-4, codes
but for bits whose logit is within 1e-4 of 0), its card alone reproduces the preprocessing, every
kind of backbone exports, and what cannot be exported or checked is a clear error that writes nothing."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import hashpa
from hashpa.errors import HashpaError
from hashpa.export import PARITY_TOLERANCE, export
from tests.conftest import make_image_folder
from tests.test_bad_inputs import hashpa as run_cli

onnxruntime = pytest.importorskip("onnxruntime")
ROOT = Path(__file__).resolve().parents[1]


def client_from_the_guide() -> str:
    """The deploy guide's client: onnxruntime, PIL and numpy, from the card alone."""
    text = (ROOT / "docs" / "guides" / "deploy.md").read_text(encoding="utf-8")
    return text.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_graph_and_its_card_reproduce_the_model_on_real_images(trained_run, tmp_path):
    summary = export(trained_run, tmp_path / "model.onnx")
    card = json.loads(summary.card.read_text())
    model = hashpa.load(trained_run, device="cpu")
    folder = make_image_folder(tmp_path / "photos", classes=3, per_class=4, size=45)
    paths = sorted(folder.rglob("*.png"))
    client = client_from_the_guide().replace("runs/demo/model.onnx", str(summary.model))
    torch_embeddings, torch_codes = model.embed(paths)
    for path, expected, expected_code in zip(paths, torch_embeddings, torch_codes):
        values = {}
        exec(client.replace("photo.jpg", str(path)), values)
        embedding, logits = values["embedding"], values["logits"]
        assert embedding.shape == (1, model.dim) and np.abs(embedding[0] - expected).max() < PARITY_TOLERANCE
        differing = np.unpackbits(values["code"][0] ^ expected_code).astype(bool)
        assert (np.abs(logits[0][differing]) < PARITY_TOLERANCE).all()
    assert card["codes"]["bits"] == model.bits and card["fingerprint"] == model.fingerprint
    runtime = onnxruntime.InferenceSession(str(summary.model), providers=["CPUExecutionProvider"])
    batch = np.random.default_rng(0).standard_normal((5, 3, card["inputs"]["images"]["shape"][2], card["inputs"]["images"]["shape"][3]))
    assert runtime.run(None, {"images": batch.astype(np.float32)})[0].shape == (5, model.dim)  # any batch size


@pytest.mark.parametrize("backbone", ["smallcnn", "resnet18", "tf_efficientnet_lite0", "bn_inception"])
def test_every_kind_of_backbone_exports(tmp_path, backbone):
    from hashpa.runs import resolve_config
    from hashpa.training import train

    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=4, size=32)
    train(resolve_config(dict(data=str(folder), split="seen", epochs=1, batch_size=8, baseline=False, code_epochs=0, eval_every=0, workers=0,
                              out=str(tmp_path / "run"), hash_init="random",
                              model=dict(backbone=backbone, weights="none", dim=16, bits=16, image_size=32))))
    summary = export(tmp_path / "run", checkpoint="last")
    assert summary.model == tmp_path / "run" / "model.onnx" and max(summary.embedding_difference, summary.logit_difference) < PARITY_TOLERANCE


def test_a_graph_that_does_not_reproduce_the_model_writes_nothing(trained_run, tmp_path, monkeypatch):
    import hashpa.export as module

    monkeypatch.setattr(module, "PARITY_TOLERANCE", 0.0)
    with pytest.raises(HashpaError, match="does not reproduce the model"):
        export(trained_run, tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def test_a_model_the_exporter_cannot_trace_is_a_clear_error(trained_run, tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::mystery' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", failing)
    with pytest.raises(HashpaError, match="cannot be exported to ONNX.*aten::mystery"):
        export(trained_run, tmp_path / "model.onnx")
    assert not list(tmp_path.iterdir())


def test_the_command_refuses_a_users_file_and_a_missing_run(trained_run, tmp_path):
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"my own model")
    run_cli("export", trained_run, "--out", mine).failed_with("mine.onnx already exists", "--overwrite")
    assert mine.read_bytes() == b"my own model"
    run_cli("export", tmp_path / "nowhere").failed_with("does not exist")
    checkpoint = (trained_run / "best.pt").read_bytes()
    run_cli("export", trained_run, "--out", trained_run / "best.pt", "--overwrite").failed_with("never writes an output there")
    assert (trained_run / "best.pt").read_bytes() == checkpoint
    out = json.loads(run_cli("export", trained_run, "--out", tmp_path / "m.onnx", "--json").succeeded().stdout)
    assert out["bytes"] == (tmp_path / "m.onnx").stat().st_size and out["logit_difference"] < PARITY_TOLERANCE
    run_cli("export", trained_run, "--out", tmp_path / "m.onnx").succeeded()  # its own output: replaced
