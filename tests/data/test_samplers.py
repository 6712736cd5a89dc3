import pytest

from hashpa.data.samplers import ClassBalancedBatches, ShuffledBatches
from hashpa.errors import HashpaError


def test_shuffled_batches_depend_only_on_seed_and_epoch():
    sampler = ShuffledBatches(50, 8, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert len(first) == 6 and all(len(b) == 8 for b in first)
    assert len({i for b in first for i in b}) == 48
    other = ShuffledBatches(50, 8, seed=3)
    other.set_epoch(2)
    assert list(other) == first
    other.set_epoch(3)
    assert list(other) != first


def test_class_balanced_batches_have_m_per_class():
    labels = [i % 10 for i in range(100)] + [10]  # class 10 has a single image
    sampler = ClassBalancedBatches(labels, batch_size=12, per_class=4, seed=0)
    for batch in sampler:
        counts = {}
        for index in batch:
            counts[labels[index]] = counts.get(labels[index], 0) + 1
        assert sorted(counts.values()) == [4, 4, 4]


def test_balanced_sampler_errors():
    with pytest.raises(HashpaError, match="multiple of --per-class"):
        ClassBalancedBatches([0, 1] * 10, batch_size=10, per_class=3)
    with pytest.raises(HashpaError, match="needs 5 classes"):
        ClassBalancedBatches([0, 1] * 10, batch_size=10, per_class=2)
    with pytest.raises(HashpaError, match="fewer than the batch size"):
        ShuffledBatches(5, 8)
