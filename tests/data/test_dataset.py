"""The data set type's helpers: class-balanced subsets."""

import numpy as np
import pytest

from jaxcnn.data.dataset import balanced_subset


def test_balanced_subset_is_deterministic_balanced_and_nested():
    labels = np.random.default_rng(1).integers(0, 10, 5000)
    small, again = balanced_subset(labels, 100, seed=7), balanced_subset(labels, 100, seed=7)
    np.testing.assert_array_equal(small, again)
    assert np.bincount(labels[small], minlength=10).tolist() == [10] * 10
    assert len(np.unique(small)) == 100
    assert np.bincount(labels[balanced_subset(labels, 23, seed=7)], minlength=10).tolist() == [3] * 3 + [2] * 7
    assert set(small) <= set(balanced_subset(labels, 1000, seed=7))
    assert not np.array_equal(small, balanced_subset(labels, 100, seed=8))


def test_balanced_subset_refuses_a_class_too_small_for_its_share():
    labels = np.array([0] * 50 + [1] * 3)
    with pytest.raises(ValueError, match="needs 5 examples of class 1"):
        balanced_subset(labels, 10, seed=0)
