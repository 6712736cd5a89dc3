"""hashpa: deep-hashing image retrieval.

One model gives an L2-normalised float embedding (trained with Proxy Anchor loss) and a binary
hash code (packed bits) for every image; FAISS float and Hamming indexes search them; the
evaluation compares the two side by side.

    model = hashpa.load("runs/photos")            # a trained run
    emb, codes = model.embed(images)              # PIL images, paths, uint8 arrays or tensors
    hashpa.build_index("photos/", "runs/photos", "indexes/photos")
    ix = hashpa.open_index("indexes/photos")
    result = ix.search(images, k=10, mode="rerank")

Attributes are imported on first use, so ``import hashpa`` stays light.
"""

__version__ = "0.1.0"

from hashpa._lazy import lazy_exports  # noqa: E402
from hashpa.errors import HashpaError  # noqa: E402

_MODULES = {
    ".embed": "load Model",
    ".search.index": "open_index Index",
    ".indexdir.build": "build_index",
    ".export": "export",
    ".training.trainer": "train resume",
    ".runs.config": "TrainConfig resolve_config",
    ".metrics.retrieval": "recall_at_k evaluate_retrieval",
}
__getattr__, __dir__ = lazy_exports(__name__, _MODULES)
__all__ = ["HashpaError", "__version__", *__dir__()]
