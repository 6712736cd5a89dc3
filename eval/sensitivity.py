"""Proxy Anchor's sensitivity to alpha (scale) and delta (margin) on Flowers-102: the paper claims
stable results for alpha >= 16 and delta in [0.1, 0.4] (Kim et al., CVPR 2020, Fig. 6).

    python -m eval.sensitivity --data ../shared/data/flowers102-112 --out bench-results/paper-frontier

One run per (alpha, delta) on the unseen classes (classes 001-051 train, 052-102 test, every test
photo querying the others) with a short CPU schedule (``eval.flowers_runs``; 3 epochs by default).
alpha and delta are the float embedding's Proxy Anchor settings and, with ``--codes-too`` (the
default), also those of Proxy Anchor on the relaxed codes during the epochs; the code stage after
the last epoch (distillation from the float embedding on new classes) is the same for every cell.
Reported: Recall@1 of the float embedding and of the 64-bit codes at the end of each run (nothing
chosen on the test photos), as two tables and a heat map. Finished runs are reused and the report
is rewritten after every run, so an interrupted grid continues where it stopped.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from eval.flowers_runs import add_schedule_options, run_name, train_run, training_seconds
from eval.publish import command_line, data_missing, parse_benchmark_args, publish, save_figure
from hashpa.runs.config import TrainConfig

log = logging.getLogger("eval.sensitivity")

CLAIMED_ALPHA, CLAIMED_DELTA = 16, (0.1, 0.4)  # the paper's stable region: alpha >= 16, delta in [0.1, 0.4]


def cell_settings(alpha: float, delta: float, bits: int, codes_too: bool) -> dict:
    return {"alpha": alpha, "margin": delta, "bits": bits, "baseline": False, **({"code_alpha": alpha} if codes_too else {})}


def cell_order(alphas: list[float], deltas: list[float]) -> list[tuple[float, float]]:
    """Every (alpha, delta), those on the default's row and column first (hashpa's defaults, the
    paper's: alpha 32, delta 0.1), so that an interrupted grid has swept each setting alone."""
    cells = [(alpha, delta) for alpha in alphas for delta in deltas]
    return sorted(cells, key=lambda cell: (cell[0] != TrainConfig.alpha and cell[1] != TrainConfig.margin))


def run(args, argv: list[str] | None) -> dict:
    cells, seconds = [], 0.0
    for alpha, delta in cell_order(args.alpha, args.delta):
        result = train_run(args, run_name(alpha, delta, args.bits, *(() if args.codes_too else ("float-only",))),
                           {**cell_settings(alpha, delta, args.bits, args.codes_too), "eval_every": args.epochs})
        final = result.history[-1]
        seconds += training_seconds(result)
        cells.append({"alpha": alpha, "delta": delta, "float_recall@1": final["float"]["recall@1"], "codes_recall@1": final["codes"]["recall@1"],
                      "after_code_stage": final.get("stage") == "codes"})
        report = {"cells": cells, "bits": args.bits, "epochs": args.epochs, "training_seconds": seconds,
                  "finished": len(cells) == len(args.alpha) * len(args.delta)}
        heat_map(report, args.out / "sensitivity.png", args.plot)
        publish(args, "sensitivity", command_line("eval.sensitivity", argv), report, markdown(report, args))
    return report


def grid(report: dict, key: str) -> tuple[list, list, np.ndarray]:
    """(alphas, deltas, values [alpha, delta], NaN where a cell is not finished)."""
    alphas = sorted({c["alpha"] for c in report["cells"]})
    deltas = sorted({c["delta"] for c in report["cells"]})
    values = np.full((len(alphas), len(deltas)), np.nan)
    for c in report["cells"]:
        values[alphas.index(c["alpha"]), deltas.index(c["delta"])] = c[key]
    return alphas, deltas, values


