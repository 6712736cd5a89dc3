"""The `eval` command: a trained model's float embeddings against its hash codes on a test split.

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
from hashpa.devices import distance_device
from hashpa.embed import embed_labelled, load
from hashpa.fileio import write_json
from hashpa.metrics.hashing import hashing_scores, too_many_pairs
from hashpa.metrics.retrieval import RECALL_KS, REPRESENTATIONS, model_scores, retrieval_scores
from hashpa.outputs import check_replaceable, write_output
from hashpa.quantizers import enough_rows, fit_itq, fit_lsh
from hashpa.report.machine import machine_info
from hashpa.report.plots import plot_pr_curves
from hashpa.report.tables import eval_table
from hashpa.runs.data import run_config, run_split

log = logging.getLogger(__name__)

TRAIN_FITTED = {"lsh": ("LSH", fit_lsh), "pca_itq": ("PCA-ITQ", fit_itq)}  # row key: (name, fit)
DATABASE_ITQ = "PCA-ITQ fitted to the test photos"


def evaluate(run: str | Path, checkpoint: str = "best", baselines: bool = False, device: str = "auto", batch_size: int = 128,
             workers: int | None = None, out: str | Path | None = None, overwrite: bool = False, **data) -> dict:
    """Evaluate checkpoint `checkpoint` ("best" or "last") of the run directory `run`.

    The test split is the run's own unless `data` gives data settings as ``hashpa train`` takes
    them (``hashpa.runs.data.run_config``): an image folder `data` with `split` half|seen,
    `train_dir` + `test_dir`, or `dataset` under `root`.
    Returns the report (rows of Recall@K, expected Recall@K for codes, MAP@R) and, with `out`,
    writes it there as eval.json, eval.md and eval-pr.png (the precision-recall curves), under the write rule (``hashpa.outputs``: files of those
    names that hashpa did not write are replaced only with `overwrite`, checked before anything runs).
    """
    started = time.perf_counter()
    report_files = [] if out is None else [Path(out) / name for name in ("eval.json", "eval.md", "eval-pr.png")]
    for path in report_files:
        check_replaceable(path, overwrite)
    config = run_config(run, data)
    model = load(run, checkpoint, device)
    state = model.state
    chosen = run_split(config)
    loader = dict(device=model.device, batch_size=batch_size, workers=config.workers if workers is None else workers)
    classes = len(chosen.test_classes)
    queries = embed_labelled(model.network, chosen.test, num_classes=classes, progress="test images", **loader)
    gallery = None if chosen.gallery is None else embed_labelled(model.network, chosen.gallery, num_classes=classes, progress="gallery images", **loader)
    distances_on = distance_device(model.device)
    scores = model_scores(queries, gallery, distances_on)
    rows = [
        {"key": "float", "method": "float embedding", "dim": model.dim, **scores["float"]},
        {"key": "codes", "method": "the model's codes", "bits": model.bits, **scores["codes"]},
    ]
    if baselines:
        train = embed_labelled(model.network, chosen.train, num_classes=len(chosen.train_classes), progress="training images", **loader)
        rows += baseline_rows(train.embeddings, queries.embeddings, queries.labels, model.bits, "the float embedding", distances_on,
                              *(() if gallery is None else (gallery.embeddings, gallery.labels)))
    skipped = too_many_pairs(len(queries.labels), len(queries.labels) if gallery is None else len(gallery.labels))
    if skipped:
        log.info("the deep-hashing protocol is left out: %s", skipped)
    hashing = {"skipped": skipped} if skipped else {
        name: hashing_scores(queries.representation(name), queries.labels, None if gallery is None else gallery.representation(name),
                             None if gallery is None else gallery.labels, metric=metric, device=distances_on)
        for name, metric in REPRESENTATIONS.items()}
    report = {
        "run": str(run), "checkpoint": model.checkpoint, "epoch": state["epoch"],
        "after_code_stage": state.get("codes_fitted_at") == state["epoch"],
        "split": chosen.description, "queries": len(queries.labels),
        "database": len(queries.labels) - 1 if gallery is None else len(gallery.labels),
        "rows": rows, "hashing": hashing, "seconds": round(time.perf_counter() - started, 3), "machine": machine_info(),
    }
    if report_files:
        write_output(report_files[0], lambda tmp: write_json(tmp, report), overwrite)
        write_output(report_files[1], lambda tmp: tmp.write_text(eval_table(report) + "\n", encoding="utf-8"), overwrite)
        if not skipped:
            plot_pr_curves(report["hashing"], f"{report['run']} on {report['split']}", report_files[2], overwrite)
    return report


def baseline_rows(train: np.ndarray, queries: np.ndarray, query_labels: np.ndarray, bits: int, source: str, device: str | None = None,
                  gallery: np.ndarray | None = None, gallery_labels: np.ndarray | None = None, tie_aware: bool | None = None) -> list[dict]:
    """Unsupervised `bits`-bit codes of float rows (train [Nt, D], queries [Nq, D], gallery [Ng, D]
    or None to search the queries leave-one-out): LSH and PCA-ITQ fitted to `train`, PCA-ITQ fitted
    to the database itself (gallery, else queries) searched by Hamming and asymmetrically (the
    queries' projections against the database's codes). Rows are named ``"<method> of <source>"`` and
    keyed "lsh", "pca_itq", "database_itq", "database_itq_asymmetric"."""
    database, database_labels = (queries, query_labels) if gallery is None else (gallery, gallery_labels)

    def scores(x: np.ndarray, metric: str, searched: np.ndarray | None, paired: bool = False) -> dict:
        return retrieval_scores(x, query_labels, searched, None if searched is None else database_labels, metric=metric, ks=RECALL_KS,
                                tie_aware=tie_aware, device=device, paired=paired)

    rows = []
    for key, (name, fit) in TRAIN_FITTED.items():
        hasher = fit(train, bits)
        rows.append({"key": key, "method": f"{name} of {source}", "bits": bits,
                     **scores(hasher.encode(queries), "hamming", None if gallery is None else hasher.encode(gallery))})
    if not enough_rows(len(database), bits):
        log.warning("no %s rows: fitting %d bits needs more than %d test photos, found %d", DATABASE_ITQ, bits, bits, len(database))
        return rows
    fitted = fit_itq(database, bits)
    database_codes = fitted.encode(database)
    rows.append({"key": "database_itq", "method": f"{DATABASE_ITQ} of {source}", "bits": bits,
                 **scores(fitted.encode(queries), "hamming", None if gallery is None else database_codes)})
    rows.append({"key": "database_itq_asymmetric", "method": f"{DATABASE_ITQ}, asymmetric search of {source}", "bits": bits,
                 **scores(fitted.project(queries), "cosine", codes_to_signs(database_codes), paired=gallery is None)})
    return rows
