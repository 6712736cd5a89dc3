"""Training configuration as data: one dataclass whose fields carry their help text (the command
line's ``train`` options are generated from it), presets that fit each kind of data, config files,
JSON round trip. No torch import: ``hashpa train --help`` reads this module."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from hashpa.data.retrieval_split import DATASET_KINDS, HASHING_DATASETS
from hashpa.errors import HashpaError
from hashpa.losses.registry import CODE_LOSS_NAMES, LOSS_NAMES
from hashpa.methods import HASHPA, METHOD_NAMES, check_method_settings, method
from hashpa.models.config import ModelConfig
from hashpa.settings import check_types, setting

CODE_OBJECTIVES = ("auto", "proxy_anchor", "orthohash", "distill")
SCHEDULES = ("step", "cosine")
BEST_METRICS = ("codes", "float")
DATA_PATHS = ("auto", "files", "cache")
HASH_INITS = ("itq", "random")
CODE_RELAXATIONS = ("tanh", "ste")  # hashpa.training.relaxation
# Settings added after run directories were first written: a saved config without one gets the value
# that reproduces what its run did, not today's default.
DATA_FROM_RUN = "data_from_run"  # config.json's record of the data folders relative to the run directory
# The settings that choose a run's images (hashpa.data.splits.build_split's arguments): where they are,
# then how they split; giving any of DATA_SOURCES for other data replaces all of them.
DATA_SETTINGS = ("dataset", "data", "labels", "root", "split", "train_dir", "test_dir", "test_fraction", "seed", "class_depth")
DATA_SOURCES = ("dataset", "data", "labels", "root", "train_dir", "test_dir")
DATA_FOLDERS = ("data", "labels", "root", "train_dir", "test_dir")  # the data settings that are paths
LEGACY_DEFAULTS = {"code_validation": 0.0, "class_depth": 1, "baseline": False, "preset": "none"}


# Named recipes: what fits a machine, layered over the dataset kind's preset (hashpa train --preset).
RECIPES: dict[str, dict] = {
    # The Flowers-102 CPU recipe of BENCHMARKS.md: 112-px crops, 6 epochs, batch 120, frozen BatchNorm.
    "cpu-quick": dict(image_size=112, epochs=6, batch_size=120, freeze_bn=True, workers=2),
    # The paper's: 224-px crops, batch 180, frozen BatchNorm, 40 epochs.
    "gpu-paper": dict(image_size=224, epochs=40, batch_size=180, freeze_bn=True, workers=8),
}
RECIPE_PURPOSES = {"cpu-quick": "a short schedule for a CPU", "gpu-paper": "the paper's schedule, for a GPU"}
PRESET_CHOICES = ("auto", "none", *RECIPES)


@dataclass
class TrainConfig:
    # the recipe: auto picks cpu-quick for an image folder on a machine without a GPU (with the default backbone)
    preset: str = setting("auto", "A named recipe layered over the dataset kind's defaults: cpu-quick (112 px, 6 epochs, batch 120), "
                                  "gpu-paper (224 px, batch 180, 40 epochs), none; auto: cpu-quick for an image folder when there is "
                                  "no GPU, else none (BENCHMARKS.md times them).", PRESET_CHOICES)
    # data: an image folder (--data), the built-in set, or a paper dataset under --root
    dataset: str = setting("builtin", "Where the images come from (inferred from --data / --root when not given).", DATASET_KINDS)
    data: str | None = setting(None, "Image folder, one sub-folder per class (default: the built-in dataset).")
    labels: str | None = setting(None, "A CSV or JSON file of the --data images' labels, several an image (multi-label; with --split seen).")
    root: str | None = setting(None, "Folder holding --dataset (cub, cars, sop, inshop; cifar10, cifar10-59k, cifar10-50k, imagenet100).")
    split: str = setting("half", "half: the first half of the classes trains, the rest tests (unseen classes); seen: part of every "
                                 "class is held out; dirs: --train-dir and --test-dir.", ("half", "seen", "dirs"))
    train_dir: str | None = setting(None, "Explicit training folder (with --test-dir).")
    test_dir: str | None = setting(None, "Explicit test folder (with --train-dir).")
    test_fraction: float = setting(0.2, "With --split seen: the fraction of every class held out for testing.")
    class_depth: int = setting(0, "The class of an image: 0, the folder it is in (nested folders: 'group/class'); N, its first N folders.")
    # the method: hashpa's design, or a deep-hashing method trained by its own loss alone (hashpa.methods)
    method: str = setting(HASHPA, "hashpa: a Proxy Anchor float embedding with a hash head and its code stage; csq, orthohash, hashnet, dpsh, "
                                  "greedyhash: that paper's loss alone trains a hash layer on the backbone, end to end (no float embedding is "
                                  "trained: compare its codes).", METHOD_NAMES)
    # model
    model: ModelConfig = setting(ModelConfig(), "The model (its fields are options of their own).")
    # losses: the float embedding's metric loss, and Proxy Anchor on the relaxed codes tanh(h)
    loss: str = setting("proxy_anchor", "Metric loss of the float embedding.", LOSS_NAMES)
    alpha: float = setting(32.0, "Proxy Anchor alpha (scale).")
    margin: float = setting(0.1, "Proxy Anchor delta (margin).")
    proxies_per_class: int = setting(1, "Proxies of each class for the float embedding's Proxy Anchor (K > 1: SoftTriple's smooth maximum over them).")
    code_loss: str = setting("proxy_anchor", "Loss on the relaxed codes during training (ms: Multi-Similarity, a pairwise loss; csq and "
                                             "orthohash: the deep-hashing losses towards fixed Hadamard hash centres).", CODE_LOSS_NAMES)
    code_alpha: float = setting(32.0, "Proxy Anchor alpha on the relaxed codes.")
    code_weight: float = setting(1.0, "Weight of the metric loss on the relaxed codes.")
    code_relaxation: str = setting("tanh", "What the code loss and distillation see: tanh(h), or ste: the signed codes "
                                           "(straight-through gradient), moved from tanh in the first epoch to the signs in the last.",
                                   CODE_RELAXATIONS)
    quantization_weight: float = setting(0.1, "Weight of the quantisation penalty (1 - |tanh h|)^2.")
    distill_weight: float = setting(1.0, "Weight of similarity distillation from the float embedding into the codes.")
    distill_temperature: float = setting(0.1, "Temperature of the similarity distillation.")
    decorrelation_weight: float = setting(10.0, "Weight of the bit decorrelation term.")
    codes_train_backbone: bool = setting(False, "Let the code losses' gradients reach the embedding and the backbone.",
                                         flag="--codes-train-backbone/--codes-train-head")
    hash_init: str = setting("itq", "itq: after the warm-up, start the hash head from PCA-ITQ of the training embeddings.", HASH_INITS)
    # the code stage after the last epoch (hashpa.training.code_stage): the hash head fitted to the frozen model
    code_epochs: int = setting(15, "Epochs of the code stage after the last epoch: the hash head fitted to the frozen model (0: none).")
    code_views: int = setting(3, "Augmented passes over the training images for the code stage, besides the plain one.")
    code_objective: str = setting("auto", "Code stage loss: proxy_anchor (seen classes), orthohash (seen classes, each gathered at one "
                                           "codeword), distill (new classes); auto picks proxy_anchor or distill by the split.",
                                  CODE_OBJECTIVES)
    code_lr: float = setting(1e-3, "Learning rate of the code stage.")
    code_margin: float = setting(0.3, "Proxy Anchor delta on the codes in the code stage.")
    code_validation: float = setting(0.2, "Fraction of training images (classes, for distill) held out to choose the code stage's "
                                          "number of epochs (0: all epochs).")
    # optimisation (the paper's recipe)
    baseline: bool = setting(True, "First evaluate the starting model and its backbone's features, as epoch 0 of the history: the baseline to beat.")
    epochs: int = setting(60, "Training epochs (0: evaluate the starting model, and run the code stage, only).")
    batch_size: int = setting(180, "Images per batch (a smaller training set trains with a smaller batch).")
    per_class: int = setting(0, "Class-balanced batches with this many images per class (0: plain shuffling).")
    lr: float = setting(1e-4, "Base learning rate (the proxies get --proxy-lr-mult times it).")
    weight_decay: float = setting(1e-4, "AdamW weight decay.")
    proxy_lr_mult: float = setting(100.0, "Learning rate multiplier of the proxies.")
    warmup_epochs: int = setting(1, "Epochs with the backbone frozen.")
    schedule: str = setting("step", "Learning rate schedule.", SCHEDULES)
    lr_decay_step: int = setting(10, "Step schedule: epochs between decays.")
    lr_decay_gamma: float = setting(0.5, "Step schedule: decay factor.")
    clip_grad: float = setting(10.0, "Gradient norm clipping, float and code parameters apart (0: none).")
    chunk_size: int = setting(0, "Run the backbone this many images at a time within a batch: the exact gradient of the whole batch "
                                 "(Proxy Anchor is no sum over samples) in the memory of a chunk (gradient caching); 0: the whole batch at once.")
    # augmentation
    crop_scale_min: float = setting(0.08, "Smallest area fraction of the random resized crop.")
    hflip: bool = setting(True, "Random horizontal flips.")
    # run
    eval_every: int = setting(1, "Evaluate every N epochs (and after the last); 0: never (best.pt is then not written: evaluate "
                                 "last.pt afterwards, e.g. hashpa eval --checkpoint last).")
    best_metric: str = setting("codes", "Which Recall@1 picks best.pt.", BEST_METRICS)
    seed: int = setting(0, "Random seed (data order, augmentation, initialisation).")
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    workers: int = setting(4, "DataLoader worker processes.")
    out: str = setting("", "Run directory to create (default: runs/<dataset>-<bits>bit).")
    amp: bool = setting(True, "bf16 autocast on CUDA.")
    data_path: str = setting("auto", "files: decode images in DataLoader workers; cache: decode once, augment batches on the device; "
                                     "auto: cache on CUDA.", DATA_PATHS)
    channels_last: bool = setting(True, "channels_last memory format on CUDA.")
    compile: bool = setting(False, "torch.compile the model.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def data_folders(self) -> dict:
        """The data settings that name folders (absolute once a run directory records them)."""
        return {name: getattr(self, name) for name in DATA_FOLDERS if getattr(self, name)}

    def data_settings(self) -> dict:
        """The fields that choose the images (DATA_SETTINGS): hashpa.data.splits.build_split's arguments."""
        return {name: getattr(self, name) for name in DATA_SETTINGS}

    @classmethod
    def from_dict(cls, values: dict, where: str = "training settings") -> "TrainConfig":
        values = dict(values)
        model = values.pop("model", None) or {}
        if not isinstance(model, dict):
            raise HashpaError(f"{where}: model must be a table of model settings, got {model!r}")
        for kind, given in ((cls, values), (ModelConfig, model)):
            unknown = set(given) - {f.name for f in dataclasses.fields(kind)}
            if unknown:
                raise HashpaError(f"{where}: unknown {'model ' if kind is ModelConfig else ''}settings: {', '.join(sorted(unknown))}")
            check_types(kind, given, where)
        return cls(model=ModelConfig(**model), **values)

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        """A run directory's saved config.json."""
        return load_saved(path)[0]

    def check(self) -> "TrainConfig":
        self.model.check()
        checks = [
            (self.epochs >= 0, f"--epochs must be >= 0, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be >= 2, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 < self.crop_scale_min <= 1, f"--crop-scale-min must be in (0, 1], got {self.crop_scale_min}"),
            (self.eval_every >= 0, f"--eval-every must be >= 0, got {self.eval_every}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            (self.code_epochs >= 0, f"--code-epochs must be >= 0, got {self.code_epochs}"),
            (self.code_views >= 0, f"--code-views must be >= 0, got {self.code_views}"),
            (self.code_lr > 0, f"--code-lr must be positive, got {self.code_lr}"),
            (0 <= self.code_validation < 1, f"--code-validation must be in [0, 1), got {self.code_validation}"),
            (0 < self.test_fraction < 1, f"--test-fraction must be between 0 and 1, got {self.test_fraction}"),
            (self.per_class >= 0, f"--per-class must be >= 0, got {self.per_class}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.chunk_size >= 0, f"--chunk-size must be >= 0, got {self.chunk_size}"),
            (self.proxies_per_class >= 1, f"--proxies-per-class must be >= 1, got {self.proxies_per_class}"),
            (self.proxies_per_class == 1 or self.loss == "proxy_anchor", f"--proxies-per-class applies to --loss proxy_anchor, not {self.loss}"),
            (self.class_depth >= 0, f"--class-depth must be >= 0, got {self.class_depth}"),
        ]
        for ok, message in checks:
            if not ok:
                raise HashpaError(message)
        check_types(type(self), self.to_dict(), "training settings")
        if self.method != HASHPA:
            check_method_settings(self.method, {**self.to_dict(), **self.to_dict()["model"]})
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
    # The deep-hashing datasets (their protocols give the split): a pretrained backbone at 224 px, as their papers fine-tune.
    **{name: dict(epochs=30, model=dict(backbone="tf_efficientnet_lite0", weights="imagenet", image_size=224)) for name in HASHING_DATASETS},
}


def dataset_of(settings: dict) -> str:
    """The dataset kind of settings that may not name one: a paper dataset, an image folder (--data,
    --train-dir/--test-dir) or the built-in set."""
    if settings.get("dataset"):
        return settings["dataset"]
    if settings.get("data") or settings.get("train_dir") or settings.get("test_dir"):
        return "folder"
    return "builtin"


def resolve_config(overrides: dict | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Defaults, then the preset of the dataset kind, then the settings of `config_file` (TOML, YAML
    or JSON), then `overrides` (None values ignored): a checked TrainConfig.

    Model settings may be given flat (``bits=64``) or under ``model``. The dataset kind is
    inferred (``dataset_of``) when no layer names it; the run directory defaults to
    ``runs/<dataset>-<bits>bit``.
    """
    layers = [read_config_file(config_file) if config_file else {}, _given(overrides or {})]
    given = {k: v for layer in layers for k, v in layer.items()}
    dataset = dataset_of(given)
    if dataset not in PRESETS:
        raise HashpaError(f"unknown dataset kind {dataset!r}; choose one of {', '.join(PRESETS)}")
    recipe = chosen_recipe(given.get("preset", "auto"), dataset, given)
    values = TrainConfig().to_dict()
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    defining = method(given.get("method", HASHPA)).settings
    for layer in (PRESETS[dataset], {"dataset": dataset}, RECIPES.get(recipe, {}), defining, *layers, {"preset": recipe}):
        for key, value in layer.items():
            if key == "model" and isinstance(value, dict):
                values["model"].update(_given(value))
            elif key in model_fields:
                values["model"][key] = value
            else:
                values[key] = value
    if not values["out"]:
        values["out"] = f"runs/{dataset}-{values['model']['bits']}bit"
    return TrainConfig.from_dict(values).check()


def chosen_recipe(preset: str, dataset: str, given: dict) -> str:
    """The recipe `preset` names; "auto": cpu-quick for an image folder with the default backbone on a
    machine without a GPU, "none" otherwise."""
    if preset not in PRESET_CHOICES:
        raise HashpaError(f"--preset must be one of {', '.join(PRESET_CHOICES)}, got {preset!r}")
    if preset != "auto":
        return preset
    default_backbone = "backbone" not in given and "backbone" not in given.get("model", {})
    if dataset == "folder" and default_backbone:
        import torch

        if not torch.cuda.is_available() and given.get("device", "auto") in ("auto", "cpu"):
            return "cpu-quick"
    return "none"


def read_config_file(path: str | Path) -> dict:
    """Training settings from a TOML, YAML or JSON file (by its extension), flat or with a model table."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HashpaError(f"cannot read the config file {path}: {error}") from None
    try:
        if suffix == ".toml":
            import tomllib

            values = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        elif suffix == ".json":
            values = json.loads(text)
        else:
            raise HashpaError(f"config file {path}: use a .toml, .yaml/.yml or .json file")
    except HashpaError:
        raise
    except Exception as error:  # each format's own parse error
        raise HashpaError(f"cannot parse the config file {path}: {error}") from None
    if not isinstance(values, dict):
        raise HashpaError(f"config file {path} must hold a table of settings, got {type(values).__name__}")
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    flat_model = {k: values[k] for k in values if k in model_fields}
    TrainConfig.from_dict({k: v for k, v in values.items() if k not in model_fields} | {"model": {**values.get("model", {}), **flat_model}}, str(path))
    return values


def _given(values: dict) -> dict:
    return {k: v for k, v in values.items() if v is not None}


def load_saved(path: str | Path) -> tuple[TrainConfig, dict]:
    """(the TrainConfig of a run directory's config.json, its record of the data folders relative to
    the run directory: DATA_FROM_RUN, {} when it has none)."""
    values = _read_json(path)
    from_run = values.pop(DATA_FROM_RUN, None)
    return TrainConfig.from_dict({**LEGACY_DEFAULTS, **values}, str(path)), from_run if isinstance(from_run, dict) else {}


def _read_json(path: str | Path) -> dict:
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise HashpaError(f"cannot read the training config {path}: {error}") from None
    if not isinstance(values, dict):
        raise HashpaError(f"{path} must hold a table of training settings")
    return values
