"""Row-wise forms of the deep-cut scores equal the flat forms bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from deepcuts.models.reranking import deepcut_scores as ds


@pytest.mark.parametrize("dim", [1, 3, 7, 18, 20, 32, 50, 64, 100, 128])
def test_cosine_unexpectedness_rows_equal_the_flat_form_bit_for_bit(dim: int) -> None:
    rng = np.random.default_rng(dim)
    users = ds.unit_rows(rng.normal(size=(37, dim)).astype(np.float32))
    items = ds.unit_rows(rng.normal(size=(200, dim)).astype(np.float32))
    items[5] = 0.0  # an item without a vector
    idx = rng.integers(0, 200, size=(37, 23))
    got = ds.cosine_unexpectedness_rows(users, items[idx])
    flat = ds.cosine_unexpectedness(np.repeat(users, idx.shape[1], axis=0), items[idx.ravel()])
    assert got.dtype == np.float32 and got.shape == idx.shape
    np.testing.assert_array_equal(got.view(np.int32), flat.reshape(idx.shape).view(np.int32))


def test_cosine_unexpectedness_rows_of_no_candidates() -> None:
    got = ds.cosine_unexpectedness_rows(np.ones((4, 3), np.float32), np.ones((4, 0, 3), np.float32))
    assert got.shape == (4, 0)
