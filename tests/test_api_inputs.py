"""The public Python API's boundary (embed, search, build_index, open_index): every input that is not
what the docstring says is a HashpaError naming what to change, never a raw exception or a quietly
wrong answer."""

import numpy as np
import pytest
import torch
from PIL import Image

import hashpa
from hashpa.errors import HashpaError
from tests.conftest import make_image_folder


@pytest.fixture(scope="module")
def model(trained_run):
    return hashpa.load(trained_run, device="cpu")


@pytest.fixture(scope="module")
def ix(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("api-inputs")
    folder = make_image_folder(base / "photos", classes=3, per_class=5, size=32)
    hashpa.build_index(folder, trained_run, base / "idx", workers=0)
    return hashpa.open_index(base / "idx", device="cpu")


PICTURE = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("images,needle", [
    (torch.from_numpy(PICTURE).permute(2, 0, 1).float(), "divide it by 255"),  # 0..255 floats: would rank wrong
    (torch.full((3, 8, 8), float("nan")), "NaN"),
    (torch.rand(3, 8, 8) - 0.5, "values in [0, 1]"),
    (torch.from_numpy(PICTURE), "channels last: permute(2, 0, 1)"),
    (torch.zeros(3, 0, 0, dtype=torch.uint8), "empty image tensor"),
    (torch.zeros(3, 8, 8, dtype=torch.int32), "uint8 or float"),
    (np.ascontiguousarray(PICTURE.transpose(2, 0, 1)), "looks channels first"),  # would be 3 grey images
    (np.ascontiguousarray(PICTURE.transpose(2, 0, 1))[None], "looks channels first"),
    (np.zeros((0, 0, 3), np.uint8), "empty image array"),
    (np.zeros((0, 0), np.uint8), "empty image array"),
    (PICTURE.astype(np.float32) / 255, "(array * 255).round().astype(np.uint8)"),
    (Image.new("RGB", (0, 0)), "empty image"),
    (None, "got None"),
    (42, "cannot embed a int"),
    ([], "no images"),
])
def test_images_that_are_not_what_embed_takes_are_refused(model, images, needle):
    with pytest.raises(HashpaError, match=None) as caught:
        model.embed(images)
    assert needle in str(caught.value)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "3", None, True])
def test_a_batch_size_that_is_not_a_positive_whole_number_is_refused(model, batch_size):
    with pytest.raises(HashpaError, match="batch_size must be"):
        model.embed([PICTURE], batch_size=batch_size)


def test_float_tensors_in_zero_to_one_embed_as_their_uint8_image(model):
    as_uint8 = model.embed(torch.from_numpy(PICTURE).permute(2, 0, 1))
    as_float = model.embed(torch.from_numpy(PICTURE).permute(2, 0, 1).float() / 255)
    np.testing.assert_allclose(as_float[0], as_uint8[0], atol=1e-5)
    assert np.array_equal(as_float[1], as_uint8[1])


@pytest.mark.parametrize("k", [2.5, "3", None, True, np.float64(2)])
def test_k_must_be_a_whole_number(ix, k):
    with pytest.raises(HashpaError, match="k must be a whole number"):
        ix.search(ix.directory.float_rows([0]), k)


def test_numpy_integers_are_whole_numbers(ix):
    assert ix.search(ix.directory.float_rows([0]), np.int64(3)).ids.shape == (1, 3)


@pytest.mark.parametrize("queries,needle", [
    (np.full((1, 16), np.nan, np.float32), "NaN or infinite"),
    (np.full((2, 16), np.inf), "NaN or infinite"),
    (np.zeros((1, 16), np.float32), "all zeros"),
    (np.ones((1, 15), np.float32), "must be [Q, 16]"),
    (np.ones((0, 16), np.float32), "must be [Q, 16]"),
    (None, "give the queries"),
])
def test_query_embeddings_are_checked(ix, queries, needle):
    with pytest.raises(HashpaError) as caught:
        ix.search(queries, 3)
    assert needle in str(caught.value)


def test_unnormalised_query_embeddings_are_normalised_and_score_as_cosines(ix):
    row = ix.directory.float_rows([4])
    plain, scaled = ix.search(row, 5), ix.search(row * 1000, 5)
    assert np.array_equal(plain.ids, scaled.ids) and np.allclose(plain.scores, scaled.scores, atol=1e-6)
    assert scaled.scores.max() <= 1 + 1e-6 and scaled.ids[0, 0] == 4


@pytest.mark.parametrize("codes,needle", [
    (np.zeros((3, 2), np.uint8), "one row of 2 bytes per query"),  # 3 code rows for 1 query
    (np.zeros((1, 3), np.uint8), "[1, 2]"),
    (np.zeros((1, 2), np.int64), "packed uint8 bytes"),
])
def test_codes_must_match_the_queries(ix, codes, needle):
    with pytest.raises(HashpaError) as caught:
        ix.search(ix.directory.float_rows([0]), 3, "binary", codes=codes)
    assert needle in str(caught.value)


@pytest.mark.parametrize("options,needle", [
    ({"mode": 3}, "mode must be one of"),
    ({"mode": "cosine"}, "unknown search mode"),
    ({"shortlist": 1.5, "mode": "rerank"}, "shortlist must be a whole number"),
    ({"index": ["Flat"]}, "index must be a FAISS factory string"),
])
def test_search_options_are_checked(ix, options, needle):
    with pytest.raises(HashpaError) as caught:
        ix.search(ix.directory.float_rows([0]), 3, **options)
    assert needle in str(caught.value)


@pytest.mark.parametrize("arguments,settings,needle", [
    ({"out": None}, {}, "out must be a path"),
    ({"run": 5}, {}, "run must be a path"),
    ({}, {"batchsize": 4}, "unknown index settings: batchsize"),
    ({}, {"batch_size": "4"}, "batch_size must be int"),
    ({}, {"float16": "yes"}, "float16 must be bool"),
    ({}, {"float_indexes": [3]}, "float_indexes must be FAISS factory strings"),
    ({}, {"codes": "pq"}, "choose one of model, itq"),
])
def test_build_index_checks_its_arguments_before_writing(trained_run, tmp_path, arguments, settings, needle):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=3, size=32)
    given = {"folder": folder, "run": trained_run, "out": tmp_path / "idx", **arguments}
    with pytest.raises(HashpaError) as caught:
        hashpa.build_index(given.pop("folder"), given.pop("run"), given.pop("out"), workers=0, **settings)
    assert needle in str(caught.value) and not (tmp_path / "idx").exists()


def test_one_factory_string_is_one_index(trained_run, tmp_path):
    folder = make_image_folder(tmp_path / "photos", classes=2, per_class=3, size=32)
    summary = hashpa.build_index(folder, trained_run, tmp_path / "idx", workers=0, float_indexes="HNSW16")
    assert "float:HNSW16" in summary.indexes


@pytest.mark.parametrize("arguments,needle", [
    ({"path": None}, "an index directory is a path"),
    ({"nprobe": 2.5}, "--nprobe must be a whole number"),
    ({"ef_search": 0}, "--ef-search must be at least 1"),
])
def test_open_index_checks_its_arguments(ix, arguments, needle):
    with pytest.raises(HashpaError) as caught:
        hashpa.open_index(**{"path": ix.path, **arguments})
    assert needle in str(caught.value)
