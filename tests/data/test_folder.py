import os

import pytest
import torch
from PIL import Image

from hashpa.data.folder import find_images, labelled_samples
from hashpa.data.loading import ImageDataset, collate_skipping
from hashpa.errors import HashpaError


def write_image(path, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path, format=fmt)


def test_finds_images_recursively_in_any_letter_case(tmp_path):
    write_image(tmp_path / "a" / "x.JPG", "JPEG")
    write_image(tmp_path / "a" / "deep" / "y.png")
    write_image(tmp_path / "b" / "z.WebP", "WEBP")
    write_image(tmp_path / "b" / "t.tiff")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    write_image(tmp_path / ".hidden" / "h.png")
    write_image(tmp_path / "a" / ".h.png")
    found = [p.as_posix() for p in find_images(tmp_path)]
    assert found == ["a/deep/y.png", "a/x.JPG", "b/t.tiff", "b/z.WebP"]


def test_symlink_loops_terminate(tmp_path):
    write_image(tmp_path / "a" / "x.png")
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    assert [p.as_posix() for p in find_images(tmp_path)] == ["a/x.png"]


def test_labelled_samples_use_class_folders(tmp_path):
    write_image(tmp_path / "cats" / "1.png")
    write_image(tmp_path / "dogs" / "2.png")
    write_image(tmp_path / "loose.png")  # not in a class folder: not labelled
    samples, classes = labelled_samples(tmp_path)
    assert classes == ["cats", "dogs"]
    assert [(s.path.name, s.label) for s in samples] == [("1.png", 0), ("2.png", 1)]


def test_missing_folder_and_no_classes_are_clear_errors(tmp_path):
    with pytest.raises(HashpaError, match="not found"):
        find_images(tmp_path / "nope")
    write_image(tmp_path / "loose.png")
    with pytest.raises(HashpaError, match="no class sub-folders"):
        labelled_samples(tmp_path)


def test_unreadable_images_are_skipped_and_counted(tmp_path, caplog):
    write_image(tmp_path / "c" / "good.png")
    (tmp_path / "c" / "broken.png").write_bytes(b"\x89PNG not really")
    samples, _ = labelled_samples(tmp_path)
    dataset = ImageDataset(samples, lambda image: torch.zeros(3))
    batch = collate_skipping([dataset[i] for i in range(len(dataset))])
    assert batch.skipped == 1 and len(batch.labels) == 1
    assert "broken.png" in caplog.text
