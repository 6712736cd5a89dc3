"""Where linear codes fitted on the training classes lose on new classes.

    python -m eval.code_transfer RUN_DIR --benchmarks BENCHMARKS.md

A linear binary code of the L2-normalised float embedding x (as ``hashpa eval --baselines`` codes it)
is sign(((x - centre) @ subspace) @ rotation): a centre, a subspace of as many dimensions as bits
(PCA) and a rotation of it (ITQ's, a random one, or none). Each row fits these parts on the training
photos or on the test photos (without their labels), one part at a time, and measures the test
photos' Hamming retrieval; the float row keeps the training subspace unquantised. A row that moves
far when one part is fitted to the test photos names the part that does not transfer to new classes.
The learned hash head is a linear code of the same kind (of the embedding before its normalisation,
centred by its BatchNorm). A third table keeps the learned head and moves its thresholds to the test
photos (index-time re-centring, no labels): each bit's threshold at the median (or mean) of its
pre-activation over the photos, and ITQ's rotation of the re-centred pre-activations.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

import hashpa
from eval.publish import command_line, parse_benchmark_args, publish
from hashpa.codes import check_bits, codes_to_signs
from hashpa.devices import distance_device
from hashpa.embed import embed_labelled
from hashpa.errors import HashpaError
from hashpa.metrics.retrieval import RECALL_KS, retrieval_scores
from hashpa.quantizers import LinearHasher, enough_rows, fit_itq, fit_pca, itq_rotation, pack_signs, random_rotation
from hashpa.runs.data import run_config, run_split

log = logging.getLogger("eval.code_transfer")

RANDOM_ROTATIONS = 3  # seeds averaged in the random-rotation row


def transfer_rows(train: np.ndarray, test: np.ndarray, test_labels: np.ndarray, bits: int, device: str | None = None) -> list[dict]:
    """Rows of leave-one-out retrieval scores of the test photos (train float [Nt, D], test float [N, D],
    test_labels int [N]) for linear `bits`-bit codes whose centre, subspace and rotation come from
    "train", "test", "random" or "none" (each row names them), and the float training subspace."""
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    check_bits(bits, "--bits", at_most=train.shape[1], why="the embedding dimension")
    if not enough_rows(min(len(train), len(test)), bits):
        raise HashpaError(f"fitting {bits}-bit codes needs more than {bits} training and test photos, got {len(train)} and {len(test)}: "
                          "use a larger split or fewer --bits")
    train_mean, train_pca = fit_pca(train, bits)
    test_mean = test.mean(axis=0)
    train_rotation = itq_rotation((train - train_mean) @ train_pca)
    test_rotation = itq_rotation((test - test_mean) @ train_pca)

    def codes_row(centre: str, subspace: str, rotation: str, hasher: LinearHasher) -> dict:
        return {"centre": centre, "subspace": subspace, "rotation": rotation, "bits": bits,
                **retrieval_scores(hasher.encode(test), test_labels, metric="hamming", ks=RECALL_KS, device=device)}

    def linear(mean: np.ndarray, projection: np.ndarray) -> LinearHasher:
        return LinearHasher(mean.astype(np.float32), projection.astype(np.float32))

    rows = [
        codes_row("train", "train", "train (ITQ)", linear(train_mean, train_pca @ train_rotation)),
        codes_row("test", "train", "train (ITQ)", linear(test_mean, train_pca @ train_rotation)),
        codes_row("train", "train", "none", linear(train_mean, train_pca)),
        _mean_row([codes_row("train", "train", "random", linear(train_mean, train_pca @ random_rotation(bits, seed)))
                   for seed in range(RANDOM_ROTATIONS)]),
        codes_row("test", "train", "test (ITQ)", linear(test_mean, train_pca @ test_rotation)),
        codes_row("test", "test", "test (ITQ)", fit_itq(test, bits)),
    ]
    projected = ((test - train_mean) @ train_pca).astype(np.float32)
    rows.append({"centre": "train", "subspace": "train", "rotation": "float, no quantisation", "dim": bits,
                 **retrieval_scores(projected, test_labels, metric="cosine", ks=RECALL_KS, device=device)})
    return rows


def outside_queries(test: np.ndarray, labels: np.ndarray, bits: int, train: np.ndarray | None = None, device: str | None = None) -> dict:
    """Codes fitted to a database, queried by photos outside the fit: every other photo of each class
    (by position) is the database, the rest query it (test float [N, D], labels int [N]). Rows: the
    float embedding; PCA-ITQ fitted to the database alone and to database and queries together, each
    searched by Hamming distance and asymmetrically; PCA-ITQ fitted on `train` (float [Nt, D]) if given.
    Returns {"database": photos, "queries": photos, "rows": [...]}."""
    test = np.asarray(test, np.float32)
    in_database = _every_other_of_each_class(labels)
    database, queries = test[in_database], test[~in_database]
    if not enough_rows(len(database), bits):
        raise HashpaError(f"fitting {bits}-bit codes to half of the test photos needs more than {2 * bits} of them, got {len(test)}")

    def scores(q: np.ndarray, db: np.ndarray, metric: str) -> dict:
        return retrieval_scores(q, labels[~in_database], db, labels[in_database], metric=metric, ks=RECALL_KS, device=device)

    rows = [{"method": "float embedding", "fitted to": "-", "dim": test.shape[1], **scores(queries, database, "cosine")}]
    for fitted_to, fit_rows in (("the database", database), ("database and queries", test)):
        hasher = fit_itq(fit_rows, bits)
        codes = hasher.encode(database)
        rows.append({"method": "PCA-ITQ, Hamming", "fitted to": fitted_to, "bits": bits, **scores(hasher.encode(queries), codes, "hamming")})
        rows.append({"method": "PCA-ITQ, asymmetric", "fitted to": fitted_to, "bits": bits,
                     **scores(hasher.project(queries), codes_to_signs(codes), "cosine")})
    if train is not None:
        hasher = fit_itq(train, bits)
        rows.append({"method": "PCA-ITQ, Hamming", "fitted to": "the training photos", "bits": bits,
                     **scores(hasher.encode(queries), hasher.encode(database), "hamming")})
    return {"database": len(database), "queries": len(queries), "rows": rows}


def median_thresholds(logits: np.ndarray) -> np.ndarray:
    """Each bit's median pre-activation over a folder: float [N, bits] -> float64 [bits], the threshold
    that splits the folder's photos in half on every bit."""
    return np.median(np.asarray(logits, np.float64), axis=0)


