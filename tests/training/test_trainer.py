"""End-to-end training on a small generated folder: learning happens, runs resume exactly."""

import json
import logging
from pathlib import Path

import pytest
import torch

from hashpa.data import split_folder
from hashpa.errors import HashpaError
from hashpa.runs import RunDir, load_network, resolve_config
from hashpa.training import Trainer, resume, train
from tests.conftest import make_image_folder

SETTINGS = dict(
    split="seen", test_fraction=0.3, epochs=4, batch_size=24, lr=3e-3, eval_every=2, workers=0,
    crop_scale_min=0.7, lr_decay_step=3, model=dict(backbone="smallcnn", weights="none", dim=32, bits=32),
)


def config_for(folder, out, **extra):
    return resolve_config({**SETTINGS, "data": str(folder), "out": str(out), **extra})


def test_training_beats_the_untrained_model(image_folder, tmp_path):
    trainer = Trainer(config_for(image_folder, tmp_path / "run"))
    untrained = trainer.evaluation.scores(0)
    trainer.start()
    result = trainer.fit()
    final = result.history[-1]
    assert final["float"]["recall@1"] > untrained["float"]["recall@1"] + 0.1
    assert final["codes"]["recall@1"] > untrained["codes"]["recall@1"] + 0.1
    assert final["float"]["recall@1"] > 0.8 and final["codes"]["recall@1"] > 0.7


def test_run_directory_contents(image_folder, tmp_path):
    run = tmp_path / "run"
    result = train(config_for(image_folder, run, epochs=2))
    assert {p.name for p in run.iterdir()} == {"config.json", "history.jsonl", "last.pt", "best.pt", ".hashpa.lock", ".hashpa.json"}
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("stage")) for r in history] == [(0, "start"), (1, None), (2, None), (2, "codes")]
    assert {"float", "codes", "features", "features_itq"} <= set(history[0])  # the baseline: the start and its backbone's features
    assert {"loss", "lr", "seconds", "images_per_second"} <= set(history[1])
    assert "float" not in history[1] and "expected_recall@1" in history[2]["codes"]
    assert history[3]["code_stage"]["objective"] == "proxy_anchor" and "float" in history[3]
    state = torch.load(run / "last.pt", weights_only=True)  # plain tensors and containers only
    assert state["epoch"] == 2 and state["codes_fitted_at"] == 2 and state["config"]["model"]["bits"] == 32
    model, _ = load_network(run)
    assert model.config.bits == 32 and result.best["epoch"] == 2
    with pytest.raises(HashpaError, match="--resume"):
        train(config_for(image_folder, run, epochs=2))


