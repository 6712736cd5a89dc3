"""The code stage: after the float embedding is trained, fit the hash head to the frozen model.

Why: a head trained jointly with the embedding can lag behind it (the embedding moves, the head's
small steps on tanh relaxations do not keep up) and end below PCA-ITQ codes of the same embedding
(BENCHMARKS.md measures it). Here the model is frozen, so the hash head's inputs can be
computed once -- the training images under the test transform plus `code_views` augmented
passes -- and the head, started from PCA-ITQ of those inputs, trains for many cheap epochs on them:

- the codes in the loss are the real +-1 bits, with tanh's gradient passed straight through
  (straight-through estimator), so the loss sees exactly the Hamming geometry search will use;
- "proxy_anchor": Proxy Anchor on the codes with code proxies started at the classes' mean
  directions; suited to classes seen in training;
- "orthohash": OrthoHash's cross-entropy of the codes' scaled cosines to fixed orthogonal codewords
  of the classes (``hashpa.losses.orthohash``): every image of a class pulled to one code, for
  classes seen in training where the whole class should rank first (mAP@ALL);
- "distill": similarity distillation from the float embedding only: on classes the model has
  not seen, class supervision of the codes can over-fit the training classes, while keeping the
  embedding's neighbourhoods transfers;
- "auto": proxy_anchor when every test class is a training class, distill otherwise;
- the number of epochs is chosen on held-out training images (held-out classes for distill), and
  may be 0: where training does not beat the PCA-ITQ start on them, the start is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from hashpa.codes import pack_codes
from hashpa.data.folder import Sample
from hashpa.data.loading import ImageDataset, collate_skipping, usable_workers
from hashpa.data.preprocess import TestTransform
from hashpa.data.transforms import train_transform
from hashpa.devices import autocast
from hashpa.losses.distillation import SimilarityDistillationLoss
from hashpa.losses.orthohash import OrthoHashLoss
from hashpa.losses.proxy_anchor import ProxyAnchorLoss
from hashpa.metrics.retrieval import evaluate_retrieval
from hashpa.models.hashing_model import HashingModel
from hashpa.models.heads import HashHead
from hashpa.quantizers import LinearHasher, enough_rows, fit_itq
from hashpa.training.relaxation import relaxed_codes

log = logging.getLogger(__name__)


@dataclass
class CodeFeatures:
    """What the frozen model gives for the training images, one row per image and view."""

    hash_inputs: torch.Tensor  # float32 [V*N, D_in]: what the hash head reads
    embeddings: torch.Tensor | None  # float32 [V*N, dim] L2-normalised; None when the head reads the embedding itself
    labels: torch.Tensor  # int64 [V*N]
    plain_rows: int  # the first plain_rows rows are the test-transform view

    def images(self, keep: np.ndarray) -> "CodeFeatures":
        """The rows (every view) of the images where bool `keep` [plain_rows] is True."""
        views = len(self.labels) // self.plain_rows
        rows = torch.from_numpy((np.flatnonzero(keep)[None, :] + self.plain_rows * np.arange(views)[:, None]).ravel())
        return CodeFeatures(self.hash_inputs[rows], None if self.embeddings is None else self.embeddings[rows], self.labels[rows], int(keep.sum()))

    def teacher(self, rows: torch.Tensor) -> torch.Tensor:
        """The L2-normalised float embeddings of `rows` (distillation's teacher)."""
        return F.normalize(self.hash_inputs[rows], dim=1) if self.embeddings is None else self.embeddings[rows]


@torch.no_grad()
def code_features(network: HashingModel, samples: Sequence[Sample], views: int, crop_scale: tuple[float, float], hflip: bool,
                  device: torch.device, batch_size: int, workers: int, seed: int) -> CodeFeatures:
    """Run the frozen network over `samples` once with the test transform and `views` times with the
    training augmentation (seeded)."""
    from tqdm import tqdm

    transforms = [TestTransform(network.preprocessing)]
    transforms += [train_transform(network.preprocessing, crop_scale, hflip)] * views
    network.eval()
    reads_embedding = network.config.hash_source == "embedding"
    parts, plain_rows = [], 0
    log.info("code stage: the frozen model over the %d training images, plain and in %d augmented views", len(samples), views)
    for view, transform in enumerate(transforms):
        torch.manual_seed(seed + view)
        loader = torch.utils.data.DataLoader(
            ImageDataset(list(samples), transform), batch_size=batch_size, num_workers=usable_workers(workers),
            collate_fn=collate_skipping, generator=torch.Generator().manual_seed(seed + view),
        )
        for batch in tqdm(loader, desc=f"code stage, view {view + 1} of {len(transforms)}", unit="batch", leave=False, disable=None):
            with autocast(device):
                hash_inputs, embeddings = network.hash_inputs_and_embeddings(batch.images.to(device))
            parts.append((hash_inputs.float().cpu(), None if reads_embedding else embeddings.float().cpu(), batch.labels))
        if view == 0:
            plain_rows = sum(len(part[2]) for part in parts)
    hash_inputs, embeddings, labels = zip(*parts)
    return CodeFeatures(torch.cat(hash_inputs), None if reads_embedding else torch.cat(embeddings), torch.cat(labels).long(), plain_rows)


@torch.no_grad()
def start_head_from_itq(network: HashingModel, samples: Sequence[Sample], device: torch.device, workers: int, seed: int) -> bool:
    """Set the hash head to PCA-ITQ of its inputs over `samples` (test transform); False (the head
    left as it is) when too few images could be read for PCA-ITQ.

    A randomly initialised head trained by the code losses can end below PCA-ITQ codes of the
    same embedding; started from them it begins where they are (BENCHMARKS.md measures both).
    """
    from hashpa.embed import embed_all

    was_training = network.training
    x = embed_all(network, samples, device, workers=workers, output="hash_inputs", progress="hash head start (PCA-ITQ)")[0]
    network.train(was_training)
    if not enough_rows(len(x), network.config.bits):
        return False
    set_head_to_hasher(network.hash_head, fit_itq(x, network.config.bits, seed=seed), x)
    return True


def set_head_to_hasher(head: HashHead, hasher: LinearHasher, inputs: np.ndarray) -> None:
    """Make `head` compute `hasher`'s projection; its normalisation gets the projections' variance."""
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(hasher.projection.T))
        head.linear.bias.copy_(torch.from_numpy(-hasher.mean @ hasher.projection))
        head.norm.reset_running_stats()
        head.norm.running_var.copy_(torch.from_numpy(hasher.project(inputs).var(axis=0)))


