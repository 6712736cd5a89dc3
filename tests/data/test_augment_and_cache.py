import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from hashpa.data import labelled_samples
from hashpa.data.augment import augment_batch, center_crop_batch, random_crop_boxes, resized_crops
from hashpa.data.cache import decoded_images
from hashpa.data.preprocess import Preprocessing
from hashpa.data.transforms import ToBackboneRange
from tests.conftest import make_image_folder


def test_crop_boxes_follow_random_resized_crop_rules():
    boxes = random_crop_boxes(4000, 120, 160, scale=(0.2, 0.9), generator=torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 3] <= 120).all()
    area = w * h / (120 * 160)
    assert area.min() >= 0.19 and area.max() <= 0.91
    assert (w / h).min() >= 0.74 and (w / h).max() <= 1.35


@pytest.mark.parametrize("out_size", [40, 10])  # enlarge and shrink
def test_resized_crop_matches_torchvision_on_a_fixed_box(out_size):
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    image = torch.stack([127 + 120 * torch.sin(x / 5 + c) * torch.cos(y / 7) for c in range(3)])[None]  # smooth, photo-like
    box = torch.tensor([[8.0, 4.0, 28.0, 24.0]])  # a 20 x 20 crop
    ours = resized_crops(image, box, out_size)
    reference = TF.resized_crop(image, top=4, left=8, height=20, width=20, size=[out_size, out_size], antialias=True)
    assert (ours - reference).abs().mean() < 2.0  # the same crop; interpolation grids differ slightly


def test_augment_batch_flips_and_normalises_like_the_file_path():
    images = torch.randint(0, 256, (6, 3, 36, 36), dtype=torch.uint8)
    pre = Preprocessing(input_size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    out = augment_batch(images, 32, pre, scale=(1.0, 1.0), hflip=True, generator=torch.Generator().manual_seed(1))
    assert out.shape == (6, 3, 32, 32) and out.min() >= -1.0001 and out.max() <= 1.0001
    centre = center_crop_batch(images, 32, pre)
    pil = Image.fromarray(images[0].permute(1, 2, 0).numpy())
    reference = T.Compose([T.CenterCrop(32), T.ToTensor(), T.Normalize(pre.mean, pre.std)])(pil)
    torch.testing.assert_close(centre[0], reference, atol=1e-5, rtol=0)


def test_bgr_caffe_preprocessing():
    images = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    images[:, 0] = 255  # pure red
    pre = Preprocessing(input_size=4, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), input_range=255.0, bgr=True)
    out = center_crop_batch(images, 4, pre)
    assert out[0, 2, 0, 0].item() == pytest.approx(255 - 128)  # red lands in the last (R of BGR) channel
    assert out[0, 0, 0, 0].item() == pytest.approx(-104)


def test_decoded_cache_is_built_once_and_keyed_by_the_files(tmp_path):
    root = make_image_folder(tmp_path / "images", classes=2, per_class=3)
    (root / "class_00" / "broken.png").write_bytes(b"nope")
    samples, _ = labelled_samples(root)
    first = decoded_images(samples, 24, workers=0, folder=tmp_path / "cache")
    assert first.images.shape == (6, 3, 24, 24) and first.images.dtype == torch.uint8
    assert len(list((tmp_path / "cache").iterdir())) == 1
    pil = Image.open(samples[first.positions[0]].path).convert("RGB")
    expected = torch.from_numpy(np.array(T.CenterCrop(24)(T.Resize(24)(pil)))).permute(2, 0, 1)
    assert torch.equal(first.images[0], expected)
    again = decoded_images(samples, 24, workers=0, folder=tmp_path / "cache")
    assert torch.equal(again.images, first.images)
    make_image_folder(root, classes=2, per_class=4, seed=3)  # files change: new cache
    decoded_images(labelled_samples(root)[0], 24, workers=0, folder=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2


@pytest.mark.parametrize("pre", [Preprocessing(input_size=112, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic"),
                                 Preprocessing(input_size=32),
                                 Preprocessing(input_size=40, mean=(104.0, 117.0, 128.0), std=(1.0, 1.0, 1.0), input_range=255.0, bgr=True)])
@pytest.mark.parametrize("size", [(500, 375), (375, 500), (46, 46), (20, 90), (40, 40)])
def test_the_test_transform_equals_torchvisions(pre, size):
    from hashpa.data.preprocess import TestTransform, test_resize

    image = Image.fromarray(np.random.default_rng(size[0]).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    reference = T.Compose([T.Resize(test_resize(pre), interpolation=T.InterpolationMode(pre.interpolation)), T.CenterCrop(pre.input_size),
                           T.ToTensor(), ToBackboneRange(pre)])
    assert torch.equal(TestTransform(pre)(image), reference(image))
