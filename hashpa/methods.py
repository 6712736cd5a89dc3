"""The training methods: hashpa's own design, and the deep-hashing methods as their papers define
them, each trained end to end by its own loss alone (``hashpa train --method``).

A method is data: the loss on the hash layer's outputs, what that loss sees of them, and the
settings that make the network the paper's (a hash layer on the backbone's pooled features, no
PCA-ITQ start, no code stage, the backbone trained by the codes' loss). No torch import: the
command line reads this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hashpa.errors import HashpaError

HASHPA = "hashpa"


@dataclass(frozen=True)
class Method:
    name: str
    title: str  # how a table names it
    paper: str
    loss: str  # hashpa.losses.registry's name of its loss
    relaxation: str  # what the loss sees of the hash layer's outputs h: "tanh" (tanh(h)) or "none" (h itself)
    settings: dict = field(default_factory=dict)  # the TrainConfig / ModelConfig settings that make the paper's network


# A baseline's network: the hash layer reads the backbone's pooled features; its codes train the
# backbone; no PCA-ITQ start and no code stage (hashpa's design steps).
_END_TO_END = {"hash_source": "features", "hash_init": "random", "code_epochs": 0, "codes_train_backbone": True}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method(HASHPA, "hashpa (Proxy Anchor embedding, hash head, code stage)", "Kim et al., Proxy Anchor Loss, CVPR 2020; hashpa's hash head",
           loss="proxy_anchor", relaxation="tanh"),
    Method("csq", "CSQ", "Yuan et al., Central Similarity Quantization, CVPR 2020", loss="csq", relaxation="tanh",
           settings={**_END_TO_END, "hash_norm": "none"}),
    Method("orthohash", "OrthoHash", "Hoe et al., One Loss for All (OrthoHash), NeurIPS 2021", loss="orthohash", relaxation="none",
           settings={**_END_TO_END, "hash_norm": "batchnorm"}),
    Method("hashnet", "HashNet", "Cao et al., HashNet: Deep Learning to Hash by Continuation, ICCV 2017", loss="hashnet", relaxation="none",
           settings={**_END_TO_END, "hash_norm": "none"}),
    Method("dpsh", "DPSH", "Li et al., Feature Learning based Deep Supervised Hashing with Pairwise Labels, IJCAI 2016", loss="dpsh",
           relaxation="none", settings={**_END_TO_END, "hash_norm": "none"}),
    Method("greedyhash", "GreedyHash", "Su et al., Greedy Hash, NeurIPS 2018", loss="greedyhash", relaxation="none",
           settings={**_END_TO_END, "hash_norm": "none"}),
)}
METHOD_NAMES = tuple(METHODS)


def method(name: str) -> Method:
    if name not in METHODS:
        raise HashpaError(f"unknown --method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
    return METHODS[name]


def check_method_settings(name: str, values: dict) -> None:
    """A baseline method's defining settings must stand as it sets them: a HashpaError names the
    first one `values` (the resolved settings, model settings flat) changes."""
    for key, wanted in method(name).settings.items():
        if key in values and values[key] != wanted:
            flag = "--" + key.replace("_", "-")
            raise HashpaError(f"--method {name} trains its hash layer with its own loss alone ({key} = {wanted!r}): "
                              f"leave {flag} out (got {values[key]!r}), or use --method {HASHPA}")