def recentring_rows(logits: np.ndarray, labels: np.ndarray, device: str | None = None) -> list[dict]:
    """The learned hash head's codes of the test photos (pre-activations float [N, bits], labels int [N])
    with thresholds as trained (zero: its BatchNorm centre of the training photos), moved to the test
    photos' per-bit median or mean, and with ITQ's rotation of the re-centred pre-activations; then
    the median fitted to every other photo of each class (the database) and the rest querying it.
    Leave-one-out Hamming retrieval scores."""
    logits = np.asarray(logits, np.float64)
    bits = logits.shape[1]
    median = median_thresholds(logits)

    def hamming(queries: np.ndarray, query_labels: np.ndarray, database: np.ndarray | None = None, database_labels=None) -> dict:
        return {"bits": bits, **retrieval_scores(pack_signs(queries), query_labels, None if database is None else pack_signs(database),
                                                 database_labels, metric="hamming", ks=RECALL_KS, device=device)}

    rows = [{"thresholds": "as trained (BatchNorm centre of the training photos)", **hamming(logits, labels)},
            {"thresholds": "median of the test photos", **hamming(logits - median, labels)},
            {"thresholds": "mean of the test photos", **hamming(logits - logits.mean(axis=0), labels)},
            {"thresholds": "median of the test photos, then ITQ's rotation of them", **hamming((logits - median) @ itq_rotation(logits - median), labels)}]
    in_database = _every_other_of_each_class(labels)
    database, queries = logits[in_database], logits[~in_database]
    for name, centre in (("as trained, database half queried by the other half", 0.0),
                         ("median of the database half, queried by the other half", median_thresholds(database))):
        rows.append({"thresholds": name, **hamming(queries - centre, labels[~in_database], database - centre, labels[in_database])})
    return rows


def _every_other_of_each_class(labels: np.ndarray) -> np.ndarray:
    """bool [N]: every other photo of each class (by position), the database of the outside-query tables."""
    chosen = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        chosen[np.flatnonzero(labels == label)[::2]] = True
    return chosen