def choose_objective(objective: str, train_classes: Sequence[str], test_classes: Sequence[str]) -> str:
    if objective != "auto":
        return objective
    return "proxy_anchor" if set(test_classes) <= set(train_classes) else "distill"


@dataclass(frozen=True)
class CodeStageSettings:
    """How the code stage trains the head (TrainConfig's code_* fields, resolved)."""

    objective: str  # "proxy_anchor", "orthohash" or "distill" (see the module docstring)
    epochs: int
    lr: float
    proxy_lr: float
    weight_decay: float
    batch_size: int
    alpha: float  # Proxy Anchor's
    margin: float  # Proxy Anchor's
    temperature: float  # distillation's
    seed: int
    validation: float = 0.0  # fraction held out to choose the number of epochs (0: all epochs, no choice)


def fit_code_stage(head: HashHead, features: CodeFeatures, num_classes: int, settings: CodeStageSettings) -> dict:
    """Start `head` from PCA-ITQ of the plain view's inputs, then train it (in place) on all views.

    With ``settings.validation`` > 0 the number of epochs is chosen first: the head trains on the
    other images while the codes' Recall@1 is measured on held-out ones after every epoch (held-out
    classes for "distill", whose test classes are new; held-out images of every class for
    "proxy_anchor"); then it trains on all images for the best number of epochs, 0 meaning that
    the PCA-ITQ start is kept. Returns the objective, the mean loss of the last epoch, the numbers
    of steps and rows, and the validation (None when there was none).
    """
    epochs, validation = settings.epochs, None
    held_out = _held_out_images(features, settings, head.linear.out_features)
    if held_out is not None:
        _, curve = _train(head, features.images(~held_out), num_classes, settings, settings.epochs, features.images(held_out))
        epochs = int(np.argmax(curve))  # the first best
        validation = {"held_out_images": int(held_out.sum()), "recall@1_by_epoch": curve, "epochs": epochs}
    record, _ = _train(head, features, num_classes, settings, epochs)
    return {**record, "validation": validation}


