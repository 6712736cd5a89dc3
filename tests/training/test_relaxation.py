"""hashpa.training.relaxation: the straight-through estimator of the signed codes and its schedule."""

import numpy as np
import pytest
import torch

from hashpa.codes import pack_codes
from hashpa.errors import HashpaError
from hashpa.models.hashing_model import ModelOutput
from hashpa.runs import resolve_config
from hashpa.training.objective import HashingObjective
from hashpa.training.relaxation import binary_fraction, relaxed_codes


def logits() -> torch.Tensor:
    return torch.tensor([[-2.0, -0.3, 0.0, 0.4, 1.5, -7.0, 1.0, 0.0], [0.2, -1.0, 3.0, -0.01, 0.0, 5.0, -0.1, 0.3]], requires_grad=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_ste_forward_is_the_signs_and_backward_is_tanh_gradient(dtype):
    h = logits().detach().to(dtype).requires_grad_()
    codes = relaxed_codes(h, "ste", 1.0)
    assert codes.dtype == dtype
    bits = np.unpackbits(pack_codes(h.detach().float()).numpy(), axis=1)  # the bits the index will hold
    assert torch.equal(codes.detach(), torch.from_numpy(bits * 2.0 - 1).to(dtype))  # logit 0 is bit 0, code -1
    weights = torch.arange(16, dtype=dtype).view(2, 8)
    (codes * weights).sum().backward()
    torch.testing.assert_close(h.grad, weights * (1 - torch.tanh(h.detach()) ** 2))


def test_fraction_zero_is_tanh_and_between_mixes_the_forward_only():
    h = logits()
    assert torch.equal(relaxed_codes(h, "ste", 0.0), torch.tanh(h))
    assert torch.equal(relaxed_codes(h, "tanh", 1.0), torch.tanh(h))
    half = relaxed_codes(h, "ste", 0.5)
    signs = torch.where(h > 0, 1.0, -1.0)
    torch.testing.assert_close(half.detach(), 0.5 * torch.tanh(h.detach()) + 0.5 * signs)
    half.sum().backward()
    torch.testing.assert_close(h.grad, 1 - torch.tanh(h.detach()) ** 2)


def test_binary_fraction_moves_from_zero_in_the_first_epoch_to_one_in_the_last():
    assert [binary_fraction(e, 5) for e in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert binary_fraction(0, 1) == 1.0 and binary_fraction(7, 5) == 1.0


def test_the_objective_judges_the_signed_codes_with_ste():
    config = resolve_config({"data": ".", "code_relaxation": "ste", "distill_weight": 0.0, "quantization_weight": 0.0,
                             "decorrelation_weight": 0.0, "model": {"backbone": "smallcnn", "dim": 8, "bits": 16}})
    objective = HashingObjective(config, num_classes=3)
    torch.manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    h = torch.randn(6, 16)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    objective.binary_fraction = 1.0
    _, parts = objective(ModelOutput(embeddings, h), labels)
    assert parts["codes"] == objective.code_metric(torch.where(h > 0, 1.0, -1.0), labels)
    objective.binary_fraction = 0.0
    _, parts = objective(ModelOutput(embeddings, h), labels)
    assert parts["codes"] == objective.code_metric(torch.tanh(h), labels)


def test_an_unknown_relaxation_is_refused():
    with pytest.raises(HashpaError, match="code_relaxation|code-relaxation"):
        resolve_config({"data": ".", "code_relaxation": "sigmoid"})
