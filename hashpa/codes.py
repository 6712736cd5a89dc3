"""Binary hash codes: packing, unpacking, Hamming distances, bit-string views and per-bit statistics.

Format (what FAISS binary indexes take): ``uint8 [N, bits/8]``, numpy ``packbits`` order, i.e. bit
``j`` of a code is bit ``7 - j % 8`` (most significant first) of byte ``j // 8``. Bit ``j`` is 1
where hash pre-activation ``j`` is > 0, and 0 otherwise (zero maps to 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from bitarray import bitarray

from hashpa.errors import HashpaError

if TYPE_CHECKING:
    import torch

BITS_RANGE = (16, 256)  # the code lengths hashpa trains and fits, in multiples of 8
_BYTE_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def check_bits(bits: int, what: str = "--bits", at_most: int | None = None, why: str = "") -> int:
    """Return `bits` if it is a multiple of 8 in BITS_RANGE (and at most `at_most`, `why` saying
    what limits it), else raise a HashpaError naming the option `what`."""
    low, high = BITS_RANGE[0], min(BITS_RANGE[1], at_most or BITS_RANGE[1])
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not low <= bits <= high or bits % 8:
        limit = f" ({why})" if why and high < BITS_RANGE[1] else ""
        raise HashpaError(f"{what} must be a multiple of 8 from {low} to {high}{limit}, got {bits!r}")
    return int(bits)


def pack_codes(pre_activations: torch.Tensor) -> torch.Tensor:
    """Sign-quantise and pack hash pre-activations, on whatever device they are.

    pre_activations: float tensor [N, bits], bits a multiple of 8.
    Returns: uint8 tensor [N, bits/8] in numpy ``packbits`` order.
    """
    import torch

    n, bits = pre_activations.shape
    if bits % 8:
        raise HashpaError(f"codes are packed 8 bits to a byte: {bits} pre-activations is not a multiple of 8")
    positive = (pre_activations > 0).view(n, bits // 8, 8).to(torch.int32)
    weights = torch.tensor(_BYTE_WEIGHTS, dtype=torch.int32, device=pre_activations.device)
    return (positive * weights).sum(dim=2).to(torch.uint8)


def unpack_codes(codes: np.ndarray) -> np.ndarray:
    """uint8 [N, B] packed codes -> uint8 [N, 8B] array of 0/1 bits."""
    return np.unpackbits(_as_codes(codes), axis=1)


def codes_to_signs(codes: np.ndarray) -> np.ndarray:
    """uint8 [N, B] packed codes -> float32 [N, 8B] of -1/+1 (bit 1 -> +1)."""
    return unpack_codes(codes).astype(np.float32) * 2.0 - 1.0


def hamming_distances(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances by popcount: uint8 [Nq, B], uint8 [Nd, B] -> int32 [Nq, Nd].

    Plain numpy, for small inputs and as an independent reference; large evaluations use
    ``hashpa.metrics.knn``.
    """
    queries, database = _as_codes(queries), _as_codes(database)
    if queries.shape[1] != database.shape[1]:
        raise HashpaError(f"codes differ in length: {queries.shape[1]} vs {database.shape[1]} bytes")
    xor = np.bitwise_xor(queries[:, None, :], database[None, :, :])
    return np.bitwise_count(xor).sum(axis=2, dtype=np.int32)


def to_bitarrays(codes: np.ndarray) -> list[bitarray]:
    """One bitarray per code, in the same bit order as the packed bytes."""
    out = []
    for row in _as_codes(codes):
        bits = bitarray(endian="big")
        bits.frombytes(row.tobytes())
        out.append(bits)
    return out


def code_strings(codes: np.ndarray) -> list[str]:
    """Codes as '0'/'1' strings, bit 0 first (e.g. for ``hashpa search --show-codes``)."""
    return [bits.to01() for bits in to_bitarrays(codes)]


def export_codes(codes: np.ndarray, names: list[str], path, fmt: str = "text", overwrite: bool = False) -> None:
    """Write codes to `path`: "text" as 'name<TAB>bit string' lines (control characters and
    backslashes in names escaped: ``escape_name``), "binary" as the packed bytes back to back
    (bits/8 bytes per code, in order). Written atomically under the write rule (``hashpa.outputs``):
    an existing file hashpa did not write is replaced only with `overwrite`."""
    from hashpa.outputs import write_output

    if fmt not in ("text", "binary"):
        raise HashpaError(f"unknown export format {fmt!r}: text or binary")
    bits = to_bitarrays(codes)

    def write(tmp):
        if fmt == "text":
            tmp.write_text("".join(f"{escape_name(name)}\t{b.to01()}\n" for name, b in zip(names, bits)), encoding="utf-8")
            return
        with open(tmp, "wb") as handle:
            for b in bits:
                b.tofile(handle)

    write_output(path, write, overwrite)


def escape_name(name: str) -> str:
    """`name` with backslashes and control characters (newlines, tabs, terminal escapes) written as
    backslash escapes (\\\\, \\n, \\t, \\x1b ...), so that one name is one line of text."""
    return "".join(_ESCAPES.get(c, f"\\x{ord(c):02x}" if ord(c) < 32 or 127 <= ord(c) < 160 else c) for c in name)


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def bit_statistics(codes: np.ndarray) -> dict:
    """Per-bit balance and entropy of a set of codes.

    Returns a dict with ``ones_fraction`` (float64 [bits]: fraction of codes with the bit set),
    ``entropy`` (float64 [bits], in bits: 1.0 is a perfectly balanced bit), ``mean_entropy``,
    ``dead_bits`` (bits that never or always fire) and ``mean_abs_correlation`` between bits.
    """
    bits = unpack_codes(codes).astype(np.float64)
    ones = bits.mean(axis=0)
    entropy = _binary_entropy(ones)
    dead = int(np.sum((ones == 0) | (ones == 1)))
    correlation = _mean_abs_correlation(bits)
    return {
        "count": int(bits.shape[0]),
        "bits": int(bits.shape[1]),
        "ones_fraction": ones,
        "entropy": entropy,
        "mean_entropy": float(entropy.mean()),
        "dead_bits": dead,
        "mean_abs_correlation": correlation,
    }


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def _mean_abs_correlation(bits: np.ndarray) -> float:
    if bits.shape[0] < 2:
        return 0.0
    std = bits.std(axis=0)
    live = std > 0
    if live.sum() < 2:
        return 0.0
    corr = np.corrcoef(bits[:, live], rowvar=False)
    off_diagonal = corr[~np.eye(corr.shape[0], dtype=bool)]
    return float(np.abs(off_diagonal).mean())


def _as_codes(codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2:
        raise HashpaError(
            f"packed codes must be a uint8 array [N, bits/8], got {codes.dtype} with shape {codes.shape}"
        )
    return np.ascontiguousarray(codes)
