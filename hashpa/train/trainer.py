"""The training loop: the paper's recipe, evaluation of float and hash codes, resumable run directory."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from hashpa import __version__
from hashpa.data import builtin_dataset, load_paper_dataset, split_dirs, split_folder
from hashpa.data.augment import augment_batch
from hashpa.data.cache import decoded_images
from hashpa.data.folder import ImageDataset, collate_skipping, usable_workers
from hashpa.data.samplers import ClassBalancedBatches, ShuffledBatches
from hashpa.data.splits import RetrievalSplit
from hashpa.data.transforms import test_resize, train_transform
from hashpa.errors import HashpaError
from hashpa.eval.metrics import RECALL_KS, model_scores
from hashpa.inference import autocast, embed_all, embed_labelled, resolve_device
from hashpa.models.hashing_model import HashingModel
from hashpa.quantizers import fit_itq
from hashpa.train.code_stage import CodeStageSettings, choose_objective, code_features, fit_code_stage, set_head_to_hasher
from hashpa.train.config import TrainConfig
from hashpa.train.distributed import is_main_process
from hashpa.train.objective import HashingObjective
from hashpa.train.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict]
    best: dict = field(default_factory=dict)  # {"epoch", "metric", "value"}
    skipped_images: int = 0


def build_split(config: TrainConfig) -> RetrievalSplit:
    """The train/test split the config names."""
    if config.dataset == "builtin":
        return split_folder(builtin_dataset(), config.split, config.test_fraction, config.seed)
    if config.dataset == "folder":
        if config.split == "dirs" or config.train_dir or config.test_dir:
            if not (config.train_dir and config.test_dir):
                raise HashpaError("give both --train-dir and --test-dir")
            return split_dirs(config.train_dir, config.test_dir)
        if not config.data:
            raise HashpaError("no image folder given: pass --data DIR (or leave it out to train on the built-in dataset)")
        return split_folder(config.data, config.split, config.test_fraction, config.seed)
    if not config.root:
        raise HashpaError(f"--dataset {config.dataset} needs --root, the folder holding the dataset")
    return load_paper_dataset(config.dataset, config.root)


class Trainer:
    def __init__(self, config: TrainConfig, split: RetrievalSplit | None = None):
        self.config = config.check()
        self.device = resolve_device(config.device)
        self.split = split or build_split(config)
        self.run = RunDir(config.out)
        torch.manual_seed(config.seed)
        self.model = HashingModel(config.model).to(self.device)
        self._check_itq_possible()
        self.channels_last = config.channels_last and self.device.type == "cuda"
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.data_path = config.data_path if config.data_path != "auto" else ("cache" if self.device.type == "cuda" else "files")
        self._decoded = None
        self.objective = HashingObjective(config, len(self.split.train_classes)).to(self.device)
        self.optimizer = self._optimizer()
        self._code_side = {id(p) for p in [*self.model.hash_head.parameters(), *self.objective.code_metric.parameters()]}
        self.epoch = 0
        self.codes_fitted_at: int | None = None  # the epoch after which the code stage last ran
        self.best: dict = {}
        self.history: list[dict] = []
        self.skipped = 0

    def _check_itq_possible(self) -> None:
        """PCA-ITQ (the head's start after the warm-up and in the code stage) needs at least as many input dimensions as bits."""
        c, inputs = self.config, self.model.hash_head.linear.in_features
        if (c.hash_init == "itq" or c.code_epochs) and inputs < c.model.bits:
            raise HashpaError(
                f"--bits {c.model.bits} is more than the {inputs} dimensions the hash head reads: its PCA-ITQ start needs "
                f"at least as many; raise --dim to {c.model.bits} or more, or pass --hash-source features, "
                "or --hash-init random --code-epochs 0"
            )

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
        if self.run.has_checkpoint():
            raise HashpaError(
                f"{self.run.path} already holds a training run: continue it with --resume {self.run.path}, "
                "or choose another --out"
            )
        self.run.path.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            self.run.write_config(self.config)
            self.run.keep_history_until(0)

    def restore(self) -> None:
        state = self.run.load("last", map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.best = state["epoch"], state["best"]
        self.codes_fitted_at = state.get("codes_fitted_at")
        self.history = self.run.keep_history_until(self.epoch, code_stage_done=self.codes_fitted_at == self.epoch)
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
            "best": self.best,
            "preprocessing": self.model.preprocessing.to_dict(),
            "train_classes": list(self.split.train_classes),
        }

    # ---- loop ----------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        c = self.config
        while self.epoch < c.epochs:
            if c.hash_init == "itq" and self.epoch == c.warmup_epochs:
                self.init_hash_head_from_itq()
            record = self.train_epoch()
            if (self.epoch + 1) % c.eval_every == 0 or self.epoch + 1 == c.epochs:
                record.update(self.evaluate())
            self.epoch += 1
            record["epoch"] = self.epoch
            self._record(record, _epoch_line(record, c.epochs))
        if c.code_epochs and self.codes_fitted_at != self.epoch:
            record = self.fit_codes()
            if record is not None:
                self._record(record, _code_stage_line(record))
        return TrainResult(self.run.path, self.history, self.best, self.skipped)

    def _record(self, record: dict, line: str) -> None:
        """Append `record` to the history, checkpoint (last, and best if it improved) and log `line`."""
        improved = self._update_best(record)
        if is_main_process():
            self.run.append_history(record)
            self.history.append(record)
            state = self._state()
            self.run.save(state, "last")
            if improved:
                self.run.save(state, "best")
            log.info(line)

    def fit_codes(self) -> dict | None:
        """The code stage (hashpa.train.code_stage) on the model as it is now, then an evaluation;
        None (with a warning, the head kept as it is) when too few training images could be read."""
        c = self.config
        started = time.perf_counter()
        if len(self.split.train) <= c.model.bits:  # before embedding anything; unreadable images are counted below
            return _skip_code_stage(c.model.bits, len(self.split.train))
        features = code_features(self.model, self.split.train, c.code_views, (c.crop_scale_min, 1.0), c.hflip, self.device,
                                 max(c.batch_size, 64), c.workers, c.seed * 1000 + self.epoch)
        if features.plain_rows <= c.model.bits:
            return _skip_code_stage(c.model.bits, features.plain_rows)
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
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        steps = images = skipped = 0
        started = time.perf_counter()
        batches = self._cached_batches(epoch) if self.data_path == "cache" else self._file_batches(epoch)
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{c.epochs}", unit="batch", leave=False, disable=None if is_main_process() else True)
        for inputs, labels, unreadable in bar:
            skipped += unreadable
            if len(labels) < 2:
                continue
            if self.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, c.amp):
                output = self.forward(inputs, freeze_backbone=frozen, detach_hash_input=not c.codes_train_backbone)
            loss, parts = self.objective(output, labels)
            if not torch.isfinite(loss):
                raise HashpaError(f"the loss became {float(loss)} at epoch {epoch + 1}, step {steps + 1}: lower --lr or --alpha")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
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
        self.skipped += skipped
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

    def _sampler(self, labels: list[int], epoch: int):
        c = self.config
        sampler = (
            ClassBalancedBatches(labels, c.batch_size, c.per_class, c.seed) if c.per_class
            else ShuffledBatches(len(labels), c.batch_size, c.seed)
        )
        sampler.set_epoch(epoch)
        return sampler

    def _file_batches(self, epoch: int):
        """Decode and augment in DataLoader workers (PIL), one image at a time."""
        c = self.config
        size = self.model.preprocessing.input_size
        dataset = ImageDataset(self.split.train, train_transform(self.model.preprocessing, size, (c.crop_scale_min, 1.0), c.hflip))
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self._sampler([s.label for s in self.split.train], epoch), num_workers=usable_workers(c.workers),
            collate_fn=collate_skipping, pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(c.seed * 1000 + epoch),
        )
        for batch in loader:
            yield batch.images.to(self.device, non_blocking=True), batch.labels.to(self.device, non_blocking=True), batch.skipped

    def _cached_batches(self, epoch: int):
        """Images decoded once (hashpa.data.cache), cropped and flipped a whole batch at a time on the device."""
        c = self.config
        preprocessing = self.model.preprocessing
        if self._decoded is None:
            decoded = decoded_images(self.split.train, test_resize(preprocessing.input_size), c.workers)
            self._decoded = decoded.to(self.device) if self.device.type == "cuda" and _fits_on_gpu(decoded.images) else decoded
        data = self._decoded
        generator = torch.Generator().manual_seed(c.seed * 1000 + epoch)
        for indices in self._sampler(data.labels.tolist(), epoch):
            index = torch.tensor(indices, device=data.images.device)
            images = data.images[index].to(self.device, non_blocking=True)
            inputs = augment_batch(images, preprocessing.input_size, preprocessing, (c.crop_scale_min, 1.0), c.hflip, generator)
            yield inputs, data.labels[index].to(self.device, non_blocking=True), 0

    @torch.no_grad()
    def init_hash_head_from_itq(self) -> None:
        """Set the hash head to PCA-ITQ of its inputs over the training images (test transform).

        Measured on Flowers-102 (BENCHMARKS.md): a randomly initialised head trained by the code
        losses ends below PCA-ITQ codes of the same embedding; starting from them it does not.
        """
        started = time.perf_counter()
        self.model.eval()
        x = embed_all(self.model, self.split.train, self.device, workers=self.config.workers, hash_inputs=True)[0]
        self.model.train()
        if len(x) <= self.config.model.bits:
            log.warning("only %d training images: the hash head keeps its random initialisation (PCA-ITQ needs more than %d)", len(x), self.config.model.bits)
            return
        set_head_to_hasher(self.model.hash_head, fit_itq(x, self.config.model.bits, seed=self.config.seed), x)
        log.info("hash head initialised from PCA-ITQ of %d training embeddings (%.1f s)", len(x), time.perf_counter() - started)

    def _clipping_sides(self) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
        """The parameters with gradients, split into the float side (backbone, embedding head, metric
        proxies) and the code side (hash head, code proxies). Each side is clipped on its own, so
        code terms that train only the head never rescale the backbone's steps."""
        trainable = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        return [p for p in trainable if id(p) not in self._code_side], [p for p in trainable if id(p) in self._code_side]

    def evaluate(self) -> dict:
        """Recall@K, tie-aware Recall@K (codes) and MAP@R of the float embeddings and the codes on the test split."""
        started = time.perf_counter()
        loader_args = dict(device=self.device, batch_size=max(self.config.batch_size, 64), workers=self.config.workers)
        queries = embed_labelled(self.model, self.split.test, progress="evaluating" if is_main_process() else None, **loader_args)
        gallery = None if self.split.gallery is None else embed_labelled(self.model, self.split.gallery, **loader_args)
        results = model_scores(queries, gallery, str(self.device) if self.device.type == "cuda" else None)
        results["eval_seconds"] = round(time.perf_counter() - started, 3)
        self.model.train()
        return results

    def _update_best(self, record: dict) -> bool:
        metric = self.config.best_metric
        if metric not in record:
            return False
        value = record[metric]["recall@1"]
        if self.best and value <= self.best["value"]:
            return False
        self.best = {"epoch": record["epoch"], "metric": f"{metric} recall@1", "value": value,
                     "float": record["float"]["recall@1"], "codes": record["codes"]["recall@1"]}
        if "stage" in record:
            self.best["stage"] = record["stage"]
        return True


