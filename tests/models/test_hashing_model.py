import numpy as np
import pytest
import torch

from hashpa.errors import HashpaError
from hashpa.models import HashingModel, ModelConfig


def test_embed_gives_normalised_floats_and_packed_codes():
    model = HashingModel(ModelConfig(backbone="smallcnn", dim=32, bits=64))
    images = torch.randn(5, 3, 32, 32)
    embeddings, codes = model.embed(images)
    assert embeddings.shape == (5, 32) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(5))
    assert codes.shape == (5, 8) and codes.dtype == torch.uint8
    logits = model.eval()(images).hash_logits
    np.testing.assert_array_equal(codes.numpy(), np.packbits(logits.detach().numpy() > 0, axis=1))
    assert model.training is False


@pytest.mark.parametrize("source", ["embedding", "features"])
def test_hash_logits_of_features_are_the_forward_logits_whose_signs_are_the_codes(source):
    model = HashingModel(ModelConfig(backbone="smallcnn", dim=16, bits=16, hash_source=source)).train()
    images = torch.randn(4, 3, 32, 32)
    embeddings, codes, features = model.embed_with_features(images)
    logits = model.hash_logits_of_features(features)
    torch.testing.assert_close(logits, model.eval()(images).hash_logits)
    np.testing.assert_array_equal(codes.numpy(), np.packbits(logits.numpy() > 0, axis=1))


def test_embed_does_not_depend_on_the_batch():
    model = HashingModel(ModelConfig(backbone="smallcnn", dim=16, bits=16))
    images = torch.randn(6, 3, 32, 32)
    full_e, full_c = model.embed(images)
    part_e, part_c = model.embed(images[:2])
    torch.testing.assert_close(full_e[:2], part_e, atol=1e-5, rtol=1e-5)
    assert torch.equal(full_c[:2], part_c)


@pytest.mark.parametrize("source", ["embedding", "features"])
def test_hash_source_and_gradient_stop(source):
    model = HashingModel(ModelConfig(backbone="smallcnn", dim=16, bits=16, hash_source=source))
    out = model(torch.randn(4, 3, 32, 32), detach_hash_input=True)
    out.hash_logits.sum().backward()
    assert model.hash_head.linear.weight.grad is not None
    assert model.embedding.weight.grad is None and all(p.grad is None for p in model.backbone.parameters())


def test_frozen_backbone_and_frozen_batchnorm():
    model = HashingModel(ModelConfig(backbone="smallcnn", dim=16, bits=16, freeze_bn=True))
    model.train()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(not m.training for m in norms)
    assert all(not p.requires_grad for m in norms for p in m.parameters())
    out = model(torch.randn(4, 3, 32, 32), freeze_backbone=True)
    (out.embeddings.sum() + out.hash_logits.sum()).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.embedding.weight.grad is not None


def test_fingerprint_identifies_the_weights():
    a = HashingModel(ModelConfig(backbone="smallcnn", dim=16, bits=16))
    b = HashingModel(ModelConfig(backbone="smallcnn", dim=16, bits=16))
    assert a.fingerprint() != b.fingerprint()
    b.load_state_dict(a.state_dict())
    assert a.fingerprint() == b.fingerprint()


@pytest.mark.parametrize("field,value,match", [("bits", 12, "multiple of 8"), ("dim", 0, "--dim"), ("hash_source", "x", "--hash-source")])
def test_config_errors(field, value, match):
    with pytest.raises(HashpaError, match=match):
        HashingModel(ModelConfig(backbone="smallcnn", **{field: value}))


def test_without_a_projection_the_codes_are_the_signs_of_the_centred_embedding():
    model = HashingModel(ModelConfig(backbone="smallcnn", dim=16, bits=16, hash_projection=False))
    assert not model.hash_head.projects and not list(model.hash_head.parameters())
    images = torch.randn(8, 3, 32, 32)
    model.train()(images)  # one training step's statistics become the running mean the codes are centred by
    embeddings, codes, features = model.embed_with_features(images)
    raw = model.embedding(features)
    centred = (raw - model.hash_head.norm.running_mean).detach().numpy()
    np.testing.assert_array_equal(codes.numpy(), np.packbits(centred > 0, axis=1))
    out = model.train()(images)
    out.hash_logits.sum().backward()  # the codes' gradient reaches the embedding and the backbone: there is nothing else to train
    assert model.embedding.weight.grad is not None and any(p.grad is not None for p in model.backbone.parameters())


@pytest.mark.parametrize("settings", [dict(dim=32, bits=16), dict(dim=16, bits=16, hash_source="features")])
def test_without_a_projection_the_embedding_must_be_the_code(settings):
    with pytest.raises(HashpaError, match="--no-hash-projection"):
        ModelConfig(backbone="smallcnn", hash_projection=False, **settings).check()
