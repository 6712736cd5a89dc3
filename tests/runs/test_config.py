import pytest

from hashpa.errors import HashpaError
from hashpa.runs import TrainConfig, resolve_config


def test_presets_then_user_overrides():
    config = resolve_config({"bits": 32, "epochs": None, "lr": 0.01})
    assert config.model.backbone == "smallcnn" and config.model.bits == 32
    assert config.lr == 0.01 and config.epochs == 12 and config.split == "seen"
    folder = resolve_config({"data": "x"})
    assert folder.model.backbone == "tf_efficientnet_lite0" and folder.model.weights == "imagenet"
    cub = resolve_config({"dataset": "cub", "root": "r"})
    assert cub.model.backbone == "bn_inception" and cub.model.freeze_bn and cub.batch_size == 180 and cub.lr == 1e-4


def test_json_round_trip(tmp_path):
    config = resolve_config({"bits": 128})
    path = tmp_path / "config.json"
    path.write_text(__import__("json").dumps(config.to_dict()))
    assert TrainConfig.load(path) == config


def test_a_saved_config_without_a_later_setting_keeps_what_its_run_did(tmp_path):
    values = resolve_config({}).to_dict()
    assert values.pop("code_validation") == 0.2  # today's default
    path = tmp_path / "config.json"
    path.write_text(__import__("json").dumps(values))
    assert TrainConfig.load(path).code_validation == 0.0  # the stage of runs written before it had no validation


@pytest.mark.parametrize("overrides,match", [
    ({"epochs": -1}, "--epochs"), ({"schedule": "linear"}, "--schedule"),
    ({"bits": 512}, "from 16 to 256"), ({"bits": 12}, "from 16 to 256"), ({"bits": 20}, "multiple of 8")])
def test_invalid_settings(overrides, match):
    with pytest.raises(HashpaError, match=match):
        resolve_config(overrides)


def test_unknown_keys_are_rejected():
    with pytest.raises(HashpaError, match="unknown settings: colour"):
        TrainConfig.from_dict({"colour": "red"})
