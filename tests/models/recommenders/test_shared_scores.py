"""``shared_scores``: a deep-cut arm reuses its base arm's score blocks, with identical lists."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from deepcuts.models.recommenders.base import Preference, same_state, shared_scores
from deepcuts.models.recommenders.item_cf import ItemCFRecommender
from deepcuts.models.recommenders.registry import build_recommender
from tests.models.recommenders.world import block_world, tiny_settings

USERS = np.arange(1, 22)  # user 21 is unknown: popularity, never scored


def _fitted() -> tuple[ItemCFRecommender, object]:
    settings = tiny_settings()
    interactions, items = block_world()
    item_cf = build_recommender("item_cf", settings, 7).fit(interactions, items)
    # as in the candidates step: the deep-cut arm's base is another object with the same state
    base = ItemCFRecommender.from_bytes(item_cf.to_bytes())
    long_tail = build_recommender("long_tail", settings, 7, base=base).fit(interactions, items)
    return item_cf, long_tail


def test_the_base_is_scored_once_per_batch_and_the_lists_do_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    item_cf, long_tail = _fitted()
    expected = [item_cf.recommend(USERS, 5), long_tail.recommend(USERS, 5)]
    calls: list[int] = []
    original = ItemCFRecommender._score

    def counting(self: ItemCFRecommender, rows: np.ndarray) -> np.ndarray:
        calls.append(rows.size)
        return original(self, rows)

    monkeypatch.setattr(ItemCFRecommender, "_score", counting)
    with shared_scores(["item_cf"], max_mb=64):
        got = [item_cf.recommend(USERS, 5), long_tail.recommend(USERS, 5)]
    assert calls == [20]  # one block of the 20 known users, reused by long_tail
    for a, b in zip(expected, got, strict=True):
        pd.testing.assert_frame_equal(a, b)
    calls.clear()
    with shared_scores(["item_cf"], max_mb=0):  # no room: every arm scores for itself
        item_cf.recommend(USERS, 5)
        long_tail.recommend(USERS, 5)
    assert calls == [20, 20]
    calls.clear()
    long_tail.recommend(USERS, 5)  # outside the block nothing is kept
    item_cf.recommend(USERS, 5)
    assert calls == [20, 20]


def test_a_model_with_other_weights_gets_its_own_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    item_cf, _ = _fitted()
    other = ItemCFRecommender.from_bytes(item_cf.to_bytes())
    other.weights_ = other.weights_ * 2
    with shared_scores(["item_cf"], max_mb=64):
        a = item_cf.recommend(USERS, 5)
        b = other.recommend(USERS, 5)
    known = a["user_id"].to_numpy() != 21  # the unknown user's popularity list is not scaled
    np.testing.assert_allclose(b["score"].to_numpy()[known], 2 * a["score"].to_numpy()[known], rtol=1e-6)


def test_same_state_by_hand() -> None:
    x = np.array([1.0, 2.0], dtype=np.float32)
    assert same_state({"w": x, "k": 3}, {"w": x.copy(), "k": 3})
    assert not same_state(x, x.astype(np.float64))
    assert not same_state(x, np.array([1.0, 2.5], dtype=np.float32))
    m = sp.csr_matrix(np.eye(3, dtype=np.float32))
    assert same_state(m, m.copy()) and not same_state(m, sp.csr_matrix(2 * np.eye(3, dtype=np.float32)))
    assert same_state(Preference(4.0, 0.5), Preference(4.0, 0.5))
    assert not same_state(Preference(4.0, 0.5), Preference(4.0, 1.0))
    assert not same_state([1, 2], [1, 2, 3]) and not same_state(1, 1.0)