def _held_out_images(features: CodeFeatures, settings: CodeStageSettings, bits: int) -> np.ndarray | None:
    """bool [plain_rows]: the images that validate the number of epochs, or None (no validation)."""
    plain, views = features.plain_rows, len(features.labels) // max(features.plain_rows, 1)
    if not settings.validation or not settings.epochs or len(features.labels) != plain * views:
        return None
    labels = features.labels[:plain].numpy()
    rng = np.random.default_rng(settings.seed)
    classes = np.unique(labels)
    if settings.objective == "distill":
        chosen = rng.choice(classes, round(len(classes) * settings.validation), replace=False)
        held_out = np.isin(labels, chosen)
    else:
        held_out = np.zeros(plain, dtype=bool)
        for label in classes:
            rows = np.flatnonzero(labels == label)
            if len(rows) >= 4:  # two or more held out, so that each has a positive
                held_out[rng.choice(rows, max(2, round(len(rows) * settings.validation)), replace=False)] = True
    if len(np.unique(labels[held_out])) < 2 or not enough_rows(int((~held_out).sum()), bits):
        log.info("code stage: too few images to hold some out for choosing the epochs; all %d epochs run", settings.epochs)
        return None
    return held_out


def _train(head: HashHead, features: CodeFeatures, num_classes: int, settings: CodeStageSettings, epochs: int,
           validation: CodeFeatures | None = None) -> tuple[dict, list[float]]:
    """Restart `head` from PCA-ITQ of `features`' plain view and train it `epochs` epochs; with
    `validation`, the codes' expected Recall@1 on its plain view at the start and after each epoch."""
    s, bits = settings, head.linear.out_features
    plain = features.hash_inputs[: features.plain_rows].numpy()
    hasher = fit_itq(plain, bits, seed=s.seed)
    set_head_to_hasher(head, hasher, plain)
    loss_fn = _loss(s, hasher, plain, features.labels[: features.plain_rows], num_classes, bits)
    loss_fn.to(head.linear.weight.device)
    groups = [{"params": list(head.parameters()), "lr": s.lr}, {"params": list(loss_fn.parameters()), "lr": s.proxy_lr}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=s.weight_decay)
    generator = torch.Generator().manual_seed(s.seed)
    device = head.linear.weight.device
    n, steps, last = len(features.labels), 0, 0.0
    curve = [] if validation is None else [_recall_at_1(head, validation)]
    for _ in range(epochs):
        head.train()
        order = torch.randperm(n, generator=generator)
        total, batches = 0.0, 0
        for start in range(0, n - s.batch_size + 1, s.batch_size):
            rows = order[start : start + s.batch_size]
            codes = relaxed_codes(head(features.hash_inputs[rows].to(device)), "ste")
            if s.objective != "distill":
                loss = loss_fn(codes, features.labels[rows].to(device))
            else:
                loss = loss_fn(codes, features.teacher(rows).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
        steps += batches
        last = total / max(batches, 1)
        if validation is not None:
            curve.append(_recall_at_1(head, validation))
    head.eval()
    return {"objective": s.objective, "loss": last, "steps": steps, "rows": n}, curve


@torch.no_grad()
def _recall_at_1(head: HashHead, validation: CodeFeatures) -> float:
    """Tie-aware expected Hamming Recall@1 of the head's codes of `validation`'s plain view, each image
    querying the others."""
    head.eval()
    inputs = validation.hash_inputs[: validation.plain_rows].to(head.linear.weight.device)
    codes = pack_codes(head(inputs)).cpu().numpy()
    labels = validation.labels[: validation.plain_rows].numpy()
    return float(evaluate_retrieval(codes, labels, metric="hamming", ks=(1,), with_map_at_r=False)["expected_recall"][1])


def _loss(settings: CodeStageSettings, hasher: LinearHasher, plain: np.ndarray, labels: torch.Tensor, num_classes: int,
          bits: int) -> torch.nn.Module:
    if settings.objective == "distill":
        return SimilarityDistillationLoss(settings.temperature)
    if settings.objective == "orthohash":
        return OrthoHashLoss(num_classes, bits, seed=settings.seed)
    loss = ProxyAnchorLoss(num_classes, bits, alpha=settings.alpha, margin=settings.margin)
    projected = torch.from_numpy(hasher.project(plain))
    with torch.no_grad():
        for label in labels.unique().tolist():  # classes without images keep their random proxy
            loss.proxies[label] = F.normalize(projected[labels == label].mean(dim=0), dim=0)
    return loss
