"""The CUDA paths against their CPU counterparts. Skipped on machines without a GPU (CI); run on one by
``eval/gpu_checks.sh`` (see BENCHMARKS.md)."""

import numpy as np
import pytest
import torch
from PIL import Image

from hashpa.data import labelled_samples
from hashpa.data.augment import augment_batch, center_crop_batch, random_crop_boxes, resized_crops
from hashpa.data.preprocess import Preprocessing
from hashpa.embed import embed_all
from hashpa.losses import ProxyAnchorLoss
from hashpa.runs import load_network, resolve_config
from hashpa.training import train
from tests.conftest import make_image_folder
from tests.losses.test_proxy_anchor import batch, reference_proxy_anchor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("proxy_chunk", [None, 3])
def test_proxy_anchor_on_cuda_matches_the_float64_reference(proxy_chunk):
    loss = ProxyAnchorLoss(10, 16, proxy_chunk=proxy_chunk).to(CUDA)
    x, labels = batch(0)
    x, labels = x.to(CUDA).requires_grad_(), labels.to(CUDA)
    expected = reference_proxy_anchor(x.detach().cpu(), labels.cpu(), loss.proxies.detach().cpu(), 32.0, 0.1)
    value = loss(x, labels)
    value.backward()
    assert value.item() == pytest.approx(expected, rel=1e-4)
    assert torch.isfinite(x.grad).all()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        low = loss(x, labels)
    assert low.dtype == torch.float32 and low.item() == pytest.approx(expected, rel=2e-2)


def test_compiled_proxy_anchor_on_cuda_equals_eager():
    loss = ProxyAnchorLoss(100, 64).to(CUDA)
    x, labels = batch(1, n=180, dim=64, classes=100)
    x, labels = x.to(CUDA), labels.to(CUDA)
    torch.testing.assert_close(torch.compile(loss)(x, labels), loss(x, labels), rtol=1e-4, atol=1e-5)


def test_batched_augmentation_on_cuda_equals_cpu():
    images = torch.randint(0, 256, (8, 3, 40, 48), dtype=torch.uint8)
    pre = Preprocessing(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    torch.testing.assert_close(center_crop_batch(images.to(CUDA), 32, pre).cpu(), center_crop_batch(images, 32, pre), atol=1e-5, rtol=0)
    boxes = random_crop_boxes(8, 40, 48, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(resized_crops(images.to(CUDA).float(), boxes.to(CUDA), 32).cpu(), resized_crops(images.float(), boxes, 32),
                               atol=1e-3, rtol=1e-4)
    out = augment_batch(images.to(CUDA), 32, pre, generator=torch.Generator().manual_seed(0))  # crops are drawn on the CPU
    assert out.device.type == CUDA.type and out.shape == (8, 3, 32, 32)


def test_training_on_cuda_with_the_decoded_cache_learns(tmp_path):
    folder = make_image_folder(tmp_path / "images")
    config = resolve_config(dict(
        data=str(folder), out=str(tmp_path / "run"), split="seen", test_fraction=0.3, epochs=4, batch_size=24, lr=3e-3,
        eval_every=2, workers=0, crop_scale_min=0.7, device="cuda", data_path="cache",
        model=dict(backbone="smallcnn", weights="none", dim=32, bits=32),
    ))
    result = train(config)
    assert result.history[-1]["float"]["recall@1"] > 0.8 and result.history[-1]["codes"]["recall@1"] > 0.7


def test_compiled_training_step_on_cuda(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=4, per_class=12)
    config = resolve_config(dict(
        data=str(folder), out=str(tmp_path / "run"), split="seen", epochs=1, batch_size=16, workers=0, device="cuda",
        compile=True, model=dict(backbone="smallcnn", weights="none", dim=16, bits=16),
    ))
    assert np.isfinite(train(config).history[0]["loss"]["total"])


def test_jpeg_decoding_on_cuda_matches_pil(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=2, per_class=4, size=48)
    for path in list(folder.rglob("*.png")):
        Image.open(path).convert("RGB").save(path.with_suffix(".jpg"), quality=95)
        path.unlink()
    samples, _ = labelled_samples(folder)
    model, _ = load_network(trained_run, "best", CUDA)
    pil = embed_all(model, samples, CUDA, decode="pil")
    device = embed_all(model, samples, CUDA, decode="device")
    np.testing.assert_array_equal(pil[2], device[2])
    assert (pil[0] * device[0]).sum(axis=1).min() > 0.98  # the same images; resize implementations differ slightly
