"""One contract every arm honours (in the spirit of implicit's shared RecommenderBase tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from deepcuts.arms import arm_names
from deepcuts.contracts import C
from deepcuts.models.recommenders.registry import arm_class, build_recommender
from tests.models.recommenders.world import HELD_OUT, block_world, random_world, tiny_settings

ARMS = list(arm_names())


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    return block_world()


@pytest.fixture(scope="module")
def fitted(world: tuple[pd.DataFrame, pd.DataFrame]) -> dict:
    interactions, items = world
    settings = tiny_settings()
    return {arm: build_recommender(arm, settings, seed=11).fit(interactions, items) for arm in ARMS}


def _check_lists(recs: pd.DataFrame, interactions: pd.DataFrame, n: int) -> None:
    seen = set(zip(interactions[C.USER_ID], interactions[C.ITEM_ID], strict=True))
    pairs = list(zip(recs[C.USER_ID], recs[C.ITEM_ID], strict=True))
    assert not seen.intersection(pairs), "a seen item was recommended"
    assert len(pairs) == len(set(pairs)), "duplicate (user, item) in a list"
    for _, group in recs.groupby(C.USER_ID):
        assert len(group) <= n
        assert group[C.RANK].tolist() == list(range(1, len(group) + 1))
        scores = group.sort_values(C.RANK)[C.SCORE].to_numpy()
        assert np.all(np.diff(scores) <= 0), "scores not sorted descending"
        assert np.isfinite(scores).all()


@pytest.mark.parametrize("arm", ARMS)
def test_lists_are_valid(arm: str, fitted: dict, world: tuple) -> None:
    interactions, _ = world
    users = np.unique(interactions[C.USER_ID])
    for n in (1, 3, 50):
        recs = fitted[arm].recommend(users, n)
        _check_lists(recs, interactions, n)
        assert set(recs[C.USER_ID]) <= set(users)


@pytest.mark.parametrize("arm", ARMS)
def test_held_out_checkerboard_item_comes_first(arm: str, fitted: dict) -> None:
    user, item = HELD_OUT
    recs = fitted[arm].recommend([user], 3)
    assert recs[C.ITEM_ID].iloc[0] == item, recs


@pytest.mark.parametrize("arm", ARMS)
def test_deterministic_with_the_seed(arm: str, world: tuple) -> None:
    interactions, items = world
    users = np.unique(interactions[C.USER_ID])
    settings = tiny_settings()
    a = build_recommender(arm, settings, seed=5).fit(interactions, items).recommend(users, 5)
    b = build_recommender(arm, settings, seed=5).fit(interactions, items).recommend(users, 5)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("arm", ARMS)
def test_artefact_round_trip(arm: str, fitted: dict, world: tuple) -> None:
    """The bytes the train step stores (``to_bytes``) give back the same model (``from_bytes``)."""
    interactions, _ = world
    users = np.append(np.unique(interactions[C.USER_ID]), 999)
    model = fitted[arm]
    expected = model.recommend(users, 4)
    cls = arm_class(arm)
    pd.testing.assert_frame_equal(cls.from_bytes(model.to_bytes()).recommend(users, 4), expected)


@pytest.mark.parametrize("arm", ARMS)
def test_cold_users_get_a_list(arm: str, fitted: dict) -> None:
    recs = fitted[arm].recommend([999, 1000], 3)
    assert recs.groupby(C.USER_ID).size().to_dict() == {999: 3, 1000: 3}
    # cold start = the most popular items: items 1..4 (12 ratings each) in catalog order
    assert recs[recs[C.USER_ID] == 999][C.ITEM_ID].tolist() == [1, 2, 3]


def test_loading_another_arms_artefact_is_an_error(fitted: dict) -> None:
    with pytest.raises(ValueError, match="retrain"):
        arm_class("svd").from_bytes(fitted["graph"].to_bytes())


def test_unknown_arm_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown arm"):
        build_recommender("knn", tiny_settings(), seed=1)


#: Every arm but lightfm, whose SGD epochs make hypothesis examples slow (it runs the examples above).
CHEAP_ARMS = [arm for arm in ARMS if arm != "lightfm"]


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), arm=st.sampled_from(CHEAP_ARMS))
def test_invariants_on_random_worlds(seed: int, n: int, arm: str) -> None:
    interactions, items = random_world(seed)
    model = build_recommender(arm, tiny_settings(), seed=seed).fit(interactions, items)
    users = np.append(np.unique(interactions[C.USER_ID]), [10_001])
    _check_lists(model.recommend(users, n), interactions, n)


@pytest.mark.parametrize("arm", CHEAP_ARMS)
def test_an_item_rated_zero_is_seen(arm: str, world: tuple) -> None:
    # on a 0-based scale a 0 rating is still an interaction: user 1 rated the held-out item 0
    interactions, items = world
    zero = pd.DataFrame(
        {
            C.USER_ID: [1],
            C.ITEM_ID: [5],
            C.RATING: np.float32(0.0),
            C.TS: [interactions[C.TS].max() + pd.Timedelta(minutes=1)],
        }
    )
    model = build_recommender(arm, tiny_settings(), seed=3).fit(pd.concat([interactions, zero]), items)
    assert 5 not in model.recommend([1], 10)[C.ITEM_ID].tolist()
