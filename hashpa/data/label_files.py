"""Labels from a file beside an image folder, for multi-label data (an image of a beach at sunset
is both): CSV or JSON, paths relative to the folder.

    path,labels                       CSV: a header, then the image's path and its labels separated by ';'
    beach/0001.jpg,beach;sunset
    {"beach/0001.jpg": ["beach", "sunset"], ...}      JSON: an object of path -> list of labels

Label names are sorted into class indices; every listed image must exist and have a label.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hashpa.data.folder import Sample
from hashpa.errors import HashpaError


def labelled_by_file(root: str | Path, labels_file: str | Path) -> tuple[list[Sample], list[str]]:
    """(samples with every label, the sorted class names) of the images `labels_file` lists under `root`."""
    root, labels_file = Path(root), Path(labels_file)
    listed = _read(labels_file)
    classes = sorted({name for names in listed.values() for name in names})
    index = {name: i for i, name in enumerate(classes)}
    samples = []
    for relative, names in sorted(listed.items()):
        path = root / relative
        if not path.is_file():
            raise HashpaError(f"{labels_file} lists {relative}, which is not an image under {root}")
        if not names:
            raise HashpaError(f"{labels_file}: {relative} has no label")
        labels = tuple(sorted(index[name] for name in set(names)))
        samples.append(Sample(path, labels[0], labels))
    if len(classes) < 2:
        raise HashpaError(f"{labels_file} names {len(classes)} label(s): training needs at least 2")
    return samples, classes


def _read(path: Path) -> dict[str, list[str]]:
    if not path.is_file():
        raise HashpaError(f"labels file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise HashpaError(f"{path} is not UTF-8 text (byte {error.start}: {error.reason}): save it as UTF-8") from None
    except OSError as error:
        raise HashpaError(f"cannot read the labels file {path}: {error.strerror or error}") from None
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise HashpaError(f"{path} is not valid JSON ({error})") from None
        if not isinstance(values, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in values.values()):
            raise HashpaError(f"{path} must hold an object of image path -> list of label names")
        return values
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["path", "labels"]:
        raise HashpaError(f"{path} must start with the header 'path,labels' (then one image a line: path,label;label)")
    listed = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2:
            raise HashpaError(f"{path}, line {number}: expected 'path,label;label', got {','.join(row)!r}")
        listed[row[0].strip()] = [name.strip() for name in row[1].split(";") if name.strip()]
    return listed
