"""hashpa: deep-hashing image retrieval.

One model gives an L2-normalised float embedding (trained with Proxy Anchor loss) and a binary
hash code (packed bits) for every image; FAISS float and Hamming indexes search them; the
evaluation compares the two side by side.
"""

__version__ = "0.1.0"

from hashpa.errors import HashpaError
from hashpa.eval.metrics import recall_at_k

__all__ = ["HashpaError", "recall_at_k", "__version__"]
