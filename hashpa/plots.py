"""Pictures: a grid of queries and their results."""

from __future__ import annotations

from pathlib import Path

from hashpa.fileio import atomic_path


def result_grid(results, index_dir: str | Path, path: str | Path, thumb: int = 96) -> None:
    """One row per query: the query, then its results; green/red borders where labels are known.

    A result is a hit when its label equals the query folder's name (the query's parent folder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from hashpa.search import OpenIndex

    root = Path(OpenIndex(index_dir).meta["folder"])
    columns = 1 + max(len(r.hits) for r in results)
    fig, axes = plt.subplots(len(results), columns, figsize=(columns * thumb / 72, len(results) * (thumb + 18) / 72), squeeze=False)
    for row, result in zip(axes, results):
        query_label = Path(result.query).parent.name
        _show(row[0], Image.open(result.query), "query", "black")
        for ax, hit in zip(row[1:], result.hits):
            colour = "grey" if hit.label is None else ("green" if hit.label == query_label else "red")
            _show(ax, Image.open(root / hit.path), f"{hit.rank}: {hit.score:.3g}", colour)
        for ax in row[1 + len(result.hits):]:
            ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=72)
    plt.close(fig)


def _show(ax, image, title: str, colour: str) -> None:
    ax.imshow(image.convert("RGB"))
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
