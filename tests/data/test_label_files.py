"""Multi-label data from a labels file beside a folder: read (CSV and JSON), split, trained on with
multi-label losses, evaluated with shared-label relevance; clear errors for bad files and for what
takes one class per image."""

import json

import numpy as np
import pytest
from PIL import Image

from hashpa.data.folder import sample_labels
from hashpa.data.label_files import labelled_by_file
from hashpa.data.splits import build_split
from hashpa.errors import HashpaError
from tests.test_bad_inputs import hashpa

CONCEPTS = ["beach", "city", "night", "snow"]


@pytest.fixture
def labelled(tmp_path):
    """24 images, each of one or two concepts (its pixels follow its concepts), with labels.csv and labels.json."""
    rng = np.random.default_rng(0)
    rows = {}
    for i in range(24):
        concepts = sorted({CONCEPTS[i % 4], CONCEPTS[(i * 3 + 1) % 4]})
        colour = np.mean([[60 * CONCEPTS.index(c) + 20] * 3 for c in concepts], axis=0)
        pixels = np.clip(rng.normal(colour, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
        (tmp_path / "photos").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "photos" / f"{i:02d}.png")
        rows[f"{i:02d}.png"] = concepts
    (tmp_path / "labels.csv").write_text("path,labels\n" + "".join(f"{p},{';'.join(c)}\n" for p, c in rows.items()))
    (tmp_path / "labels.json").write_text(json.dumps(rows))
    return tmp_path, rows


def test_csv_and_json_give_the_same_multi_label_samples(labelled):
    base, rows = labelled
    from_csv, classes = labelled_by_file(base / "photos", base / "labels.csv")
    from_json, same = labelled_by_file(base / "photos", base / "labels.json")
    assert from_csv == from_json and classes == same == CONCEPTS
    matrix = sample_labels(from_csv, len(classes))
    for sample, row in zip(from_csv, matrix):
        assert [CONCEPTS[i] for i in np.flatnonzero(row)] == rows[sample.path.name]


@pytest.mark.parametrize("text,needle", [
    ("image,labels\n", "header 'path,labels'"),
    ("path,labels\nmissing.png,beach\n", "not an image under"),
    ("path,labels\n00.png,\n", "has no label"),
    ("path,labels\n00.png,beach,extra\n", "expected 'path,label;label'"),
])
def test_bad_labels_files_are_clear_errors(labelled, text, needle):
    base, _ = labelled
    (base / "bad.csv").write_text(text)
    with pytest.raises(HashpaError, match=needle):
        labelled_by_file(base / "photos", base / "bad.csv")


def test_a_labelled_folder_splits_seen_only(labelled):
    base, _ = labelled
    split = build_split("folder", data=base / "photos", labels=base / "labels.csv", split="seen", test_fraction=0.25)
    assert split.multi_label and len(split.train) + len(split.test) == 24 and split.train_classes == CONCEPTS
    with pytest.raises(HashpaError, match="--split seen"):
        build_split("folder", data=base / "photos", labels=base / "labels.csv", split="half")


def test_train_and_eval_on_multi_label_data(labelled, tmp_path):
    base, _ = labelled
    common = ["--data", base / "photos", "--labels", base / "labels.csv", "--split", "seen", "--test-fraction", "0.25", "--backbone", "smallcnn",
              "--weights", "none", "--dim", "16", "--bits", "16", "--epochs", "2", "--batch-size", "12", "--workers", "0", "--warmup-epochs", "0"]
    hashpa("train", *common, "--out", tmp_path / "run", "--code-loss", "csq").succeeded()
    report = json.loads(hashpa("eval", tmp_path / "run", "--json", "--workers", "0").succeeded().stdout)
    assert 0 < report["rows"][0]["recall@1"] <= 1 and 0 < report["hashing"]["codes"]["map@all"] <= 1
    hashpa("train", *common, "--out", tmp_path / "ms", "--code-loss", "ms").failed_with("is multi-label", "--code-loss ms")
    hashpa("index", "--split", "train", "--run-dir", tmp_path / "run", "--out", tmp_path / "idx", "--workers", "0").succeeded()
    compared = json.loads(hashpa("compare", tmp_path / "idx", "--json", "--repeats", "1", "--latency-queries", "0").succeeded().stdout)
    from hashpa.indexdir import read_store
    from tests.conftest import index_file

    store = read_store(index_file(tmp_path / "idx", "store.h5"))
    assert store.label_sets is not None and store.label_sets.shape[1] == 4 and (store.label_sets.sum(axis=1) >= 1).all()
    similarity = store.embeddings @ store.embeddings.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    shared = (store.label_sets[nearest] & store.label_sets).any(axis=1)  # brute force: the nearest other image shares a concept
    flat = next(r for r in compared["methods"] if r["method"] == "float Flat")
    assert flat["recall@1"] == pytest.approx(shared.mean()) and compared["hashing"]["codes"]["queries"] == len(store)
    found = json.loads(hashpa("search", tmp_path / "idx", base / "photos" / store.paths[0], "-k", "2", "--json").succeeded().stdout)
    assert found[0]["hits"][0]["label"] == store.label_text(found[0]["hits"][0]["row"])  # every class of the hit, joined


def test_multi_label_relevance_in_training_metrics_is_a_shared_label(labelled, tmp_path):
    """The run's evaluation equals the metrics computed here from the same embeddings with shared-label relevance."""
    import hashpa as api
    from hashpa.embed import embed_labelled
    from hashpa.metrics.retrieval import retrieval_scores

    base, _ = labelled
    config = api.resolve_config(dict(data=str(base / "photos"), labels=str(base / "labels.json"), split="seen", test_fraction=0.25, epochs=1,
                                     batch_size=12, workers=0, warmup_epochs=0, out=str(tmp_path / "run"), code_epochs=0,
                                     model=dict(backbone="smallcnn", weights="none", dim=16, bits=16)))
    result = api.train(config)
    model = api.load(tmp_path / "run", "last")
    split = build_split(**config.data_settings())
    test = embed_labelled(model.network, split.test, model.device, len(split.test_classes))
    assert test.labels.shape == (len(split.test), 4) and test.labels.dtype == bool
    expected = retrieval_scores(test.embeddings, test.labels, metric="cosine")
    assert result.history[-1]["float"]["recall@1"] == pytest.approx(expected["recall@1"])