def _mean_row(rows: list[dict]) -> dict:
    """One row holding the mean of every score of `rows` (which differ only in their scores)."""
    return {key: (float(np.mean([r[key] for r in rows])) if isinstance(value, float) else value) for key, value in rows[0].items()}


def run(args) -> dict:
    model = hashpa.load(args.run, args.checkpoint, args.device)
    split = run_split(run_config(args.run))
    loader = dict(device=model.device, workers=args.workers)
    train = embed_labelled(model.network, split.train, progress="training images", **loader)
    test = embed_labelled(model.network, split.test, progress="test images", output="embed_and_features", **loader)
    logits = model.network.hash_logits_of_features(torch.from_numpy(test.features).to(model.device)).cpu().numpy()
    distances_on = distance_device(model.device)
    bits = args.bits or model.bits
    return {"run": str(args.run), "checkpoint": args.checkpoint, "epoch": model.state["epoch"], "split": split.description,
            "train_images": len(train.labels), "test_images": len(test.labels),
            "rows": transfer_rows(train.embeddings, test.embeddings, test.labels, bits, distances_on),
            "outside_queries": outside_queries(test.embeddings, test.labels, bits, train.embeddings, distances_on),
            "recentring": recentring_rows(logits, test.labels, distances_on)}


def markdown(report: dict) -> str:
    lines = [f"{report['run']} ({report['checkpoint']}: epoch {report['epoch']}), {report['split']}: codes of the float embedding "
             f"fitted on {report['train_images']:,} training photos or on the {report['test_images']:,} test photos "
             "(no labels), each test photo querying the others.", "",
             "| centre | subspace (PCA) | rotation | size | R@1 | R@2 | R@4 | R@8 | expected R@1 (ties) | MAP@R |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["rows"]:
        size = f"{row['bits']} bits" if "bits" in row else f"{row['dim']}-d float"
        expected = f"{row['expected_recall@1']:.4f}" if "expected_recall@1" in row else "-"
        lines.append(f"| {row['centre']} | {row['subspace']} | {row['rotation']} | {size} | "
                     + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in RECALL_KS) + f" | {expected} | {row['map@r']:.4f} |")
    lines.append(f"\nrandom: the mean of {RANDOM_ROTATIONS} seeded random rotations; train (ITQ) is PCA-ITQ as `hashpa eval --baselines` "
                 "fits it; test (ITQ) with the training subspace is ITQ's rotation of the test photos' projections.")
    outside = report["outside_queries"]
    lines += ["", f"Codes fitted to a database, queried from outside the fit: every other test photo of each class is the database "
              f"({outside['database']:,} photos), the other {outside['queries']:,} query it.", "",
              "| method | fitted to | size | R@1 | R@2 | R@4 | R@8 | MAP@R |", "|---|---|---|---|---|---|---|---|"]
    for row in outside["rows"]:
        size = f"{row['bits']} bits" if "bits" in row else f"{row['dim']}-d float"
        lines.append(f"| {row['method']} | {row['fitted to']} | {size} | " + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in RECALL_KS)
                     + f" | {row['map@r']:.4f} |")
    lines += ["", f"The learned {report['recentring'][0]['bits']}-bit hash head with its thresholds moved to the test photos (no labels):", "",
              "| thresholds | R@1 | R@2 | R@4 | R@8 | expected R@1 (ties) | MAP@R |", "|---|---|---|---|---|---|---|"]
    for row in report["recentring"]:
        lines.append(f"| {row['thresholds']} | " + " | ".join(f"{row[f'recall@{k}']:.4f}" for k in RECALL_KS)
                     + f" | {row['expected_recall@1']:.4f} | {row['map@r']:.4f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory of hashpa train")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--bits", type=int, help="code length (default: the model's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4)
    args = parse_benchmark_args(parser, "transfer", argv)
    if not (args.run / "config.json").is_file():
        parser.error(f"{args.run} is not a run directory (no config.json): train one first, e.g. make bench-flowers-64")
    try:
        report = run(args)
    except HashpaError as error:
        parser.error(str(error))
    publish(args, "transfer", command_line("eval.code_transfer", argv), report, markdown(report))


if __name__ == "__main__":
    main()
