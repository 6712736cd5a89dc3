"""The model: backbone -> pooling -> float embedding head and hash head."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from hashpa.codes import pack_codes
from hashpa.data.preprocess import Preprocessing
from hashpa.models.backbones import build_backbone
from hashpa.models.config import ModelConfig
from hashpa.models.heads import EmbeddingHead, GlobalPool, HashHead


class ModelOutput(NamedTuple):
    embeddings: torch.Tensor  # float [B, dim], L2-normalised
    hash_logits: torch.Tensor  # float [B, bits]: bits are (hash_logits > 0), tanh(hash_logits) is the relaxed code


class HashingModel(nn.Module):
    def __init__(self, config: ModelConfig, load_weights: bool = True, preprocessing: Preprocessing | None = None):
        """`preprocessing`: what a trained model was trained with (its checkpoint's), instead of the backbone's own."""
        super().__init__()
        self.config = config.check()
        backbone = build_backbone(config.backbone, config.weights if load_weights else "none")
        size = config.image_size or backbone.preprocessing.input_size
        self.preprocessing = preprocessing or dataclasses.replace(backbone.preprocessing, input_size=size)
        self.backbone = backbone.module
        self.pool = GlobalPool(config.pooling)
        self.embedding = EmbeddingHead(backbone.num_features, config.dim)
        hash_in = config.dim if config.hash_source == "embedding" else backbone.num_features
        self.hash_head = HashHead(hash_in, config.bits, project=config.hash_projection, norm=config.hash_norm)
        if config.freeze_bn:
            for module in self._backbone_norms():
                module.requires_grad_(False)

    def forward(self, images: torch.Tensor, freeze_backbone: bool = False, detach_hash_input: bool = False) -> ModelOutput:
        """images: float [B, 3, H, W], preprocessed. With freeze_backbone no gradient reaches the
        backbone; with detach_hash_input the hash head's gradient stops at its own input."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not freeze_backbone):
            features = self.backbone_features(images)
        return self.heads(features, detach_hash_input)

    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features [B, C] of preprocessed images (with gradients when enabled)."""
        return self.pool(self.backbone(images))

    def heads(self, features: torch.Tensor, detach_hash_input: bool = False) -> ModelOutput:
        """The embedding and hash heads on pooled features [B, C] (``forward`` after the backbone)."""
        raw = self.embedding(features)
        hash_input = self._hash_input(features, raw)
        hash_logits = self.hash_head(hash_input.detach() if detach_hash_input else hash_input)
        return ModelOutput(F.normalize(raw.float(), dim=1), hash_logits.float())

    @torch.no_grad()
    def hash_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """What the hash head reads for these images (the raw embedding or the pooled features)."""
        return self.hash_inputs_and_embeddings(images)[0]

    @torch.no_grad()
    def pooled_features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features [B, C] (before the heads): what an untrained model offers."""
        return self.pool(self.backbone(images)).float()

    @torch.no_grad()
    def hash_inputs_and_embeddings(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the hash head reads, the L2-normalised float embeddings) for these images."""
        features = self.pool(self.backbone(images))
        raw = self.embedding(features)
        return self._hash_input(features, raw), F.normalize(raw.float(), dim=1)

    @torch.no_grad()
    def hash_logits_of_features(self, features: torch.Tensor) -> torch.Tensor:
        """The hash head's pre-activations float [B, bits] (eval mode) of pooled backbone features [B, C],
        e.g. those ``embed_with_features`` gave: the real values whose signs are the codes."""
        with self._evaluating():
            raw = self.embedding(features)
            return self.hash_head(self._hash_input(features, raw)).float()

    def _hash_input(self, features: torch.Tensor, raw_embedding: torch.Tensor) -> torch.Tensor:
        return raw_embedding if self.config.hash_source == "embedding" else features

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both representations of a batch: (float32 embeddings [N, dim], packed uint8 codes [N, bits/8]).

        Runs in eval mode (restoring the previous mode), on the images' device.
        """
        return self.embed_with_features(images)[:2]

    @torch.no_grad()
    def embed_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``embed``'s (embeddings, codes) and the pooled backbone features they came from, in one pass."""
        with self._evaluating():
            features = self.pool(self.backbone(images))
            raw = self.embedding(features)
            logits = self.hash_head(self._hash_input(features, raw))
        return F.normalize(raw.float(), dim=1), pack_codes(logits.float()), features.float()

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode for the block (running statistics, no dropout), the previous mode restored after it."""
        was_training = self.training
        self.eval()
        try:
            yield
        finally:
            self.train(was_training)

    def train(self, mode: bool = True) -> "HashingModel":
        super().train(mode)
        if mode and self.config.freeze_bn:
            for module in self._backbone_norms():
                module.eval()
        return self

    def _backbone_norms(self) -> list[nn.Module]:
        return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable backbone and head parameters (frozen BatchNorm parameters are left out)."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        heads = list(self.embedding.parameters()) + list(self.hash_head.parameters())
        return {"backbone": backbone, "heads": heads}

    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) over the weights and the config: identifies the model in an index."""
        digest = hashlib.sha256(repr(sorted(dataclasses.asdict(self.config).items())).encode())
        for name, tensor in self.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]
