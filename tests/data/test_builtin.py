from PIL import Image

from hashpa.data import builtin_dataset, labelled_samples
from hashpa.data.builtin import CLASS_NAMES, IMAGE_SIZE


def test_builtin_digits_are_written_once_as_an_image_folder():
    root = builtin_dataset()
    samples, classes = labelled_samples(root)
    assert classes == list(CLASS_NAMES)
    assert len(samples) == 1797
    with Image.open(samples[0].path) as image:
        assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
    stamp = samples[0].path.stat().st_mtime_ns
    assert builtin_dataset() == root and samples[0].path.stat().st_mtime_ns == stamp