def _fits_on_gpu(images: torch.Tensor) -> bool:
    free, _ = torch.cuda.mem_get_info()
    return images.numel() < 0.3 * free


def _epoch_line(record: dict, epochs: int) -> str:
    line = f"epoch {record['epoch']}/{epochs}: loss {record['loss']['total']:.4f}, {record['images_per_second']:.0f} img/s"
    if "float" in record:
        line += (
            f" | Recall@1/2/4/8 float {_recalls(record['float'])}"
            f" | codes {_recalls(record['codes'])}"
        )
    return line


def _skip_code_stage(bits: int, images: int) -> None:
    log.warning("code stage skipped: it starts from PCA-ITQ, which needs more than %d training images, found %d; "
                "the jointly trained hash head is kept", bits, images)


def _code_stage_line(record: dict) -> str:
    stage = record["code_stage"]
    chosen = f", {stage['validation']['epochs']} epochs chosen on held-out images" if stage.get("validation") else ""
    return (f"code stage ({stage['objective']}{chosen}, {stage['steps']} steps, {record['seconds']:.0f} s)"
            f" | Recall@1/2/4/8 float {_recalls(record['float'])} | codes {_recalls(record['codes'])}")


def _recalls(metrics: dict) -> str:
    return "/".join(f"{metrics[f'recall@{k}']:.3f}" if f"recall@{k}" in metrics else "-" for k in RECALL_KS)


def train(config: TrainConfig) -> TrainResult:
    """Train from scratch into config.out (which must not hold a run yet)."""
    trainer = Trainer(config)
    trainer.start()
    return trainer.fit()


def resume(run_dir: str | Path, epochs: int | None = None, device: str | None = None, workers: int | None = None) -> TrainResult:
    """Continue the run in `run_dir` from its last checkpoint (optionally to more epochs)."""
    run = RunDir(run_dir)
    config = run.read_config()
    if not run.has_checkpoint():
        raise HashpaError(f"{run_dir} has no checkpoint to resume from (last.pt); start it again without --resume")
    config.out = str(run.path)
    for key, value in (("epochs", epochs), ("device", device), ("workers", workers)):
        if value is not None:
            setattr(config, key, value)
    trainer = Trainer(config)
    trainer.restore()
    if is_main_process():
        run.write_config(config)
    return trainer.fit()
