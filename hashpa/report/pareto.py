"""The Pareto front of a comparison's methods, and the best method within a byte budget and a speed floor.

A method is on the front of a cost when no other method is at least as good in quality and in that
cost and better in one of them: quality is Recall@1, the costs are bytes per image (fewer is
better) and batched queries per second (more is better). ``hashpa compare`` marks both fronts,
draws them, and with ``--budget-bytes`` / ``--min-qps`` names the best method that fits.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np

from hashpa.errors import HashpaError

QUALITY = "recall@1"
COSTS = {  # front name: (the row's field, whether more of it is better)
    "bytes": ("bytes_per_image", False),
    "speed": ("queries_per_second", True),
}


def pareto_front(quality: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """bool [M]: the points on the front of `quality` float [M] (higher is better) against `cost`
    float [M] (lower is better): no other point is at least as good in both and better in one.
    Equal points are all on the front."""
    quality, cost = np.asarray(quality, np.float64), np.asarray(cost, np.float64)
    at_least = (quality[None, :] >= quality[:, None]) & (cost[None, :] <= cost[:, None])  # [i, j]: j at least as good as i
    better = (quality[None, :] > quality[:, None]) | (cost[None, :] < cost[:, None])
    return ~(at_least & better).any(axis=1)


def fronts(rows: Sequence[dict]) -> dict[str, list[str]]:
    """{front name: the names of the methods on it, in `rows`' order}: empty when no row has a quality
    (unlabelled queries)."""
    if not rows or any(QUALITY not in row for row in rows):
        return {}
    quality = np.array([row[QUALITY] for row in rows])
    found = {}
    for name, (field, more_is_better) in COSTS.items():
        cost = np.array([row[field] for row in rows], np.float64)
        on = pareto_front(quality, -cost if more_is_better else cost)
        found[name] = [row["method"] for row, keep in zip(rows, on) if keep]
    return found


def check_limits(budget_bytes: float | None, min_qps: float | None) -> None:
    """A clear error for a budget or a speed floor that is not a positive number."""
    for option, value in (("--budget-bytes", budget_bytes), ("--min-qps", min_qps)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value <= 0):
            raise HashpaError(f"{option} must be a positive number, got {value!r}")


def best_within(rows: Sequence[dict], budget_bytes: float | None = None, min_qps: float | None = None) -> dict:
    """The method of highest Recall@1 among `rows` with at most `budget_bytes` bytes per image and at
    least `min_qps` queries/s (None: no limit); ties by fewer bytes, then more queries/s, then the
    rows' order. Returns {"budget_bytes", "min_qps", "method": its name or None, "reason"}."""
    check_limits(budget_bytes, min_qps)
    chosen = {"budget_bytes": budget_bytes, "min_qps": min_qps, "method": None}
    if not rows or any(QUALITY not in row for row in rows):
        return {**chosen, "reason": "no labelled queries: without Recall@1 no method can be chosen"}
    fitting = [row for row in rows if (budget_bytes is None or row["bytes_per_image"] <= budget_bytes)
               and (min_qps is None or row["queries_per_second"] >= min_qps)]
    if not fitting:
        cheapest = min(rows, key=lambda row: row["bytes_per_image"])
        fastest = max(rows, key=lambda row: row["queries_per_second"])
        return {**chosen, "reason": f"no method fits {limits_text(budget_bytes, min_qps)}: the smallest is {cheapest['method']} "
                                    f"({cheapest['bytes_per_image']:.1f} bytes per image), the fastest {fastest['method']} "
                                    f"({fastest['queries_per_second']:,.0f} queries/s)"}
    best = min(fitting, key=lambda row: (-row[QUALITY], row["bytes_per_image"], -row["queries_per_second"]))  # min() keeps the first of equals
    return {**chosen, "method": best["method"],
            "reason": f"the highest Recall@1 ({best[QUALITY]:.4f}) of the {len(fitting)} of {len(rows)} methods within "
                      f"{limits_text(budget_bytes, min_qps)}: {best['bytes_per_image']:.1f} bytes per image, "
                      f"{best['queries_per_second']:,.0f} queries/s"}


def limits_text(budget_bytes: float | None, min_qps: float | None) -> str:
    parts = ([f"{budget_bytes:g} bytes per image"] if budget_bytes is not None else []) + \
            ([f"at least {min_qps:,g} queries/s"] if min_qps is not None else [])
    return " and ".join(parts) or "no limit"
