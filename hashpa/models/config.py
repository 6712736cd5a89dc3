"""The model's configuration (no torch import: the command line reads it to build its options)."""

from __future__ import annotations

from dataclasses import dataclass

from hashpa.codes import check_bits
from hashpa.errors import HashpaError
from hashpa.settings import setting

HASH_SOURCES = ("embedding", "features")
HASH_NORMS = ("standardize", "batchnorm", "none")  # hashpa.models.heads.HashHead
POOLINGS = ("avgmax", "avg")


@dataclass
class ModelConfig:
    backbone: str = setting("smallcnn", "smallcnn, bn_inception, resnet18/34/50/101/152 or any timm model name.")
    weights: str = setting("none", "imagenet, none, or a local state_dict / .safetensors file (read only when the model is first built).")
    dim: int = setting(512, "Float embedding dimension.")
    bits: int = setting(64, "Hash code length in bits: a multiple of 8, 16-256.")
    pooling: str = setting("avgmax", "Global pooling of the backbone's feature map.", POOLINGS)
    hash_source: str = setting("embedding", "What the hash head reads: the float embedding (before its normalisation) or the pooled features.",
                               HASH_SOURCES)
    hash_projection: bool = setting(True, "Give the hash head a projection of its own; without: the codes are the signs of the float "
                                          "embedding itself, each dimension centred (needs --dim equal to --bits, --hash-source embedding).",
                                    flag="--hash-projection/--no-hash-projection")
    hash_norm: str = setting("standardize", "What follows the hash layer: standardize (BatchNorm without scale and shift: every bit centred, "
                                            "at unit scale), batchnorm (with them, as OrthoHash), none (a plain linear layer, as CSQ, HashNet, "
                                            "DPSH and GreedyHash).", HASH_NORMS)
    image_size: int = setting(0, "Input size in pixels (0: the backbone's own).")
    freeze_bn: bool = setting(False, "Keep the backbone's BatchNorm layers frozen (statistics and parameters).", flag="--freeze-bn/--train-bn")

    def check(self) -> "ModelConfig":
        check_bits(self.bits, "--bits")
        if self.dim < 1:
            raise HashpaError(f"--dim must be positive, got {self.dim}")
        if self.hash_source not in HASH_SOURCES:
            raise HashpaError(f"--hash-source must be one of {', '.join(HASH_SOURCES)}, got {self.hash_source!r}")
        if not self.hash_projection:
            if self.dim != self.bits:
                raise HashpaError(f"--no-hash-projection makes the codes the signs of the embedding itself: pass --dim {self.bits} "
                                  f"to match --bits {self.bits} (got --dim {self.dim})")
            if self.hash_source != "embedding":
                raise HashpaError("--no-hash-projection makes the codes the signs of the embedding itself: it cannot read "
                                  f"--hash-source {self.hash_source}; leave --hash-source at embedding")
        if self.hash_norm not in HASH_NORMS:
            raise HashpaError(f"--hash-norm must be one of {', '.join(HASH_NORMS)}, got {self.hash_norm!r}")
        if not self.hash_projection and self.hash_norm != "standardize":
            raise HashpaError("--no-hash-projection makes the codes the signs of the embedding, centred by --hash-norm standardize: "
                              f"leave --hash-norm at standardize (got {self.hash_norm})")
        if self.pooling not in POOLINGS:
            raise HashpaError(f"--pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.image_size < 0:
            raise HashpaError(f"--image-size must be positive (or 0 for the backbone's own), got {self.image_size}")
        return self
