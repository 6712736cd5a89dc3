"""hashpa train --method: each deep-hashing method trains backbone and hash layer end to end with its
own loss alone, its defining settings are its own, and runs of it resume."""

import json

import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.methods import HASHPA, METHOD_NAMES, METHODS
from hashpa.runs import resolve_config
from hashpa.training import Trainer, resume, train

SETTINGS = dict(split="seen", test_fraction=0.3, epochs=2, batch_size=24, lr=3e-3, eval_every=1, workers=0, warmup_epochs=0, baseline=False,
                model=dict(backbone="smallcnn", weights="none", dim=32, bits=16))


def config_for(folder, out, method, **extra):
    return resolve_config({**SETTINGS, "data": str(folder), "out": str(out), "method": method, **extra})


@pytest.mark.parametrize("name", [m for m in METHOD_NAMES if m != HASHPA])
def test_a_method_trains_backbone_and_hash_layer_by_its_loss_alone(image_folder, tmp_path, name):
    config = config_for(image_folder, tmp_path / name, name)
    assert (config.model.hash_source, config.model.hash_norm) == ("features", METHODS[name].settings["hash_norm"])
    assert (config.hash_init, config.code_epochs, config.codes_train_backbone) == ("random", 0, True)
    trainer = Trainer(config)
    before = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    trainer.start()
    result = trainer.fit()
    after = trainer.network.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("hash_head.linear") for k in changed)
    assert not any(k.startswith("embedding.") for k in changed)  # no float loss: the embedding head gets no gradient
    records = [r for r in result.history if "loss" in r]
    assert set(records[-1]["loss"]) == {"codes", "total"} and records[-1]["loss"]["codes"] > 0
    assert not any(r.get("stage") == "codes" for r in result.history)  # no code stage
    assert 0 <= result.history[-1]["codes"]["recall@1"] <= 1


def test_greedyhash_classifier_is_trained_saved_and_resumed(image_folder, tmp_path):
    run = tmp_path / "greedy"
    config = config_for(image_folder, run, "greedyhash", epochs=1)
    trainer = Trainer(config)
    start = trainer.objective.code_metric.classifier.weight.detach().clone()
    trainer.start()
    trainer.fit()
    state = torch.load(run / "last.pt", weights_only=True)
    trained_weight = state["objective"]["code_metric.classifier.weight"]
    assert not torch.equal(trained_weight, start)
    result = resume(run, epochs=2)
    assert result.history[-1]["epoch"] == 2 and json.loads((run / "config.json").read_text())["method"] == "greedyhash"


def test_a_methods_defining_settings_cannot_be_changed(image_folder, tmp_path):
    with pytest.raises(HashpaError, match="--method csq trains its hash layer with its own loss alone.*--code-epochs"):
        config_for(image_folder, tmp_path / "r", "csq", code_epochs=3)
    with pytest.raises(HashpaError, match="--hash-norm"):
        config_for(image_folder, tmp_path / "r", "orthohash", model=dict(SETTINGS["model"], hash_norm="none"))
    with pytest.raises(HashpaError, match="unknown --method|must be one of"):
        config_for(image_folder, tmp_path / "r", "nope")


def test_hashpas_own_design_is_the_default_and_old_configs_read_as_it(image_folder, tmp_path):
    config = config_for(image_folder, tmp_path / "r", HASHPA)
    assert (config.model.hash_source, config.model.hash_norm, config.hash_init) == ("embedding", "standardize", "itq")
    run = tmp_path / "old"
    train(config_for(image_folder, run, HASHPA, epochs=1, code_epochs=0))
    saved = json.loads((run / "config.json").read_text())
    del saved["method"], saved["model"]["hash_norm"]  # a run written before these settings existed
    (run / "config.json").write_text(json.dumps(saved))
    assert resume(run, epochs=2).history[-1]["epoch"] == 2


def test_no_evaluation_during_training_with_eval_every_0(image_folder, tmp_path):
    from hashpa.report.evaluation import evaluate

    run = tmp_path / "quiet"
    result = train(config_for(image_folder, run, "csq", eval_every=0))
    assert not any("codes" in r and "recall@1" in r.get("codes", {}) for r in result.history)
    assert not (run / "best.pt").exists()
    report = evaluate(run, checkpoint="last")
    assert report["epoch"] == 2 and 0 <= report["hashing"]["codes"]["map@all"] <= 1
