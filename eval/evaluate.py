"""``hashpa eval``: a trained model's float embeddings against its hash codes on a test split.

The run's own split by default (what its training evaluated), or another folder or paper dataset.
With baselines, unsupervised codes of the same float embedding and length show what the learned
codes add: LSH and PCA-ITQ fitted to the split's training images, and PCA-ITQ fitted to the test
photos themselves (no labels; what ``hashpa index --codes itq`` does), also searched asymmetrically.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from hashpa.codes import codes_to_signs
from hashpa.eval.metrics import RECALL_KS, model_scores, retrieval_scores
from hashpa.eval.report import describe_machine, machine_info
from hashpa.fileio import write_json_atomic, write_text_atomic
from hashpa.inference import embed_labelled, resolve_device
from hashpa.quantizers import fit_itq, fit_lsh
from hashpa.train import RunDir, load_trained_model
from hashpa.train.trainer import build_split

log = logging.getLogger(__name__)

TRAIN_FITTED = {"LSH": fit_lsh, "PCA-ITQ": fit_itq}
DATABASE_ITQ = "PCA-ITQ fitted to the test photos"


def evaluate(
    run: str | Path,
    checkpoint: str = "best",
    data: str | Path | None = None,
    dataset: str | None = None,
    root: str | Path | None = None,
    split: str | None = None,
    train_dir: str | Path | None = None,
    test_dir: str | Path | None = None,
    test_fraction: float | None = None,
    baselines: bool = False,
    device: str = "auto",
    batch_size: int = 128,
    workers: int | None = None,
    out: str | Path | None = None,
) -> dict:
    """Evaluate checkpoint `checkpoint` ("best" or "last") of the run directory `run`.

    The test split is the run's own unless data settings are given (as ``hashpa train`` takes them:
    an image folder `data` with `split` half|seen, `train_dir` + `test_dir`, or `dataset` under
    `root`). Returns the report (rows of Recall@K, expected Recall@K for codes, MAP@R) and, with
    `out`, writes it there as eval.json and eval.md.
    """
    started = time.perf_counter()
    config = RunDir(run).read_config()
    _use_data(config, data, dataset, root, split, train_dir, test_dir, test_fraction)
    target = resolve_device(device)
    model, state = load_trained_model(run, checkpoint, target)
    chosen = build_split(config).check()
    loader = dict(device=target, batch_size=batch_size, workers=config.workers if workers is None else workers)
    queries = embed_labelled(model, chosen.test, progress="test images", **loader)
    gallery = None if chosen.gallery is None else embed_labelled(model, chosen.gallery, progress="gallery images", **loader)
    distance_device = str(target) if target.type == "cuda" else None
    scores = model_scores(queries, gallery, distance_device)
    bits = model.config.bits
    rows = [
        {"method": "float embedding", "dim": model.config.dim, **scores["float"]},
        {"method": "the model's codes", "bits": bits, **scores["codes"]},
    ]
    if baselines:
        train = embed_labelled(model, chosen.train, progress="training images", **loader)
        rows += baseline_rows(train.embeddings, queries.embeddings, queries.labels, bits, "the float embedding", distance_device,
                              *(() if gallery is None else (gallery.embeddings, gallery.labels)))
    report = {
        "run": str(run), "checkpoint": checkpoint, "epoch": state["epoch"],
        "after_code_stage": state.get("codes_fitted_at") == state["epoch"],
        "split": chosen.description, "queries": len(queries.labels),
        "database": len(queries.labels) - 1 if gallery is None else len(gallery.labels),
        "rows": rows, "seconds": round(time.perf_counter() - started, 3), "machine": machine_info(),
    }
    if out is not None:
        write_json_atomic(Path(out) / "eval.json", report)
        write_text_atomic(Path(out) / "eval.md", markdown(report) + "\n")
    return report


def _use_data(config, data, dataset, root, split, train_dir, test_dir, test_fraction) -> None:
    """Point the run's config at other data, when any is given."""
    if data or dataset or root or train_dir or test_dir:
        config.dataset = dataset or "folder"
        config.data, config.root = _text(data), _text(root)
        config.train_dir, config.test_dir = _text(train_dir), _text(test_dir)
    if split:
        config.split = split
    if test_fraction is not None:
        config.test_fraction = test_fraction


