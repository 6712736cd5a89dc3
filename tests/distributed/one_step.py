"""One training step of hashpa's model and objective on a fixed batch, as a script: run by
test_distributed.py both alone and under torchrun with 2 ranks (each given its half of the batch).
Writes rank 0's loss, loss terms and updated parameters to the file named by argv[1]; with argv[2]
(a chunk size) the step runs its backbone in chunks (``hashpa.training.chunked``) instead of
under DistributedDataParallel."""

import sys

import torch

from hashpa.distributed import average_gradients, process_group, rank_share, world_size
from hashpa.models.config import ModelConfig
from hashpa.models.hashing_model import HashingModel
from hashpa.runs.config import resolve_config
from hashpa.training.chunked import chunked_step
from hashpa.training.objective import HashingObjective
from hashpa.training.processes import TrainingStep

BATCH, CLASSES = 12, 4


def main(out: str, chunk: int = 0) -> None:
    with process_group("cpu"):
        config = resolve_config({"data": "unused", "model": dict(backbone="smallcnn", weights="none", dim=16, bits=16, freeze_bn=True)})
        torch.manual_seed(0)
        model = HashingModel(ModelConfig(**config.to_dict()["model"]))
        objective = HashingObjective(config, CLASSES)
        step = TrainingStep(model, model, objective)
        if world_size() > 1 and not chunk:
            step = torch.nn.parallel.DistributedDataParallel(step, find_unused_parameters=True)
        generator = torch.Generator().manual_seed(1)
        images = torch.randn(BATCH, 3, 32, 32, generator=generator)
        labels = torch.arange(BATCH) % CLASSES
        mine = rank_share(list(range(BATCH)))
        model.train()
        before = {name: value.clone() for name, value in [*model.state_dict().items(), *objective.state_dict().items()]}
        if chunk:
            loss, parts = chunked_step(step, images[mine], labels[mine], chunk, False, True, False, torch.device("cpu"))
            average_gradients(step.parameters())
        else:
            loss, parts = step(images[mine], labels[mine], False, True, False, torch.device("cpu"))
            loss.backward()
        optimizer = torch.optim.SGD([*model.parameters(), *objective.parameters()], lr=0.1)
        optimizer.step()
        if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
            after = {**model.state_dict(), **objective.state_dict()}
            updates = {name: after[name] - before[name] for name in after if after[name].dtype.is_floating_point}
            torch.save({"loss": loss.detach(), "parts": parts, "updates": updates}, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