def markdown(report: dict, args) -> str:
    lines = [f"Flowers-102 unseen classes, {args.backbone} ({args.weights} weights), {args.image_size} px, batch {args.batch_size}, "
             f"{report['epochs']} epochs, then the code stage, seed {args.seed}; Recall@1 at the end of each run; alpha and delta of Proxy Anchor on the "
             f"float embedding{' and on the relaxed codes' if args.codes_too else ''}. Training time of all runs "
             f"{report['training_seconds'] / 60:.0f} min." + ("" if report["finished"] else " (Unfinished: the cells so far.)")]
    for key, what in (("float_recall@1", "float embedding"), ("codes_recall@1", f"{report['bits']}-bit codes")):
        alphas, deltas, values = grid(report, key)
        lines += ["", f"Recall@1 of the {what} (rows alpha, columns delta):", "",
                  "| alpha \\ delta | " + " | ".join(f"{d:g}" for d in deltas) + " |", "|---|" + "---|" * len(deltas)]
        for alpha, row in zip(alphas, values):
            lines.append(f"| {alpha:g} | " + " | ".join("-" if np.isnan(v) else f"{v:.4f}" for v in row) + " |")
        inside = [c[key] for c in report["cells"] if c["alpha"] >= CLAIMED_ALPHA and CLAIMED_DELTA[0] <= c["delta"] <= CLAIMED_DELTA[1]]
        outside = [c[key] for c in report["cells"] if not (c["alpha"] >= CLAIMED_ALPHA and CLAIMED_DELTA[0] <= c["delta"] <= CLAIMED_DELTA[1])]
        if inside:
            lines += ["", f"Inside the claimed region (alpha >= {CLAIMED_ALPHA}, delta in [{CLAIMED_DELTA[0]:g}, {CLAIMED_DELTA[1]:g}]): "
                      f"{len(inside)} cells from {min(inside):.4f} to {max(inside):.4f} (spread {max(inside) - min(inside):.4f})"
                      + (f"; outside it: {len(outside)} cells from {min(outside):.4f} to {max(outside):.4f}." if outside else ".")]
    return "\n".join(lines)


def heat_map(report: dict, path: Path, copy: Path | None = None) -> None:
    """Two panels (float, codes) of Recall@1 over alpha x delta, the claimed region outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (key, title) in zip(axes, (("float_recall@1", "float embedding"), ("codes_recall@1", f"{report['bits']}-bit codes"))):
        alphas, deltas, values = grid(report, key)
        image = ax.imshow(values, cmap="viridis", origin="lower", aspect="auto")
        for i in range(len(alphas)):
            for j in range(len(deltas)):
                if not np.isnan(values[i, j]):  # dark figures on the light end of the colour map
                    light = image.norm(values[i, j]) > 0.6
                    ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8, color="black" if light else "white")
        ax.set_xticks(range(len(deltas)), [f"{d:g}" for d in deltas])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("delta (margin)")
        ax.set_ylabel("alpha (scale)")
        ax.set_title(f"Recall@1, {title}")
        rows = [i for i, a in enumerate(alphas) if a >= CLAIMED_ALPHA]
        columns = [j for j, d in enumerate(deltas) if CLAIMED_DELTA[0] <= d <= CLAIMED_DELTA[1]]
        if rows and columns:
            ax.add_patch(Rectangle((columns[0] - 0.5, rows[0] - 0.5), len(columns), len(rows), fill=False, edgecolor="red", linewidth=2))
        fig.colorbar(image, ax=ax)
    fig.suptitle("Proxy Anchor on Flowers-102 unseen classes; red: the paper's stable region")
    save_figure(fig, path, copy)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_schedule_options(parser, epochs=3, code_views=1)
    parser.add_argument("--alpha", type=float, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--delta", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.4, 0.8])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--codes-too", action=argparse.BooleanOptionalAction, default=True,
                        help="the same alpha for Proxy Anchor on the relaxed codes (delta is shared by both losses)")
    parser.add_argument("--plot", type=Path, help="also write the heat map here (e.g. docs/sensitivity.png)")
    args = parse_benchmark_args(parser, "sensitivity", argv)
    if data_missing(args.data, "sensitivity"):
        return
    run(args, argv)


if __name__ == "__main__":
    main()
