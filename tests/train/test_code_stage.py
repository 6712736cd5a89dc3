"""The code stage: straight-through codes, the PCA-ITQ start, and what each objective learns."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashpa.codes import pack_codes
from hashpa.eval.metrics import evaluate_retrieval
from hashpa.models.heads import HashHead
from hashpa.quantizers import fit_itq
from hashpa.train.code_stage import CodeFeatures, CodeStageSettings, choose_objective, fit_code_stage, set_head_to_hasher, straight_through_codes

BITS = 16


def test_straight_through_codes_are_the_bits_forward_and_tanh_backward():
    logits = torch.tensor([[-2.0, -0.1, 0.0, 0.3, 5.0, -7.0, 1.0, 0.0]], requires_grad=True)
    codes = straight_through_codes(logits)
    bits = np.unpackbits(pack_codes(logits.detach()).numpy(), axis=1)
    assert torch.equal(codes.detach(), torch.from_numpy(bits * 2.0 - 1).float())  # logit 0 is bit 0, code -1
    codes.sum().backward()
    torch.testing.assert_close(logits.grad, 1 - torch.tanh(logits.detach()) ** 2)


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


@pytest.mark.parametrize("objective", ["proxy_anchor", "distill"])
def test_the_stage_beats_its_pca_itq_start_on_held_out_images(objective):
    x, labels, signal = nuisance_data(60, seed=0)
    features = CodeFeatures(torch.from_numpy(x), F.normalize(torch.from_numpy(signal), dim=1), torch.from_numpy(labels), len(x))
    head = HashHead(x.shape[1], BITS)
    torch.manual_seed(0)
    settings = CodeStageSettings(objective, epochs=30, lr=1e-2, proxy_lr=1.0, weight_decay=1e-4, batch_size=64,
                                 alpha=32.0, margin=0.3, temperature=0.1, seed=0)
    stage = fit_code_stage(head, features, 8, settings)
    assert stage["objective"] == objective and stage["steps"] == 30 * (len(x) // 64)
    held_out, held_out_labels, _ = nuisance_data(30, seed=1)
    with torch.no_grad():
        learned = pack_codes(head(torch.from_numpy(held_out))).numpy()
    itq = fit_itq(x, BITS).encode(held_out)
    assert recall_at_1(learned, held_out_labels) > recall_at_1(itq, held_out_labels) + 0.2
