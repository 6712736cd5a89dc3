"""Pictures: a grid of queries and their results, and compare's quality against speed."""

from __future__ import annotations

from pathlib import Path

from hashpa.outputs import write_output


def result_grid(results, index_dir: str | Path, path: str | Path, thumb: int = 96, overwrite: bool = False) -> None:
    """One row per query (``hashpa.search.QueryResult``): the query, then its results; green/red
    borders where both the query's and a result's labels are known. Written under the write rule
    (``hashpa.outputs``): an existing file hashpa did not write is replaced only with `overwrite`."""
    from hashpa.indexdir.layout import image_root, read_meta

    root = image_root(index_dir, read_meta(index_dir))
    plt = _pyplot()
    columns = 1 + max(len(r.hits) for r in results)
    fig, axes = plt.subplots(len(results), columns, figsize=(columns * thumb / 72, len(results) * (thumb + 18) / 72), squeeze=False)
    for row, result in zip(axes, results):
        _show(row[0], _picture(result.query), "query", "black")
        for ax, hit in zip(row[1:], result.hits):
            colour = "grey" if hit.label is None or result.label is None else ("green" if hit.label == result.label else "red")
            _show(ax, _picture(root / hit.path), f"{hit.rank}: {hit.score:.3g}", colour)
        for ax in row[1 + len(result.hits):]:
            ax.axis("off")
    _save(fig, path, dpi=72, overwrite=overwrite)


def plot_compare(report: dict, path: Path, overwrite: bool = False) -> None:
    """Two panels of a compare report, one point per method: Recall@1 against bytes per image and
    against batched queries/s (both log scale). Where the queries are labelled, each panel draws its
    Pareto front (``hashpa.report.pareto``) and names only the methods on it, the others grey and
    unnamed (compare.md lists them); the byte budget and speed floor as dashed lines, the chosen
    method as a star. Without labels every method is named on the axis."""
    plt = _pyplot()
    rows, fronts = report["methods"], report.get("fronts", {})
    choice = report.get("choice", {})
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2), sharey=True)
    panels = (("bytes", "bytes_per_image", "bytes per image (log scale)", choice.get("budget_bytes")),
              ("speed", "queries_per_second", "queries per second (batched, log scale)", choice.get("min_qps")))
    for ax, (front_name, key, label, limit) in zip(axes, panels):
        members = fronts.get(front_name)
        on = [row for row in rows if members is None or row["method"] in members]
        off = [row for row in rows if row not in on]
        ax.scatter([row[key] for row in off], [row.get("recall@1", 0.0) for row in off], s=18, color="0.7", zorder=2)
        for row in on:  # without labels only the cost is known: the points sit on the axis
            ax.scatter(row[key], row.get("recall@1", 0.0), s=40, zorder=3)
            text = row["method"] + (f", {row['queries_per_second']:,.0f} q/s" if key == "bytes_per_image" else f", {row['bytes_per_image']:.0f} B")
            ax.annotate(text, (row[key], row.get("recall@1", 0.0)), textcoords="offset points", xytext=(5, 4), fontsize=7)
        if members:
            line = sorted(on, key=lambda row: row[key])
            ax.plot([row[key] for row in line], [row["recall@1"] for row in line], color="0.3", linewidth=0.8, drawstyle="steps-post"
                    if key == "bytes_per_image" else "steps-pre", zorder=1)
        if limit is not None:
            ax.axvline(limit, color="tab:red", linestyle="--", linewidth=0.8)
        if choice.get("method"):
            best = next(row for row in rows if row["method"] == choice["method"])
            ax.scatter(best[key], best["recall@1"], s=160, marker="*", color="tab:red", zorder=4)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("Recall@1")
    off_fronts = [len(rows) - len(fronts[name]) for name in ("bytes", "speed")] if fronts else None
    unnamed = f"; grey: {off_fronts[0]} / {off_fronts[1]} methods off the fronts, in compare.md" if fronts else ""
    fig.suptitle(f"{report['database']:,} images, {report['bits']}-bit codes vs {report['dim']}-d floats{unnamed}", fontsize=9)
    _save(fig, path, dpi=120, overwrite=overwrite)


def plot_pr_curves(hashing: dict, title: str, path: Path, overwrite: bool = False) -> None:
    """Precision against recall (``hashpa.metrics.hashing``'s curves) of each representation in
    `hashing` ({name: scores}): by rank cut-off for every one, and by Hamming radius for codes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name, scores in hashing.items():
        rank = scores["pr_curve_rank"]
        ax.plot(rank["recall"], rank["precision"], marker=".", label=f"{name}, by rank (mAP@all {scores['map@all']:.3f})")
        radius = scores.get("pr_curve_radius")
        if radius:
            points = [(r, p) for r, p in zip(radius["recall"], radius["precision"]) if p is not None]
            ax.plot(*zip(*points), marker="x", linestyle="--", label=f"{name}, by Hamming radius")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    _save(fig, path, dpi=110, overwrite=overwrite)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path, dpi: int, overwrite: bool) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        write_output(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi), overwrite)
    finally:
        plt.close(fig)


def _picture(path: Path):
    """The image at `path` as the index reads it (decoded, upright), or a grey tile with a warning when
    it can no longer be read (deleted, changed, not a regular file)."""
    from PIL import Image

    from hashpa.data.decode import read_rgb

    picture = read_rgb(Path(path))
    return picture if picture is not None else Image.new("RGB", (32, 32), (128, 128, 128))


def _show(ax, image, title: str, colour: str) -> None:
    ax.imshow(image)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