def _text(path: str | Path | None) -> str | None:
    return None if path is None else str(path)


def baseline_rows(train: np.ndarray, queries: np.ndarray, query_labels: np.ndarray, bits: int, source: str, device: str | None = None,
                  gallery: np.ndarray | None = None, gallery_labels: np.ndarray | None = None, tie_aware: bool | None = None) -> list[dict]:
    """Unsupervised `bits`-bit codes of float rows (train [Nt, D], queries [Nq, D], gallery [Ng, D]
    or None to search the queries leave-one-out): LSH and PCA-ITQ fitted to `train`, PCA-ITQ fitted
    to the database itself (gallery, else queries) searched by Hamming and asymmetrically (the
    queries' projections against the database's codes). Rows are named "<method> of <source>"."""
    database, database_labels = (queries, query_labels) if gallery is None else (gallery, gallery_labels)

    def scores(x: np.ndarray, metric: str, searched: np.ndarray | None, paired: bool = False) -> dict:
        return retrieval_scores(x, query_labels, searched, None if searched is None else database_labels, metric=metric, ks=RECALL_KS,
                                tie_aware=tie_aware, device=device, paired=paired)

    rows = []
    for name, fit in TRAIN_FITTED.items():
        hasher = fit(train, bits)
        rows.append({"method": f"{name} of {source}", "bits": bits,
                     **scores(hasher.encode(queries), "hamming", None if gallery is None else hasher.encode(gallery))})
    if len(database) <= bits:
        log.warning("no %s rows: fitting %d bits needs more than %d test photos, found %d", DATABASE_ITQ, bits, bits, len(database))
        return rows
    fitted = fit_itq(database, bits)
    database_codes = fitted.encode(database)
    rows.append({"method": f"{DATABASE_ITQ} of {source}", "bits": bits,
                 **scores(fitted.encode(queries), "hamming", None if gallery is None else database_codes)})
    rows.append({"method": f"{DATABASE_ITQ}, asymmetric search of {source}", "bits": bits,
                 **scores(fitted.project(queries), "cosine", codes_to_signs(database_codes), paired=gallery is None)})
    return rows


def markdown(report: dict) -> str:
    """The report as a Markdown table with a header line."""
    after = " after the code stage" if report["after_code_stage"] else ""
    ks = [k for k in RECALL_KS if f"recall@{k}" in report["rows"][0]]
    lines = [
        f"{report['run']} ({report['checkpoint']}: epoch {report['epoch']}{after}) on {report['split']}: "
        f"{report['queries']:,} queries, {report['database']:,} database images each",
        "",
        "| method | size | " + " | ".join(f"R@{k}" for k in ks) + " | expected R@1 (ties) | MAP@R |",
        "|---|---|" + "---|" * len(ks) + "---|---|",
    ]
    for row in report["rows"]:
        size = f"{row['bits']} bits" if "bits" in row else f"{row['dim']}-d"
        expected = f"{row['expected_recall@1']:.4f}" if "expected_recall@1" in row else "-"
        lines.append(f"| {row['method']} | {size} | " + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in ks) + f" | {expected} | {row['map@r']:.4f} |")
    if len(report["rows"]) > 2:
        lines.append("\nLSH and PCA-ITQ rows are fitted to the training images; \"fitted to the test photos\" to the database "
                     "itself, without labels (hashpa index --codes itq); asymmetric: the queries' real-valued projections against those codes.")
    lines.append(f"\n{report['seconds']:.0f} s on {describe_machine(report['machine'])}")
    return "\n".join(lines)
