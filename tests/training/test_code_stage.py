"""The code stage: straight-through codes, the PCA-ITQ start, and what each objective learns."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashpa.codes import pack_codes
from hashpa.metrics.retrieval import evaluate_retrieval
from hashpa.models.heads import HashHead
from hashpa.quantizers import fit_itq
from hashpa.training.code_stage import (
    CodeFeatures,
    CodeStageSettings,
    _held_out_images,
    choose_objective,
    fit_code_stage,
    set_head_to_hasher,
)

BITS = 16


def test_auto_objective_follows_the_test_classes():
    assert choose_objective("auto", ["a", "b", "c"], ["a", "c"]) == "proxy_anchor"
    assert choose_objective("auto", ["a", "b"], ["c", "d"]) == "distill"
    assert choose_objective("distill", ["a"], ["a"]) == "distill"


def test_a_head_set_to_a_hasher_gives_its_codes():
    x = np.random.default_rng(0).normal(size=(200, 24)).astype(np.float32)
    hasher = fit_itq(x, BITS)
    head = HashHead(24, BITS)
    set_head_to_hasher(head, hasher, x)
    head.eval()
    with torch.no_grad():
        codes = pack_codes(head(torch.from_numpy(x))).numpy()
    np.testing.assert_array_equal(codes, hasher.encode(x))


def nuisance_data(n_per_class: int, seed: int, classes: int = 8):
    """Classes separated along 4 low-variance directions, hidden under 28 high-variance nuisance ones:
    PCA-ITQ spends its bits on the nuisance, a stage that learns from labels or from a teacher
    embedding that ignores the nuisance should not."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(classes, 4)) * 2
    labels = np.repeat(np.arange(classes), n_per_class)
    signal = centres[labels] + rng.normal(scale=0.3, size=(len(labels), 4))
    nuisance = rng.normal(scale=4.0, size=(len(labels), 28))
    return np.hstack([signal, nuisance]).astype(np.float32), labels, signal.astype(np.float32)


def recall_at_1(codes: np.ndarray, labels: np.ndarray) -> float:
    return evaluate_retrieval(codes, labels, metric="hamming", ks=(1,), tie_aware=False, with_map_at_r=False)["recall"][1]


def nuisance_features(n_per_class: int, seed: int) -> CodeFeatures:
    x, labels, signal = nuisance_data(n_per_class, seed)
    return CodeFeatures(torch.from_numpy(x), F.normalize(torch.from_numpy(signal), dim=1), torch.from_numpy(labels), len(x))


def settings_for(objective: str, **changes) -> CodeStageSettings:
    values = dict(epochs=30, lr=1e-2, proxy_lr=1.0, weight_decay=1e-4, batch_size=64, alpha=32.0, margin=0.3, temperature=0.1, seed=0)
    return CodeStageSettings(objective, **{**values, **changes})


@pytest.mark.parametrize("validation", [0.0, 0.2])
@pytest.mark.parametrize("objective", ["proxy_anchor", "orthohash", "distill"])
def test_the_stage_beats_its_pca_itq_start_on_held_out_images(objective, validation):
    features = nuisance_features(60, seed=0)
    x = features.hash_inputs.numpy()
    head = HashHead(x.shape[1], BITS)
    torch.manual_seed(0)
    stage = fit_code_stage(head, features, 8, settings_for(objective, validation=validation))
    epochs = stage["validation"]["epochs"] if validation else 30
    assert stage["objective"] == objective and stage["steps"] == epochs * (len(x) // 64) and epochs > 0
    held_out, held_out_labels, _ = nuisance_data(30, seed=1)
    with torch.no_grad():
        learned = pack_codes(head(torch.from_numpy(held_out))).numpy()
    itq = fit_itq(x, BITS).encode(held_out)
    assert recall_at_1(learned, held_out_labels) > recall_at_1(itq, held_out_labels) + 0.2


def test_orthohash_gathers_each_class_at_one_code_where_proxy_anchor_spreads_it():
    """OrthoHash's paper: codes of a class collapse onto its codeword; on held-out images more
    neighbours within Hamming radius 2 share the query's class than under Proxy Anchor."""
    from hashpa.metrics.hashing import hashing_scores

    features = nuisance_features(60, seed=0)
    held_out, held_out_labels, _ = nuisance_data(30, seed=1)
    precision = {}
    for objective in ("proxy_anchor", "orthohash"):
        head = HashHead(features.hash_inputs.shape[1], BITS)
        torch.manual_seed(0)
        fit_code_stage(head, features, 8, settings_for(objective))
        with torch.no_grad():
            codes = pack_codes(head(torch.from_numpy(held_out))).numpy()
        precision[objective] = hashing_scores(codes, held_out_labels, metric="hamming")["p@h<=2"]
    assert precision["orthohash"] > precision["proxy_anchor"] + 0.05, precision


def test_when_no_epoch_beats_the_start_on_held_out_images_the_pca_itq_start_is_kept(monkeypatch):
    held_out_recalls = iter(np.linspace(0.9, 0.1, 31))  # the start, then worse after every epoch
    monkeypatch.setattr("hashpa.training.code_stage._recall_at_1", lambda head, validation: float(next(held_out_recalls)))
    features = nuisance_features(60, seed=0)
    x = features.hash_inputs.numpy()
    head = HashHead(x.shape[1], BITS)
    stage = fit_code_stage(head, features, 8, settings_for("proxy_anchor", validation=0.2))
    assert stage["validation"]["epochs"] == 0 and stage["steps"] == 0 and len(stage["validation"]["recall@1_by_epoch"]) == 31
    head.eval()
    with torch.no_grad():  # PCA-ITQ of all the images, not only of those left after holding some out
        np.testing.assert_array_equal(pack_codes(head(features.hash_inputs)).numpy(), fit_itq(x, BITS).encode(x))


def test_held_out_images_are_whole_classes_for_distill_and_part_of_every_class_otherwise():
    features = nuisance_features(10, seed=0)
    views = CodeFeatures(torch.cat([features.hash_inputs] * 3), None, torch.cat([features.labels] * 3), len(features.labels))
    labels = features.labels.numpy()
    by_class = _held_out_images(views, settings_for("distill", validation=0.25), BITS)
    assert len(np.unique(labels[by_class])) == 2 and not np.isin(labels[~by_class], labels[by_class]).any()
    by_image = _held_out_images(views, settings_for("proxy_anchor", validation=0.25), BITS)
    assert all(by_image[labels == c].sum() == 2 for c in range(8))  # round(10 * 0.25) = 2 of every class
    subset = views.images(by_image)
    assert subset.plain_rows == 16 and len(subset.labels) == 48
    torch.testing.assert_close(subset.hash_inputs[16:32], views.hash_inputs[len(labels) : 2 * len(labels)][torch.from_numpy(by_image)])
    assert _held_out_images(views, settings_for("proxy_anchor", validation=0.0), BITS) is None
    assert _held_out_images(views, settings_for("distill", validation=0.25), bits=70) is None  # too few images left for PCA-ITQ
