"""Where linear codes fitted on the training classes lose on new classes.

    python -m hashpa.eval.code_transfer RUN_DIR --benchmarks BENCHMARKS.md

A linear binary code of the L2-normalised float embedding x (as ``hashpa eval --baselines`` codes it)
is sign(((x - centre) @ subspace) @ rotation): a centre, a subspace of as many dimensions as bits
(PCA) and a rotation of it (ITQ's, a random one, or none). Each row fits these parts on the training
photos or on the test photos (without their labels), one part at a time, and measures the test
photos' Hamming retrieval; the float row keeps the training subspace unquantised. A row that moves
far when one part is fitted to the test photos names the part that does not transfer to new classes.
The learned hash head is a linear code of the same kind (of the embedding before its normalisation,
centred by its BatchNorm).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from hashpa.codes import check_bits
from hashpa.errors import HashpaError
from hashpa.eval.metrics import RECALL_KS, retrieval_scores
from hashpa.eval.report import add_output_options, command_line, publish
from hashpa.quantizers import LinearHasher, fit_itq, fit_pca, itq_rotation, random_rotation

log = logging.getLogger("hashpa.code_transfer")

RANDOM_ROTATIONS = 3  # seeds averaged in the random-rotation row


def transfer_rows(train: np.ndarray, test: np.ndarray, test_labels: np.ndarray, bits: int, device: str | None = None) -> list[dict]:
    """Rows of leave-one-out retrieval scores of the test photos (train float [Nt, D], test float [N, D],
    test_labels int [N]) for linear `bits`-bit codes whose centre, subspace and rotation come from
    "train", "test", "random" or "none" (each row names them), and the float training subspace."""
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    check_bits(bits, 8, train.shape[1], "--bits")
    if min(len(train), len(test)) <= bits:
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


def _mean_row(rows: list[dict]) -> dict:
    """One row holding the mean of every score of `rows` (which differ only in their scores)."""
    return {key: (float(np.mean([r[key] for r in rows])) if isinstance(value, float) else value) for key, value in rows[0].items()}


def run(args) -> dict:
    from hashpa.inference import embed_labelled, resolve_device
    from hashpa.train import RunDir, load_trained_model
    from hashpa.train.trainer import build_split

    device = resolve_device(args.device)
    model, state = load_trained_model(args.run, args.checkpoint, device)
    split = build_split(RunDir(args.run).read_config()).check()
    loader = dict(device=device, workers=args.workers)
    train = embed_labelled(model, split.train, progress="training images", **loader)
    test = embed_labelled(model, split.test, progress="test images", **loader)
    distance_device = str(device) if device.type == "cuda" else None
    rows = transfer_rows(train.embeddings, test.embeddings, test.labels, args.bits or model.config.bits, distance_device)
    return {"run": str(args.run), "checkpoint": args.checkpoint, "epoch": state["epoch"], "split": split.description,
            "train_images": len(train.labels), "test_images": len(test.labels), "rows": rows}


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
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run directory of hashpa train")
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best")
    parser.add_argument("--bits", type=int, help="code length (default: the model's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=4)
    add_output_options(parser, "transfer")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not (args.run / "config.json").is_file():
        parser.error(f"{args.run} is not a run directory (no config.json): train one first, e.g. make bench-flowers-64")
    try:
        report = run(args)
    except HashpaError as error:
        parser.error(str(error))
    publish(args, "transfer", command_line("hashpa.eval.code_transfer", argv), report, markdown(report))


if __name__ == "__main__":
    main()
