import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashpa.losses import DecorrelationLoss, QuantizationLoss, SimilarityDistillationLoss


def test_quantization_is_zero_at_plus_minus_one_and_positive_inside():
    q = QuantizationLoss()
    assert q(torch.tensor([[1.0, -1.0]])).item() == 0.0
    assert q(torch.tensor([[0.5, -0.5]])).item() == pytest.approx(0.25)


def test_decorrelation_against_numpy_corrcoef():
    u = torch.randn(64, 8, dtype=torch.float64)
    u[:, 1] = u[:, 0] * 0.9 + 0.1 * u[:, 1]
    corr = np.corrcoef(u.numpy(), rowvar=False)
    off = corr[~np.eye(8, dtype=bool)]
    assert DecorrelationLoss()(u).item() == pytest.approx((off**2).mean(), rel=1e-5)


def test_distillation_is_zero_when_student_equals_teacher_and_matches_kl():
    torch.manual_seed(0)
    teacher = torch.randn(10, 16)
    loss = SimilarityDistillationLoss(temperature=0.2)
    assert loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(10, 6)
    expected = 0.0
    for i in range(10):
        others = [j for j in range(10) if j != i]
        t = F.normalize(teacher, dim=1)
        s = F.normalize(student, dim=1)
        p = torch.softmax(t[i] @ t[others].T / 0.2, dim=0)
        q = torch.softmax(s[i] @ s[others].T / 0.2, dim=0)
        expected += (p * (p.log() - q.log())).sum().item()
    assert loss(student, teacher).item() == pytest.approx(expected / 10, rel=1e-4)
