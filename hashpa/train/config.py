"""Training configuration as data: one dataclass, presets that fit each kind of data, JSON round trip."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from hashpa.errors import HashpaError
from hashpa.models.hashing_model import ModelConfig

CODE_OBJECTIVES = ("auto", "proxy_anchor", "distill")
# Settings added after run directories were first written: a saved config without one gets the value
# that reproduces what its run did, not today's default.
LEGACY_DEFAULTS = {"code_validation": 0.0}


@dataclass
class TrainConfig:
    # data: an image folder (--data), the built-in set, or a paper dataset under --root
    dataset: str = "builtin"  # builtin | folder | cub | cars | sop | inshop
    data: str | None = None
    root: str | None = None
    split: str = "half"  # half | seen | dirs
    train_dir: str | None = None
    test_dir: str | None = None
    test_fraction: float = 0.2
    # model
    model: ModelConfig = field(default_factory=ModelConfig)
    # losses: the float embedding's metric loss, and Proxy Anchor on the relaxed codes tanh(h)
    loss: str = "proxy_anchor"  # proxy_anchor | proxy_nca | ms
    alpha: float = 32.0
    margin: float = 0.1
    code_alpha: float = 32.0
    code_weight: float = 1.0
    quantization_weight: float = 0.1
    distill_weight: float = 1.0
    distill_temperature: float = 0.1
    decorrelation_weight: float = 10.0
    codes_train_backbone: bool = False  # let the code losses' gradients reach the embedding and backbone
    hash_init: str = "itq"  # itq: after the warm-up, start the hash head from PCA-ITQ of the training embeddings; random
    # the code stage after the last epoch (hashpa.train.code_stage): the hash head fitted to the frozen model
    code_epochs: int = 15  # 0: no code stage
    code_views: int = 3  # augmented passes over the training images, besides the plain one
    code_objective: str = "auto"  # auto | proxy_anchor | distill
    code_lr: float = 1e-3
    code_margin: float = 0.3
    code_validation: float = 0.2  # fraction of training images (classes, for distill) held out to choose the epochs; 0: all epochs
    # optimisation (the paper's recipe)
    epochs: int = 60
    batch_size: int = 180
    per_class: int = 0  # >0: class-balanced batches of per_class images per class
    lr: float = 1e-4
    weight_decay: float = 1e-4
    proxy_lr_mult: float = 100.0
    warmup_epochs: int = 1  # epochs with the backbone frozen
    schedule: str = "step"  # step | cosine
    lr_decay_step: int = 10
    lr_decay_gamma: float = 0.5
    clip_grad: float = 10.0
    # augmentation
    crop_scale_min: float = 0.08
    hflip: bool = True
    # run
    eval_every: int = 1
    best_metric: str = "codes"  # codes | float: which Recall@1 picks the best checkpoint
    seed: int = 0
    device: str = "auto"
    workers: int = 4
    out: str = "runs/latest"
    amp: bool = True  # bf16 autocast on CUDA
    data_path: str = "auto"  # files: decode JPEGs in DataLoader workers; cache: decode once, augment batches on the device; auto: cache on CUDA
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = dict(values)
        model = ModelConfig(**values.pop("model", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise HashpaError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(model=model, **values)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        try:
            return cls.from_dict({**LEGACY_DEFAULTS, **json.loads(Path(path).read_text())})
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise HashpaError(f"cannot read the training config {path}: {error}") from None

    def check(self) -> "TrainConfig":
        self.model.check()
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.schedule in ("step", "cosine"), f"--schedule must be step or cosine, got {self.schedule!r}"),
            (self.best_metric in ("codes", "float"), f"best_metric must be codes or float, got {self.best_metric!r}"),
            (0 < self.crop_scale_min <= 1, f"crop_scale_min must be in (0, 1], got {self.crop_scale_min}"),
            (self.eval_every >= 1, f"--eval-every must be >= 1, got {self.eval_every}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            (self.data_path in ("auto", "files", "cache"), f"--data-path must be auto, files or cache, got {self.data_path!r}"),
            (self.hash_init in ("itq", "random"), f"--hash-init must be itq or random, got {self.hash_init!r}"),
            (self.code_epochs >= 0, f"--code-epochs must be >= 0, got {self.code_epochs}"),
            (self.code_views >= 0, f"--code-views must be >= 0, got {self.code_views}"),
            (self.code_objective in CODE_OBJECTIVES, f"--code-objective must be one of {', '.join(CODE_OBJECTIVES)}, got {self.code_objective!r}"),
            (self.code_lr > 0, f"--code-lr must be positive, got {self.code_lr}"),
            (0 <= self.code_validation < 1, f"--code-validation must be in [0, 1), got {self.code_validation}"),
        ]
        for ok, message in checks:
            if not ok:
                raise HashpaError(message)
        return self


# What fits each kind of data when the user does not say otherwise.
PRESETS: dict[str, dict] = {
    # 1,797 32-px digits on a CPU: a small CNN from scratch, a minute or two.
    "builtin": dict(
        split="seen", epochs=12, batch_size=64, lr=2e-3, warmup_epochs=0, lr_decay_step=5, crop_scale_min=0.6, hflip=False,
        workers=0, eval_every=2, model=dict(backbone="smallcnn", weights="none", dim=64),
    ),
    # A user's photos: a pretrained backbone (offline ImageNet weights with hashpa[lite]).
    "folder": dict(epochs=30, model=dict(backbone="tf_efficientnet_lite0", weights="imagenet")),
    # The paper's settings (its README's commands).
    "cub": dict(epochs=60, warmup_epochs=1, lr=1e-4, lr_decay_step=10, model=dict(backbone="bn_inception", weights="imagenet", freeze_bn=True)),
    "cars": dict(epochs=60, warmup_epochs=1, lr=1e-4, lr_decay_step=20, model=dict(backbone="bn_inception", weights="imagenet", freeze_bn=True)),
    "sop": dict(epochs=60, warmup_epochs=1, lr=6e-4, lr_decay_step=20, lr_decay_gamma=0.25, model=dict(backbone="bn_inception", weights="imagenet")),
    "inshop": dict(epochs=60, warmup_epochs=1, lr=6e-4, lr_decay_step=20, lr_decay_gamma=0.25, model=dict(backbone="bn_inception", weights="imagenet")),
}


def resolve_config(dataset: str, overrides: dict) -> TrainConfig:
    """Defaults, then the preset of `dataset`, then the user's `overrides` (None values ignored).

    Model settings may be given flat (``bits=64``) or under ``model``.
    """
    if dataset not in PRESETS:
        raise HashpaError(f"unknown dataset kind {dataset!r}; choose one of {', '.join(PRESETS)}")
    values = TrainConfig().to_dict()
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for layer in (PRESETS[dataset], {"dataset": dataset}, overrides):
        for key, value in layer.items():
            if value is None:
                continue
            if key == "model":
                values["model"].update({k: v for k, v in value.items() if v is not None})
            elif key in model_fields:
                values["model"][key] = value
            else:
                values[key] = value
    return TrainConfig.from_dict(values).check()