def test_interrupted_run_resumes_to_the_same_result(image_folder, tmp_path, monkeypatch):
    reference = train(config_for(image_folder, tmp_path / "straight"))
    original = Trainer.train_epoch
    calls = {"n": 0}

    def interrupt_in_third_epoch(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_epoch", interrupt_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config_for(image_folder, tmp_path / "interrupted"))
    monkeypatch.setattr(Trainer, "train_epoch", original)
    assert len(RunDir(tmp_path / "interrupted").read_history()) == 3  # the start and two epochs
    resumed = resume(tmp_path / "interrupted")
    assert_same_run(tmp_path / "straight", reference, tmp_path / "interrupted", resumed)


def test_a_run_interrupted_in_the_code_stage_resumes_to_the_same_result(image_folder, tmp_path, monkeypatch):
    reference = train(config_for(image_folder, tmp_path / "straight", epochs=2))
    original = Trainer.fit_codes

    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit_codes", interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(config_for(image_folder, tmp_path / "interrupted", epochs=2))
    monkeypatch.setattr(Trainer, "fit_codes", original)
    assert torch.load(tmp_path / "interrupted" / "last.pt", weights_only=True)["codes_fitted_at"] is None
    resumed = resume(tmp_path / "interrupted")
    assert [r.get("stage") for r in resumed.history] == ["start", None, None, "codes"]
    assert_same_run(tmp_path / "straight", reference, tmp_path / "interrupted", resumed)
    assert resume(tmp_path / "interrupted").history == resumed.history  # a finished run has nothing left to do


def assert_same_run(reference_dir, reference, resumed_dir, resumed):

    a = torch.load(reference_dir / "last.pt", weights_only=True)
    b = torch.load(resumed_dir / "last.pt", weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    torch.testing.assert_close(a["objective"], b["objective"], rtol=0, atol=0)
    strip = lambda h: [{k: v for k, v in r.items() if "seconds" not in k and k != "images_per_second"} for r in h]  # noqa: E731
    assert strip(resumed.history) == strip(reference.history)
    assert resumed.best == reference.best


def test_more_bits_than_the_head_reads_is_refused_before_training(image_folder, tmp_path):
    with pytest.raises(HashpaError, match="raise --dim to 64"):
        Trainer(config_for(image_folder, tmp_path / "run", model=dict(SETTINGS["model"], dim=32, bits=64)))
    Trainer(config_for(image_folder, tmp_path / "run", model=dict(SETTINGS["model"], dim=32, bits=64), hash_init="random", code_epochs=0))


def test_too_few_training_images_skip_the_code_stage_with_a_warning(image_folder, tmp_path, caplog, monkeypatch):
    def embedding_is_not_needed(*args, **kwargs):
        raise AssertionError("the image count alone decides the skip")

    monkeypatch.setattr("hashpa.training.code_steps.code_features", embedding_is_not_needed)
    result = train(config_for(image_folder, tmp_path / "run", epochs=1, eval_every=1, model=dict(SETTINGS["model"], dim=128, bits=128)))
    assert [r.get("stage") for r in result.history] == ["start", None]
    assert "code stage skipped" in caplog.text


def test_too_few_readable_training_images_skip_the_code_stage(tmp_path, caplog):
    folder = make_image_folder(tmp_path / "images", classes=4, per_class=14)
    train_samples = split_folder(folder, "seen", test_fraction=0.3).train
    assert len(train_samples) > 32
    for sample in train_samples[: len(train_samples) - 30]:
        Path(sample.path).write_bytes(b"not an image")
    result = train(config_for(folder, tmp_path / "run", epochs=1, eval_every=1))
    assert [r.get("stage") for r in result.history] == ["start", None]
    assert "found 30" in caplog.text


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(HashpaError, match="not a hashpa run directory"):
        resume(tmp_path)


def test_unreadable_training_images_are_skipped_and_counted(image_folder, tmp_path):
    (image_folder / "class_00" / "broken.png").write_bytes(b"not a png")
    split = split_folder(image_folder, "seen", test_fraction=SETTINGS["test_fraction"])
    in_training = any(s.path.name == "broken.png" for s in split.train)
    result = train(config_for(image_folder, tmp_path / "run", epochs=2, code_epochs=0))
    assert sum(r.get("skipped", 0) for r in result.history) == (2 if in_training else 0)  # in every training epoch
    assert result.skipped_images == 1  # one file, wherever it was found
    assert result.history[-1]["float"]["recall@1"] > 0.5


def test_signed_codes_through_the_straight_through_estimator_train(image_folder, tmp_path):
    result = train(config_for(image_folder, tmp_path / "run", code_relaxation="ste", codes_train_backbone=True, code_epochs=0))
    start, final = result.history[0], result.history[-1]
    assert start["stage"] == "start" and final["codes"]["recall@1"] > start["codes"]["recall@1"] + 0.2


def test_the_decoded_cache_data_path_trains_too(image_folder, tmp_path):
    result = train(config_for(image_folder, tmp_path / "run", data_path="cache", epochs=4))
    assert result.history[-1]["float"]["recall@1"] > 0.8


@pytest.mark.parametrize("clip_grad", [1e-3, 0.0])
def test_head_only_code_terms_never_change_the_float_sides_steps(image_folder, tmp_path, clip_grad):
    """With the codes training only the head, the embedding's training is the same whatever the
    code terms' weights, also when gradient clipping engages (each side is clipped on its own)."""
    backbones = []
    for weight in (1.0, 100.0):
        config = config_for(image_folder, tmp_path / f"run-{weight}", epochs=1, eval_every=5, warmup_epochs=0, hash_init="random",
                            clip_grad=clip_grad, code_weight=weight, quantization_weight=weight, codes_train_backbone=False)
        trainer = Trainer(config)
        trainer.start()
        trainer.fit()
        backbones.append({k: v for k, v in trainer.network.state_dict().items() if not k.startswith("hash_head")})
    for name, value in backbones[0].items():
        torch.testing.assert_close(backbones[1][name], value, msg=name)


def test_a_training_split_smaller_than_the_batch_trains_with_a_smaller_batch(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    folder = make_image_folder(tmp_path / "images", classes=12, per_class=10)
    config = resolve_config({"data": str(folder), "split": "half", "epochs": 1, "workers": 0, "code_epochs": 0, "out": str(tmp_path / "run"),
                             "model": dict(backbone="smallcnn", weights="none", dim=16, bits=16)})
    assert config.batch_size == 180  # the default, more than the 60 training images of the first 6 classes
    result = train(config)
    assert "the training split has 60 images, fewer than --batch-size 180: training with batches of 60" in caplog.text
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == 60
    assert result.history[1]["images_per_second"] > 0 and "float" in result.history[1]
    per_class = resolve_config({"data": str(folder), "split": "half", "per_class": 8, "out": str(tmp_path / "run2"),
                                "model": dict(backbone="smallcnn", weights="none", dim=16, bits=16)})
    assert Trainer(per_class).config.batch_size == 56  # a multiple of --per-class


def test_best_pt_holds_the_model_and_last_pt_the_training_state(image_folder, tmp_path):
    train(config_for(image_folder, tmp_path / "run", epochs=2))
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert {"optimizer", "objective"} <= set(last) and not {"optimizer", "objective"} & set(best)
    assert {"model", "config", "preprocessing", "epoch", "best"} <= set(best)
    assert (tmp_path / "run" / "best.pt").stat().st_size < 0.7 * (tmp_path / "run" / "last.pt").stat().st_size


def test_the_start_is_epoch_0_and_the_summary_says_whether_training_beat_it(image_folder, tmp_path):
    from hashpa.report.tables import train_summary

    result = train(config_for(image_folder, tmp_path / "run", epochs=0, code_epochs=0))  # --epochs 0: the baseline alone
    start = result.history[0]
    assert [(r["epoch"], r["stage"]) for r in result.history] == [(0, "start")] and result.best["stage"] == "start"
    assert start["features"]["recall@1"] > start["float"]["recall@1"] - 0.5 and 0 <= start["features_itq"]["recall@1"] <= 1
    text = train_summary(result)
    assert "Best: epoch 0 (the starting model, before any training)" in text and "No training epoch ran (--epochs 0)" in text
    model, state = load_network(tmp_path / "run")  # the starting model is a model like any other
    assert state["epoch"] == 0 and state["loaded_from"] == "best"
    trained = train(config_for(image_folder, tmp_path / "trained", epochs=4))
    assert trained.history[0]["stage"] == "start" and "Training beat the start" in train_summary(trained)


def test_codes_that_are_the_embeddings_own_signs_train_without_a_head_to_start_or_fit(image_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    config = config_for(image_folder, tmp_path / "run", code_relaxation="ste", codes_train_backbone=True, hash_projection=False)
    assert config.hash_init == "itq" and config.code_epochs > 0  # the defaults, which do not apply without a projection
    result = train(config)
    start, final = result.history[0], result.history[-1]
    assert "no hash projection to start from PCA-ITQ" in caplog.text and all(r.get("stage") != "codes" for r in result.history)
    assert final["codes"]["recall@1"] > start["codes"]["recall@1"] + 0.2
    model, _ = load_network(result.run_dir, "best")
    assert not model.hash_head.projects and model.hash_head.in_features == model.config.dim == 32


def test_a_pairwise_loss_on_the_codes_trains_them(image_folder, tmp_path):
    from hashpa.losses.multi_similarity import MultiSimilarityLoss

    config = config_for(image_folder, tmp_path / "run", code_loss="ms", code_relaxation="ste", codes_train_backbone=True, code_epochs=0,
                        hash_init="random", distill_weight=0.0, quantization_weight=0.0, decorrelation_weight=0.0)
    trainer = Trainer(config)
    assert isinstance(trainer.objective.code_metric, MultiSimilarityLoss)
    output = trainer.network(torch.randn(6, 3, 32, 32))
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for fraction, codes in ((0.0, torch.tanh(output.hash_logits)), (1.0, torch.where(output.hash_logits > 0, 1.0, -1.0))):
        trainer.objective.binary_fraction = fraction
        _, parts = trainer.objective(output, labels)
        torch.testing.assert_close(parts["codes"], MultiSimilarityLoss()(codes, labels).detach())
    trainer.start()
    result = trainer.fit()  # the only code term is Multi-Similarity: it alone moves the codes
    assert result.history[-1]["codes"]["recall@1"] > result.history[0]["codes"]["recall@1"] + 0.15
