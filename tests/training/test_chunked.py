"""Exact large batches in small memory: a batch of 240 whose backbone runs 60 images at a time gives
the same gradients and the same parameter update as the batch in one piece, for every float loss
and every code loss (float64, frozen backbone BatchNorm as the method requires)."""

import copy

import pytest
import torch

from hashpa.losses.registry import CODE_LOSS_NAMES, LOSS_NAMES
from hashpa.models.config import ModelConfig
from hashpa.models.hashing_model import HashingModel
from hashpa.runs.config import TrainConfig
from hashpa.training.chunked import chunked_step
from hashpa.training.objective import HashingObjective
from hashpa.training.processes import TrainingStep


def setup(loss: str, code_loss: str):
    torch.manual_seed(0)
    config = TrainConfig(loss=loss, code_loss=code_loss, quantization_weight=0.1, distill_weight=0.5, decorrelation_weight=0.1,
                         model=ModelConfig(backbone="smallcnn", weights="none", dim=16, bits=16, freeze_bn=True))
    model = HashingModel(config.model).double().train()
    objective = HashingObjective(config, num_classes=12).double()
    return TrainingStep(model, model, objective)


def gradients_and_update(step, compute):
    optimiser = torch.optim.AdamW(step.parameters(), lr=1e-3)
    optimiser.zero_grad()
    compute(step)
    grads = {name: p.grad.clone() for name, p in step.named_parameters() if p.grad is not None}
    optimiser.step()
    return grads, {name: p.detach().clone() for name, p in step.named_parameters()}


EVERY_LOSS = sorted({*((loss, "proxy_anchor") for loss in LOSS_NAMES), *(("proxy_anchor", code) for code in CODE_LOSS_NAMES)})


@pytest.mark.parametrize("loss,code_loss", EVERY_LOSS)
def test_a_chunked_batch_updates_the_parameters_as_one_piece(loss, code_loss):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(240, 3, 16, 16, generator=generator, dtype=torch.float64)
    labels = torch.arange(12).repeat(20)
    whole = setup(loss, code_loss)
    chunked = copy.deepcopy(whole)

    def one_piece(step):
        step(inputs, labels, False, False, False, torch.device("cpu"))[0].backward()

    def in_chunks(step):
        chunked_step(step, inputs, labels, 60, False, False, False, torch.device("cpu"))

    grads, after = gradients_and_update(whole, one_piece)
    chunk_grads, chunk_after = gradients_and_update(chunked, in_chunks)
    assert set(grads) == set(chunk_grads) and any(name.startswith("network.backbone") for name in grads)
    for name in grads:
        torch.testing.assert_close(chunk_grads[name], grads[name], rtol=1e-7, atol=1e-10, msg=name)
    for name in after:
        torch.testing.assert_close(chunk_after[name], after[name], rtol=1e-7, atol=1e-10, msg=name)


def test_chunks_with_a_frozen_backbone_train_the_heads_only():
    step = setup("proxy_anchor", "proxy_anchor")
    inputs, labels = torch.randn(48, 3, 16, 16, dtype=torch.float64), torch.arange(12).repeat(4)
    chunked_step(step, inputs, labels, 16, True, False, False, torch.device("cpu"))
    assert all(p.grad is None for p in step.network.backbone.parameters())
    assert all(p.grad is not None for p in step.network.embedding.parameters() if p.requires_grad)


def test_training_with_chunks_runs_end_to_end(tmp_path):
    from hashpa.runs import resolve_config
    from hashpa.training import train
    from tests.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "images", classes=4, per_class=8)
    config = resolve_config(dict(data=str(folder), split="seen", epochs=1, batch_size=16, chunk_size=4, workers=0, out=str(tmp_path / "run"),
                                 baseline=False, model=dict(backbone="smallcnn", weights="none", dim=16, bits=16, freeze_bn=True)))
    record = [r for r in train(config).history if "loss" in r][-1]
    assert record["loss"]["total"] > 0 and "float" in record
