import numpy as np
import pytest
import torch

from hashpa.codes import (
    bit_statistics,
    check_bits,
    code_strings,
    codes_to_signs,
    hamming_distances,
    pack_codes,
    to_bitarrays,
    unpack_codes,
)
from hashpa.errors import HashpaError


def test_pack_codes_matches_numpy_packbits_order():
    logits = torch.randn(50, 64)
    packed = pack_codes(logits).numpy()
    assert packed.dtype == np.uint8 and packed.shape == (50, 8)
    np.testing.assert_array_equal(packed, np.packbits(logits.numpy() > 0, axis=1))


def test_zero_preactivation_is_bit_zero_and_first_bit_is_msb():
    logits = torch.zeros(1, 16)
    logits[0, 0] = 1.0  # bit 0 -> most significant bit of byte 0
    logits[0, 15] = 2.0  # bit 15 -> least significant bit of byte 1
    assert pack_codes(logits).tolist() == [[128, 1]]


def test_unpack_and_signs_round_trip():
    codes = np.random.default_rng(0).integers(0, 256, (10, 4), dtype=np.uint8)
    bits = unpack_codes(codes)
    np.testing.assert_array_equal(np.packbits(bits, axis=1), codes)
    np.testing.assert_array_equal(codes_to_signs(codes), bits * 2.0 - 1.0)


def test_hamming_distances_against_bit_loop():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (7, 8), dtype=np.uint8)
    b = rng.integers(0, 256, (5, 8), dtype=np.uint8)
    expected = [[sum(bin(x ^ y).count("1") for x, y in zip(ra, rb)) for rb in b] for ra in a]
    np.testing.assert_array_equal(hamming_distances(a, b), expected)


def test_bit_strings_follow_the_packed_order():
    codes = np.array([[0b10110000, 0b00000001]], dtype=np.uint8)
    assert code_strings(codes) == ["1011000000000001"]
    assert to_bitarrays(codes)[0].count(1) == 4


def test_bit_statistics_balance_and_entropy():
    codes = np.packbits(np.array([[1, 0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0, 0]], dtype=np.uint8), axis=1)
    stats = bit_statistics(codes)
    np.testing.assert_allclose(stats["ones_fraction"], [0.5, 0, 1, 0.5, 0, 0, 0, 0])
    np.testing.assert_allclose(stats["entropy"], [1, 0, 0, 1, 0, 0, 0, 0])
    assert stats["dead_bits"] == 6


@pytest.mark.parametrize("bits", [1, 7, 12])
def test_codes_are_packed_in_whole_bytes(bits):
    with pytest.raises(HashpaError, match="multiple of 8"):
        pack_codes(torch.randn(2, bits))


@pytest.mark.parametrize("bits", [0, 8, 12, 264, 2048, True, 64.0])
def test_the_code_lengths_hashpa_trains_and_fits(bits):
    with pytest.raises(HashpaError, match="--bits must be a multiple of 8 from 16 to 256"):
        check_bits(bits)
    assert [check_bits(b) for b in (16, 64, 256)] == [16, 64, 256]
    with pytest.raises(HashpaError, match=r"from 16 to 32 \(the embedding dimension\)"):
        check_bits(64, at_most=32, why="the embedding dimension")


def test_codes_must_be_uint8():
    with pytest.raises(HashpaError, match="uint8"):
        unpack_codes(np.zeros((2, 2), dtype=np.int32))
