"""The training loop: the paper's recipe over the epochs, then the code stage, each epoch evaluated
(``evaluation``) and checkpointed into a resumable run directory; ``train`` and ``resume``."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from hashpa import __version__
from hashpa.data.retrieval_split import RetrievalSplit
from hashpa.devices import resolve_device
from hashpa.distributed import average_gradients, barrier, global_total, is_main_process, process_group, rank_device
from hashpa.errors import HashpaError
from hashpa.fileio import remove_temporaries
from hashpa.models.hashing_model import HashingModel
from hashpa.outputs import check_folder, claim_folder
from hashpa.runs.checkpoints import load_checkpoint
from hashpa.runs.config import TrainConfig
from hashpa.runs.data import run_split
from hashpa.runs.directory import RunDir
from hashpa.training.checkpoints import BestPolicy, repair_best, save_checkpoints
from hashpa.training.checks import check_itq_possible, check_multi_label, fit_batch_to_data
from hashpa.training.chunked import chunked_step
from hashpa.training.code_steps import run_code_stage, start_hash_head
from hashpa.training.evaluation import RunEvaluation
from hashpa.training.inputs import training_batches
from hashpa.training.objective import build_objective
from hashpa.training.processes import TrainingStep, across_ranks, main_lock, on_main
from hashpa.training.progress import announce, code_stage_line, epoch_line, start_line
from hashpa.training.relaxation import binary_fraction

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict]
    best: dict = field(default_factory=dict)  # {"epoch", "metric", "value", "float", "codes"[, "stage"]}
    skipped_images: int = 0


class Trainer:
    def __init__(self, config: TrainConfig, split: RetrievalSplit | None = None):
        self.config = config.check()
        self.device = rank_device(resolve_device(config.device))
        self.split, self.unusable = (split or run_split(config)).without_unreadable()
        fit_batch_to_data(config, self.split)
        self.run = RunDir(config.out)
        torch.manual_seed(config.seed)
        self.network = HashingModel(config.model).to(self.device)
        check_itq_possible(config, self.network)
        self.channels_last = config.channels_last and self.device.type == "cuda"
        if self.channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        forward = torch.compile(self.network) if config.compile else self.network
        self.multi_label = self.split.multi_label
        if self.multi_label:
            check_multi_label(config, self.split, self.network)
        self.inputs = training_batches(config, self.split.train, self.network.preprocessing, self.device, len(self.split.train_classes))
        self.objective = build_objective(config, len(self.split.train_classes)).to(self.device)
        self.plain_step = TrainingStep(self.network, forward, self.objective)
        self.step = across_ranks(self.plain_step, self.device, config.warmup_epochs)
        self.optimizer = self._optimizer()
        self._code_side = {id(p) for p in [*self.network.hash_head.parameters(), *self.objective.code_metric.parameters()]}
        self.epoch = 0
        self.codes_fitted_at: int | None = None  # the epoch after which the code stage last ran
        self.best = BestPolicy(config.best_metric)
        self.history: list[dict] = []
        self.unreadable: set[str] = {path for path, _ in self.unusable}  # files that could not be read in training
        self.evaluation = RunEvaluation(self.network, self.split, self.device, config.model.bits, config.batch_size, config.workers, self._diverged)

    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        groups = self.network.parameter_groups()
        proxies = [p for name, p in self.objective.named_parameters() if name.endswith("proxies")]
        others = [p for name, p in self.objective.named_parameters() if not name.endswith("proxies")]
        param_groups = [
            {"params": groups["backbone"], "lr": c.lr, "name": "backbone"},
            {"params": groups["heads"] + others, "lr": c.lr, "name": "heads"},
            {"params": proxies, "lr": c.lr * c.proxy_lr_mult, "name": "proxies"},
        ]
        for group in param_groups:
            group["base_lr"] = group["lr"]
        return torch.optim.AdamW([g for g in param_groups if g["params"]], weight_decay=c.weight_decay)

    def lr_factor(self, epoch: int) -> float:
        c = self.config
        if c.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * epoch / c.epochs))
        return c.lr_decay_gamma ** (epoch // c.lr_decay_step)

    # ---- run directory -------------------------------------------------------------------

    def start(self) -> None:
        if is_main_process():
            claim_folder(self.run.path, "run")
        if self.run.has_checkpoint():
            raise HashpaError(
                f"{self.run.path} already holds a training run: continue it with --resume {self.run.path}, "
                "or choose another --out"
            )
        if self.run.checkpoint_path("best").exists():  # a model, but nothing to resume from: never overwrite it
            raise HashpaError(f"{self.run.path} holds best.pt of an earlier run but no last.pt to resume it from: "
                              "choose another --out (or move best.pt away)")
        if is_main_process():
            self.run.check_fresh_start()
            self.run.path.mkdir(parents=True, exist_ok=True)
            self.run.write_config(self.config)
            self.run.start_history()
        barrier()

    def restore(self) -> None:
        if is_main_process():
            remove_temporaries(self.run.path)
            repair_best(self.run)
        barrier()
        state = load_checkpoint(self.run.checkpoint_path("last"), map_location=self.device)
        self.network.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.best = state["epoch"], BestPolicy(self.config.best_metric, state["best"])
        self.codes_fitted_at = state.get("codes_fitted_at")
        kept = self.run.keep_history_until(self.epoch, code_stage_done=self.codes_fitted_at == self.epoch) if is_main_process() else None
        barrier()
        self.history = kept if kept is not None else self.run.read_history()
        log.info("resuming %s after epoch %d", self.run.path, self.epoch)

    def _state(self) -> dict:
        return {
            "hashpa_version": __version__,
            "epoch": self.epoch,
            "codes_fitted_at": self.codes_fitted_at,
            "config": self.config.to_dict(),
            "model": self.network.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best": self.best.best,
            "preprocessing": self.network.preprocessing.to_dict(),
            "train_classes": list(self.split.train_classes),
        }

    # ---- loop ----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train to config.epochs, then the code stage. Under torchrun every rank trains its share of
        each batch; rank 0 alone evaluates, runs the code stage and writes the run directory, while
        the others wait."""
        c, main = self.config, is_main_process()
        if main:
            announce(self.split, self.unusable, c, self.network.preprocessing.input_size, self.device)
        if c.baseline and self.epoch == 0 and not self.started:
            if main:
                record = self.evaluation.start()
                self._record(record, start_line(record, c.model.bits))
            barrier()
        while self.epoch < c.epochs:
            if c.hash_init == "itq" and self.epoch == c.warmup_epochs and self.network.hash_head.projects:
                start_hash_head(self.network, self.split, c, self.device)
            record = self.train_epoch()
            if c.eval_every and ((self.epoch + 1) % c.eval_every == 0 or self.epoch + 1 == c.epochs):
                if main:
                    record.update(self.evaluation.scores(self.epoch))
                barrier()
            self.epoch += 1
            record["epoch"] = self.epoch
            self._record(record, epoch_line(record, c.epochs))
        if c.code_epochs and self.codes_fitted_at != self.epoch and self.network.hash_head.projects and not self.multi_label:
            record = self.fit_codes() if main else None
            if record is not None:
                self._record(record, code_stage_line(record))
            barrier()
        return TrainResult(self.run.path, self.history, self.best.best, len(self.unreadable | self.evaluation.unreadable))

    def fit_codes(self) -> dict | None:
        """The code stage on the model as it is now, then an evaluation: the history record (None when it was skipped)."""
        started = time.perf_counter()
        stage = run_code_stage(self.network, self.split, self.config, self.device, self.epoch)
        if stage is None:
            return None
        self.codes_fitted_at = self.epoch
        record = {"epoch": self.epoch, "stage": "codes", "code_stage": stage, "seconds": round(time.perf_counter() - started, 3)}
        if self.config.eval_every:
            record.update(self.evaluation.scores(self.epoch))
        return record

    @property
    def started(self) -> bool:
        """Whether the run's history holds its start (epoch 0)."""
        return any(r.get("stage") == "start" for r in self.history)

    def _record(self, record: dict, line: str) -> None:
        """Append `record` to the history, checkpoint (last, and best if it improved) and log `line` (rank 0 only)."""
        if not is_main_process():
            return
        improved = self.best.update(record)
        self.run.append_history(record)
        self.history.append(record)
        save_checkpoints(self.run, self._state(), improved)
        log.info(line)

    def train_epoch(self) -> dict:
        c, epoch = self.config, self.epoch
        torch.manual_seed(c.seed * 1000 + epoch)  # augmentation in the main process
        factor = self.lr_factor(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        frozen = epoch < c.warmup_epochs
        self.objective.binary_fraction = binary_fraction(epoch, c.epochs)
        self.objective.progress = epoch / c.epochs
        self.network.train()
        sums: dict[str, torch.Tensor] = {}
        steps = images = skipped = 0
        started = time.perf_counter()
        bar = tqdm(self.inputs.epoch(epoch), desc=f"epoch {epoch + 1}/{c.epochs}", unit="batch", leave=False, disable=None if is_main_process() else True)
        for inputs, labels, unreadable in bar:
            skipped += len(unreadable)
            self.unreadable.update(str(self.split.train[i].path) for i in unreadable)
            if len(labels) < 2:
                continue
            if self.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            loss, parts = self.gradients(inputs, labels, frozen)
            if not torch.isfinite(loss):
                raise self._diverged(f"the loss became {float(loss)} at epoch {epoch + 1}, step {steps + 1}")
            if c.clip_grad:
                for side in self._clipping_sides():
                    torch.nn.utils.clip_grad_norm_(side, c.clip_grad)
            self.optimizer.step()
            for name, value in parts.items():
                sums[name] = sums.get(name, 0) + value
            steps += 1
            images += len(labels)
            if steps % 10 == 0:
                bar.set_postfix(loss=f"{float(sums['total']) / steps:.4f}")
        seconds = time.perf_counter() - started
        weights = [*self.network.state_dict().values(), *self.objective.state_dict().values()]  # parameters and BatchNorm statistics
        if not all(torch.isfinite(w).all() for w in weights if w.is_floating_point()):
            raise self._diverged(f"the model's weights became NaN or infinite during epoch {epoch + 1}")
        skipped, images = (int(v) for v in global_total(torch.tensor([skipped, images])))  # every rank's share
        if skipped:
            log.warning("epoch %d: skipped %d unreadable images", epoch + 1, skipped)
        if steps == 0:
            raise HashpaError("no training batch could be formed: are the training images readable?")
        return {
            "lr": self.config.lr * factor,
            "backbone_frozen": frozen,
            "loss": {name: float(value) / steps for name, value in sums.items()},
            "seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 2),
            "skipped": skipped,
        }

    def gradients(self, inputs: torch.Tensor, labels: torch.Tensor, frozen: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch's loss (detached) and its parts, with its gradients in the parameters; with
        --chunk-size the backbone runs a chunk at a time (``chunked``), the gradient still the whole batch's."""
        c = self.config
        self.optimizer.zero_grad(set_to_none=True)
        if c.chunk_size and c.chunk_size < len(inputs):
            loss, parts = chunked_step(self.plain_step, inputs, labels, c.chunk_size, frozen, not c.codes_train_backbone, c.amp, self.device)
            average_gradients(self.plain_step.parameters())  # back-propagated outside DistributedDataParallel's forward
            return loss, parts
        loss, parts = self.step(inputs, labels, frozen, not c.codes_train_backbone, c.amp, self.device)
        loss.backward()
        return loss.detach(), parts

    def _diverged(self, what: str) -> HashpaError:
        """The error that ends a diverging run: what happened, what to change, what is kept."""
        kept = (f"; {self.run.path} keeps epoch {self.epoch} (--resume continues from it, with its settings)" if self.run.has_checkpoint()
                else "")
        return HashpaError(f"training diverged: {what}. Lower --lr (it is {self.config.lr:g}), or --alpha ({self.config.alpha:g}), "
                           f"or a lower --clip-grad ({self.config.clip_grad:g}){kept}")

    def _clipping_sides(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """The parameters with gradients, split into the float side (backbone, embedding head, metric
        proxies) and the code side (hash head, code proxies). Each side is clipped on its own, so
        code terms that train only the head never rescale the backbone's steps."""
        trainable = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        return [p for p in trainable if id(p) not in self._code_side], [p for p in trainable if id(p) in self._code_side]



def train(config: TrainConfig) -> TrainResult | None:
    """Train from scratch into config.out (which must not hold a run yet); under torchrun, with every
    process (rank 0 returns the result, the others None)."""
    if is_main_process():
        check_folder(config.out, "run")
    with process_group(config.device):
        trainer = Trainer(config)
        with main_lock(trainer.run.path):
            trainer.start()
            return on_main(trainer.fit())


def resume(run_dir: str | Path, epochs: int | None = None, device: str | None = None, workers: int | None = None) -> TrainResult | None:
    """Continue the run in `run_dir` from its last checkpoint (optionally to more epochs); under
    torchrun rank 0 returns the result, the others None."""
    check_folder(run_dir, "run", "--resume")
    run = RunDir(run_dir)
    config = run.read_config()
    if not run.has_checkpoint():
        raise HashpaError(f"{run_dir} has no checkpoint to resume from (last.pt); start it again without --resume")
    config.out = str(run.path)
    for key, value in (("epochs", epochs), ("device", device), ("workers", workers)):
        if value is not None:
            setattr(config, key, value)
    with process_group(config.device):
        trainer = Trainer(config)
        with main_lock(run.path):
            trainer.restore()
            if is_main_process():
                run.write_config(config)
            return on_main(trainer.fit())
