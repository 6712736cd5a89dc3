"""The training loop: the paper's recipe, evaluation of float and hash codes, resumable run directory."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hashpa import __version__
from hashpa.data.retrieval_split import RetrievalSplit
from hashpa.devices import distance_device, resolve_device
from hashpa.distributed import average_gradients, barrier, broadcast_module, global_total, is_main_process, process_group, rank_device, world_size
from hashpa.embed import embed_all, embed_labelled
from hashpa.errors import HashpaError
from hashpa.fileio import remove_temporaries
from hashpa.losses.registry import MULTI_LABEL_LOSSES
from hashpa.metrics.retrieval import model_scores
from hashpa.models.hashing_model import HashingModel
from hashpa.outputs import check_folder, claim_folder
from hashpa.quantizers import enough_rows
from hashpa.runs.checkpoints import load_checkpoint
from hashpa.runs.config import RECIPE_PURPOSES, TrainConfig
from hashpa.runs.data import run_split
from hashpa.runs.directory import RunDir
from hashpa.training.checkpoints import BestPolicy, repair_best, save_checkpoints
from hashpa.training.chunked import chunked_step
from hashpa.training.code_stage import CodeStageSettings, choose_objective, code_features, fit_code_stage, start_head_from_itq
from hashpa.training.inputs import training_batches
from hashpa.training.objective import HashingObjective
from hashpa.training.processes import TrainingStep, main_lock, on_main
from hashpa.training.progress import code_stage_line, epoch_line, start_line, warn_code_stage_skipped
from hashpa.training.relaxation import binary_fraction
from hashpa.training.start import start_scores

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
        self._fit_batch_to_data()
        self.run = RunDir(config.out)
        torch.manual_seed(config.seed)
        self.model = HashingModel(config.model).to(self.device)
        self._check_itq_possible()
        self.channels_last = config.channels_last and self.device.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        forward = torch.compile(self.model) if config.compile else self.model
        self.multi_label = self.split.multi_label
        if self.multi_label:
            self._check_multi_label()
        self.inputs = training_batches(config, self.split.train, self.model.preprocessing, self.device, len(self.split.train_classes))
        self.objective = HashingObjective(config, len(self.split.train_classes)).to(self.device)
        self.step = self.plain_step = TrainingStep(self.model, forward, self.objective)
        if world_size() > 1:  # gradients averaged over the ranks; the frozen backbone of the warm-up leaves some unused
            self.step = torch.nn.parallel.DistributedDataParallel(
                self.step, device_ids=[self.device.index] if self.device.type == "cuda" else None, find_unused_parameters=config.warmup_epochs > 0)
        self.optimizer = self._optimizer()
        self._code_side = {id(p) for p in [*self.model.hash_head.parameters(), *self.objective.code_metric.parameters()]}
        self.epoch = 0
        self.codes_fitted_at: int | None = None  # the epoch after which the code stage last ran
        self.best = BestPolicy(config.best_metric)
        self.history: list[dict] = []
        self.unreadable: set[str] = {path for path, _ in self.unusable}  # files that could not be read, in training or in evaluation

    def _fit_batch_to_data(self) -> None:
        """A training set smaller than the batch trains with the largest batch it fills (a multiple of --per-class)."""
        c, images = self.config, len(self.split.train)
        if c.batch_size % world_size():
            raise HashpaError(f"--batch-size {c.batch_size} is the global batch of all {world_size()} processes: make it a multiple of {world_size()}")
        if images >= c.batch_size:
            return
        step = c.per_class * world_size() // math.gcd(c.per_class, world_size()) if c.per_class else world_size()
        fitted = images - images % step
        if fitted < 2:
            raise HashpaError(f"{self.split.description}: {images} training images cannot form a batch (--per-class {c.per_class})")
        log.info("the training split has %d images, fewer than --batch-size %d: training with batches of %d", images, c.batch_size, fitted)
        c.batch_size = fitted

    def _check_itq_possible(self) -> None:
        """PCA-ITQ (the head's start after the warm-up and in the code stage) needs at least as many input dimensions as bits."""
        c, inputs = self.config, self.model.hash_head.in_features
        if not self.model.hash_head.projects:
            if c.hash_init == "itq" or c.code_epochs:
                log.info("the codes are the signs of the embedding itself (--no-hash-projection): no hash projection to start "
                         "from PCA-ITQ or to fit in a code stage")
            return
        if (c.hash_init == "itq" or c.code_epochs) and inputs < c.model.bits:
            raise HashpaError(
                f"--bits {c.model.bits} is more than the {inputs} dimensions the hash head reads: its PCA-ITQ start needs "
                f"at least as many; raise --dim to {c.model.bits} or more, or pass --hash-source features, "
                "or --hash-init random --code-epochs 0"
            )

    def _check_multi_label(self) -> None:
        """Multi-label data trains with the losses that take multi-labels; its code stage is skipped."""
        c = self.config
        unable = [f"--{flag} {name}" for flag, name in (("loss", c.loss), ("code-loss", c.code_loss)) if name not in MULTI_LABEL_LOSSES]
        if unable:
            raise HashpaError(f"{self.split.description} is multi-label: {' and '.join(unable)} take one class per image; "
                              f"use {', '.join(MULTI_LABEL_LOSSES)}")
        if c.code_epochs and self.model.hash_head.projects:
            log.info("multi-label data: the code stage (which holds out classes and starts proxies at class means) is skipped; "
                     "the codes are the jointly trained head's")

    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        groups = self.model.parameter_groups()
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
        self.model.load_state_dict(state["model"])
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
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best": self.best.best,
            "preprocessing": self.model.preprocessing.to_dict(),
            "train_classes": list(self.split.train_classes),
        }

    # ---- loop ----------------------------------------------------------------------------

    def announce(self) -> None:
        """The run's first lines: the data, the split and the settings."""
        c, model = self.config, self.config.model
        if self.unusable:
            shown = "; ".join(f"{path} ({why})" for path, why in self.unusable[:3])
            log.warning("%d image files cannot be read and are left out: %s%s", len(self.unusable), shown, " ..." if len(self.unusable) > 3 else "")
        log.info("data: %s: %s", self.split.description, self.split.summary())
        recipe = f"preset {c.preset} ({RECIPE_PURPOSES[c.preset]})" if c.preset in RECIPE_PURPOSES else "no preset"
        log.info("settings: %s; %s (%s weights) at %d px, %d epochs, batch %d, %d-bit codes, %d-d embedding, on %s",
                 recipe, model.backbone, model.weights, self.model.preprocessing.input_size, c.epochs, c.batch_size, model.bits, model.dim,
                 self.device)

    def fit(self) -> TrainResult:
        """Train to config.epochs, then the code stage. Under torchrun every rank trains its share of
        each batch; rank 0 alone evaluates, runs the code stage and writes the run directory, while
        the others wait."""
        c, main = self.config, is_main_process()
        if main:
            self.announce()
        if c.baseline and self.epoch == 0 and not self.started:
            if main:
                record = self.evaluate_start()
                self._record(record, start_line(record, c.model.bits))
            barrier()
        while self.epoch < c.epochs:
            if c.hash_init == "itq" and self.epoch == c.warmup_epochs and self.model.hash_head.projects:
                self.init_hash_head_from_itq()
            record = self.train_epoch()
            if (self.epoch + 1) % c.eval_every == 0 or self.epoch + 1 == c.epochs:
                if main:
                    record.update(self.evaluate())
                barrier()
            self.epoch += 1
            record["epoch"] = self.epoch
            self._record(record, epoch_line(record, c.epochs))
        if c.code_epochs and self.codes_fitted_at != self.epoch and self.model.hash_head.projects and not self.multi_label:
            record = self.fit_codes() if main else None
            if record is not None:
                self._record(record, code_stage_line(record))
            barrier()
        return TrainResult(self.run.path, self.history, self.best.best, len(self.unreadable))

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

    def init_hash_head_from_itq(self) -> None:
        """The hash head set to PCA-ITQ of its inputs (computed by rank 0, given to every rank)."""
        started = time.perf_counter()
        log.info("hash head start: PCA-ITQ of what it reads for the %d training images", len(self.split.train))
        self.model.eval()
        started_from_itq = start_head_from_itq(self.model, self.split.train, self.device, self.config.workers, self.config.seed) if is_main_process() else True
        broadcast_module(self.model.hash_head)
        self.model.train()
        if started_from_itq:
            log.info("hash head initialised from PCA-ITQ of the %d training images (%.1f s)", len(self.split.train), time.perf_counter() - started)
        else:
            log.warning("too few readable training images for PCA-ITQ of %d bits: the hash head keeps its random initialisation", self.config.model.bits)

    def fit_codes(self) -> dict | None:
        """The code stage (hashpa.training.code_stage) on the model as it is now, then an evaluation;
        None (with a warning, the head kept as it is) when too few training images could be read."""
        c = self.config
        started = time.perf_counter()
        if not enough_rows(len(self.split.train), c.model.bits):  # before embedding anything; unreadable images are counted below
            return warn_code_stage_skipped(c.model.bits, len(self.split.train))
        features = code_features(self.model, self.split.train, c.code_views, (c.crop_scale_min, 1.0), c.hflip, self.device,
                                 max(c.batch_size, 64), c.workers, c.seed * 1000 + self.epoch)
        if not enough_rows(features.plain_rows, c.model.bits):
            return warn_code_stage_skipped(c.model.bits, features.plain_rows)
        settings = CodeStageSettings(
            objective=choose_objective(c.code_objective, self.split.train_classes, self.split.test_classes),
            epochs=c.code_epochs, lr=c.code_lr, proxy_lr=c.code_lr * c.proxy_lr_mult, weight_decay=c.weight_decay,
            batch_size=c.batch_size, alpha=c.code_alpha, margin=c.code_margin, temperature=c.distill_temperature, seed=c.seed,
            validation=c.code_validation,
        )
        stage = fit_code_stage(self.model.hash_head, features, len(self.split.train_classes), settings)
        self.codes_fitted_at = self.epoch
        record = {"epoch": self.epoch, "stage": "codes", "code_stage": stage, "seconds": round(time.perf_counter() - started, 3)}
        record.update(self.evaluate())
        return record

    def train_epoch(self) -> dict:
        c, epoch = self.config, self.epoch
        torch.manual_seed(c.seed * 1000 + epoch)  # augmentation in the main process
        factor = self.lr_factor(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        frozen = epoch < c.warmup_epochs
        self.objective.binary_fraction = binary_fraction(epoch, c.epochs)
        self.model.train()
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
        weights = [*self.model.state_dict().values(), *self.objective.state_dict().values()]  # parameters and BatchNorm statistics
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

    def evaluate(self) -> dict:
        """Recall@K, tie-aware Recall@K (codes) and MAP@R of the float embeddings and the codes on the test split."""
        started = time.perf_counter()
        queries, gallery = self._embed_test("embed")
        results = model_scores(queries, gallery, distance_device(self.device))
        results["eval_seconds"] = round(time.perf_counter() - started, 3)
        return results

    def evaluate_start(self) -> dict:
        """Epoch 0, the starting model before any training: its float embeddings and codes, and the
        backbone's own pooled features with PCA-ITQ codes of them (``start_scores``): the baseline
        training must beat."""
        started = time.perf_counter()
        log.info("epoch 0: evaluating the starting model and its backbone's features (the baseline)")
        queries, gallery = self._embed_test("embed_and_features")
        train = embed_all(self.model, self.split.train, self.device, output="features", progress="training images' features",
                          **self._loader())[0]
        self.model.train()
        record = {"epoch": 0, "stage": "start", **model_scores(queries, gallery, distance_device(self.device)),
                  **start_scores(train, queries, gallery, self.config.model.bits, distance_device(self.device))}
        record["seconds"] = round(time.perf_counter() - started, 3)
        return record

    def _loader(self) -> dict:
        return dict(batch_size=max(self.config.batch_size, 64), workers=self.config.workers)

    def _embed_test(self, output: str):
        """(queries, gallery or None) of the test split embedded as `output` says; unreadable files are noted."""
        classes = len(self.split.test_classes)
        queries = embed_labelled(self.model, self.split.test, self.device, classes, progress="evaluating" if is_main_process() else None,
                                 output=output, **self._loader())
        gallery = None if self.split.gallery is None else embed_labelled(self.model, self.split.gallery, self.device, classes, output=output,
                                                                          **self._loader())
        for samples, embedded in ((self.split.test, queries), (self.split.gallery, gallery)):
            if embedded is not None:
                self.unreadable.update(str(samples[i].path) for i in set(range(len(samples))) - set(embedded.positions.tolist()))
                if not np.isfinite(embedded.embeddings).all():
                    raise self._diverged(f"the model's outputs on the test images became NaN or infinite (epoch {self.epoch + 1})")
        self.model.train()
        return queries, gallery


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
