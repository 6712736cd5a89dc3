import numpy as np
from PIL import Image

from hashpa.data import builtin_dataset, labelled_samples
from hashpa.data.builtin import CLASS_NAMES, IMAGE_SIZE, MIN_CONTRAST, scattered_digit


def test_builtin_digits_are_written_once_as_an_image_folder():
    root = builtin_dataset()
    samples, classes = labelled_samples(root)
    assert classes == list(CLASS_NAMES)
    assert len(samples) == 1797
    with Image.open(samples[0].path) as image:
        assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    stamp = samples[0].path.stat().st_mtime_ns
    assert builtin_dataset() == root and samples[0].path.stat().st_mtime_ns == stamp


def test_a_scattered_digit_is_the_same_for_the_same_seed_and_moves_between_seeds():
    from sklearn.datasets import load_digits

    pixels = load_digits().images[0]
    first = np.asarray(scattered_digit(pixels, np.random.default_rng(7)))
    assert (first == np.asarray(scattered_digit(pixels, np.random.default_rng(7)))).all()
    pictures = [np.asarray(scattered_digit(pixels, np.random.default_rng(seed)), np.float32) for seed in range(20)]
    backgrounds = [np.median(p) for p in pictures]
    assert max(backgrounds) - min(backgrounds) > 100  # backgrounds of every grey
    centres = [np.argwhere(np.abs(p - np.median(p)) > MIN_CONTRAST / 2).mean(axis=0) for p in pictures]
    assert np.ptp(np.array(centres), axis=0).min() > 4  # the digit is not always in one place
