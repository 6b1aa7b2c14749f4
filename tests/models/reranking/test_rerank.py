"""Greedy deep-cut re-ranker: hand-computed greedy steps and brute-force property checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepcuts.models.reranking.rerank import RerankParams, rerank

A, B, C3 = [1, 0, 0], [0, 1, 0], [0, 0, 1]

#: Targets that never bind: a test switches on only the part it checks.
FREE = dict(
    quality_floor=-1e9,
    long_tail_min=0.0,
    long_tail_max=1.0,
    min_genres=1,
    mmr_lambda=1.0,
    calibration_lambda=0.0,
    niche_boost=0.0,
)


def run(
    rel: list[float],
    genres: list[list[int]],
    *,
    quality: list[float] | None = None,
    tail: list[bool] | None = None,
    niche: list[bool] | None = None,
    profile: list[float] | None = None,
    appetite: float = 0.0,
    length: int = 3,
    **overrides: float,
):
    """Re-rank one user whose candidates are catalog items 0..K-1 in this order."""
    k = len(rel)
    g = np.asarray(genres, dtype=np.float32)
    params = RerankParams(**{**FREE, "list_length": length, **overrides})
    return rerank(
        candidates=np.arange(k)[None, :],
        relevance=np.asarray([rel], dtype=np.float32),
        genres=g,
        quality=np.asarray(quality if quality is not None else [3.0] * k),
        long_tail=np.asarray(tail if tail is not None else [False] * k),
        niche=np.asarray(niche if niche is not None else [False] * k),
        profile=np.asarray([profile if profile is not None else [0.0] * g.shape[1]], dtype=np.float32),
        niche_appetite=np.asarray([appetite], dtype=np.float32),
        params=params,
    )


def test_pure_relevance_keeps_the_arm_order() -> None:
    out = run([0.2, 1.0, 0.5, 0.9, 0.1], [A, A, A, A, A])
    assert out.positions.tolist() == [[1, 3, 2]]


def test_mmr_greedy_steps_by_hand() -> None:
    # gain = 0.5 * rel - 0.5 * max cosine to the chosen items (calibration off)
    # step 1: 0.5*1.0 = 0.5 -> item 0
    # step 2: i1 0.45-0.5=-0.05, i2 0.3-0=0.3, i3 0.25-0.5/sqrt2=-0.1036, i4 0.1 -> item 2
    # step 3: i1 -0.05, i3 -0.1036, i4 0.1 -> item 4
    out = run([1.0, 0.9, 0.6, 0.5, 0.2], [A, A, B, [1, 1, 0], C3], mmr_lambda=0.5)
    assert out.positions.tolist() == [[0, 2, 4]]
    np.testing.assert_allclose(out.gains[0], [0.5, 0.3, 0.1], atol=1e-6)


def test_calibration_greedy_steps_by_hand() -> None:
    # Steck: profile p = (0.5, 0.5, 0), alpha = 0.01, pure calibration (lambda_c = 1).
    # empty list: q~ = 0.01 p, KL = log(100) = 4.6052
    # step 1: {A} -> q~ = (0.995, 0.005, 0): KL = 0.5 ln(0.5/0.995) + 0.5 ln(100) = 1.9585 (tie with B:
    #         the better arm rank, item 0, wins); {C} -> KL = ln(100) = 4.6052
    # step 2: + A -> 1.9585, + B -> q = p, KL = 0, + C -> 0.5 ln(100) = 2.3026 -> item 2
    out = run([0.9, 0.8, 0.7, 0.6], [A, A, B, C3], profile=[0.5, 0.5, 0.0], length=2, calibration_lambda=1.0)
    assert out.positions.tolist() == [[0, 2]]
    kl_a = 0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(100)
    np.testing.assert_allclose(out.gains[0], [math.log(100) - kl_a, kl_a], rtol=1e-4)


def test_relevance_and_calibration_trade_off() -> None:
    # lambda_c = 0.5: step 2 gains are 0.5*rel - 0.5*dKL: item 1 (A, rel 0.8): 0.4 - 0.5*0 = 0.4;
    # item 2 (B, rel 0.1): 0.05 + 0.5*1.9585 = 1.029 -> item 2 despite its low relevance
    out = run([0.9, 0.8, 0.1], [A, A, B], profile=[0.5, 0.5, 0.0], length=2, calibration_lambda=0.5)
    assert out.positions.tolist() == [[0, 2]]


def test_niche_boost_only_for_users_with_appetite() -> None:
    args = dict(rel=[0.5, 0.5], genres=[A, B], niche=[False, True], length=1, niche_boost=0.2)
    assert run(**args, appetite=0.10).positions.tolist() == [[1]]
    assert run(**args, appetite=0.01).positions.tolist() == [[0]]


def test_quality_floor_by_hand() -> None:
    # floor 4.0 on 2 items: total >= 8. Step 1: item 0 (q 3.0) is feasible since 3.0 + 5.0 = 8;
    # step 2 then needs q >= 5.0: only item 4. Without the floor the list would be [0, 1] (mean 3.25).
    quality = [3.0, 3.5, 4.6, 4.2, 5.0]
    rel = [1.0, 0.9, 0.8, 0.7, 0.6]
    assert run(rel, [A] * 5, quality=quality, length=2).positions.tolist() == [[0, 1]]
    out = run(rel, [A] * 5, quality=quality, length=2, quality_floor=4.0)
    assert out.positions.tolist() == [[0, 4]]
    assert out.floor_used[0] == pytest.approx(4.0)


def test_unreachable_floor_relaxes_to_best_attainable() -> None:
    out = run([1.0, 0.9, 0.8], [A] * 3, quality=[3.0, 3.2, 3.1], length=2, quality_floor=4.0)
    # best attainable mean is (3.2 + 3.1) / 2 = 3.15, which forces items 1 and 2
    assert sorted(out.positions[0].tolist()) == [1, 2]
    assert out.floor_used[0] == pytest.approx(3.15, abs=1e-3)


def test_long_tail_band_by_hand() -> None:
    # 35-40% of 3 items holds no integer: the band is the nearest count to its middle, round(1.125) = 1
    params = RerankParams(long_tail_min=0.35, long_tail_max=0.40)
    assert params.long_tail_counts(3) == (1, 1)
    assert params.long_tail_counts(10) == (4, 4)
    assert params.long_tail_counts(20) == (7, 8)
    out = run([1.0, 0.9, 0.8, 0.7, 0.6], [A] * 5, tail=[True, True, False, False, False],
              long_tail_min=0.35, long_tail_max=0.40)  # fmt: skip
    assert out.positions.tolist() == [[0, 2, 3]]
    assert (out.tail_lo_used[0], out.tail_hi_used[0]) == (1, 1)


def test_genre_target_by_hand() -> None:
    # three genres wanted in three slots: after item 0 (A) only items adding a genre are allowed
    rel = [1.0, 0.9, 0.8, 0.7, 0.6]
    genres = [A, A, A, B, C3]
    assert run(rel, genres).positions.tolist() == [[0, 1, 2]]
    assert run(rel, genres, min_genres=3).positions.tolist() == [[0, 3, 4]]


def test_padded_candidates_and_short_lists() -> None:
    params = RerankParams(**{**FREE, "list_length": 3})
    out = rerank(
        candidates=np.array([[2, -1, 0, -1], [1, 2, 0, 3]]),
        relevance=np.array([[0.1, 0.9, 0.5, 0.8], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32),
        genres=np.eye(4, 3, dtype=np.float32),
        quality=np.full(4, 3.0),
        long_tail=np.zeros(4, bool),
        niche=np.zeros(4, bool),
        profile=np.zeros((2, 3), np.float32),
        niche_appetite=np.zeros(2, np.float32),
        params=params,
    )
    assert out.positions.tolist() == [[2, 0, -1], [0, 1, 2]]
    assert np.isnan(out.gains[0, 2])


def test_bad_inputs_are_reported() -> None:
    with pytest.raises(ValueError, match="wrong shapes"):
        rerank(
            np.zeros((1, 2), np.int64),
            np.zeros((1, 3), np.float32),
            np.zeros((2, 1), np.float32),
            np.zeros(2),
            np.zeros(2, bool),
            np.zeros(2, bool),
            np.zeros((1, 1), np.float32),
            np.zeros(1, np.float32),
            RerankParams(),
        )
    with pytest.raises(ValueError, match="long_tail_min"):
        RerankParams(long_tail_min=0.5, long_tail_max=0.4)
    with pytest.raises(ValueError, match="quality has NaN"):
        run([1.0], [A], quality=[float("nan")], length=1)


# ------------------------------------------------------------------------------ properties
@st.composite
def tiny_problem(draw: st.DrawFn, single_genre: bool = False) -> dict:
    k = draw(st.integers(1, 7))
    n_items = k + draw(st.integers(0, 2))
    n_genres = 4
    valid = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    items = draw(st.permutations(list(range(n_items))))[:k]
    cand = np.where(valid, items, -1)
    if single_genre:
        codes = draw(st.lists(st.integers(0, n_genres - 1), min_size=n_items, max_size=n_items))
        genres = np.eye(n_genres, dtype=np.float32)[codes]
    else:
        flat = draw(st.lists(st.booleans(), min_size=n_items * n_genres, max_size=n_items * n_genres))
        genres = np.asarray(flat, dtype=np.float32).reshape(n_items, n_genres)
    quality = draw(
        st.lists(st.sampled_from([2.5, 3.0, 3.5, 4.0, 4.5, 5.0]), min_size=n_items, max_size=n_items)
    )
    tail = draw(st.lists(st.booleans(), min_size=n_items, max_size=n_items))
    rel = draw(st.lists(st.floats(0, 1), min_size=k, max_size=k))
    profile = np.asarray(draw(st.lists(st.floats(0, 1), min_size=n_genres, max_size=n_genres)), np.float32)
    profile = profile / profile.sum() if profile.sum() > 0 else profile
    return dict(
        candidates=cand[None, :].astype(np.int64),
        relevance=np.asarray([rel], dtype=np.float32),
        genres=genres,
        quality=np.asarray(quality),
        long_tail=np.asarray(tail),
        niche=genres[:, 0] > 0,
        profile=profile[None, :],
        niche_appetite=np.asarray([draw(st.floats(0, 0.2))], dtype=np.float32),
    )


def _basic_invariants(problem: dict, positions: np.ndarray, length: int) -> list[int]:
    cand = problem["candidates"][0]
    n_valid = int((cand >= 0).sum())
    chosen = [int(p) for p in positions[0] if p >= 0]
    assert len(chosen) == min(length, n_valid)  # length = min(N, candidates)
    assert len(set(chosen)) == len(chosen)  # no duplicates
    assert all(cand[p] >= 0 for p in chosen)  # a subset of the real candidates
    assert all(p == -1 for p in positions[0][len(chosen) :])  # padding only at the end
    return chosen


@settings(max_examples=150, deadline=None)
@given(
    problem=tiny_problem(),
    length=st.integers(1, 4),
    floor=st.sampled_from([3.0, 3.5, 4.0, 4.5]),
    band=st.sampled_from([(0.35, 0.40), (0.0, 0.3), (0.5, 1.0), (0.2, 0.6)]),
    lambdas=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_quality_and_tail_met_whenever_feasible(
    problem: dict, length: int, floor: float, band, lambdas
) -> None:
    params = RerankParams(
        list_length=length,
        quality_floor=floor,
        long_tail_min=band[0],
        long_tail_max=band[1],
        min_genres=3,
        mmr_lambda=lambdas[0],
        calibration_lambda=lambdas[1],
    )
    out = rerank(**problem, params=params)
    chosen = _basic_invariants(problem, out.positions, length)
    cand = problem["candidates"][0]
    items = [int(c) for c in cand if c >= 0]
    l_eff = len(chosen)
    q, tail = problem["quality"], problem["long_tail"]
    lo, hi = params.long_tail_counts(l_eff)
    # brute force: the best total quality of any list inside the band
    best_in_band = max(
        (
            sum(q[i] for i in s)
            for s in itertools.combinations(items, l_eff)
            if lo <= sum(tail[i] for i in s) <= hi
        ),
        default=None,
    )
    got_items = [int(cand[p]) for p in chosen]
    got_tail = sum(bool(tail[i]) for i in got_items)
    got_q = sum(q[i] for i in got_items)
    if best_in_band is not None and best_in_band >= floor * l_eff - 1e-9:
        # a list meeting both constraints exists: the output meets both
        assert lo <= got_tail <= hi
        assert got_q >= floor * l_eff - 1e-3
    elif best_in_band is not None:
        # the band is reachable but the floor is not: best attainable quality inside the band
        assert lo <= got_tail <= hi
        assert got_q >= best_in_band - 1e-3


@settings(max_examples=150, deadline=None)
@given(problem=tiny_problem(single_genre=True), length=st.integers(1, 4), min_genres=st.integers(1, 4))
def test_genre_target_met_whenever_feasible_for_single_genre_items(
    problem: dict, length: int, min_genres: int
) -> None:
    params = RerankParams(**{**FREE, "list_length": length, "min_genres": min_genres, "mmr_lambda": 0.9})
    out = rerank(**problem, params=params)
    chosen = _basic_invariants(problem, out.positions, length)
    cand = problem["candidates"][0]
    g = problem["genres"]
    available = int((g[[c for c in cand if c >= 0]].max(axis=0, initial=0) > 0).sum()) if chosen else 0
    got = int((g[[cand[p] for p in chosen]].max(axis=0, initial=0) > 0).sum()) if chosen else 0
    assert got >= min(min_genres, available, len(chosen))


@settings(max_examples=60, deadline=None)
@given(problem=tiny_problem(), length=st.integers(1, 5))
def test_users_are_independent_in_a_batch(problem: dict, length: int) -> None:
    """Re-ranking two users together gives each the list it gets alone (lock-step is only batching)."""
    params = RerankParams(list_length=length, batch_users=1)
    alone = rerank(**problem, params=params).positions
    doubled = {
        key: (np.concatenate([v, v[:, ::-1]]) if key in ("candidates", "relevance") else v)
        for key, v in problem.items()
    }
    doubled["profile"] = np.concatenate([problem["profile"]] * 2)
    doubled["niche_appetite"] = np.concatenate([problem["niche_appetite"]] * 2)
    together = rerank(**doubled, params=RerankParams(list_length=length, batch_users=64)).positions
    assert together[0].tolist() == alone[0].tolist()


@settings(max_examples=60, deadline=None)
@given(problems=st.lists(tiny_problem(), min_size=2, max_size=4), length=st.integers(1, 5))
def test_users_with_different_candidate_counts_in_one_batch(problems: list[dict], length: int) -> None:
    """Users whose lists end at different steps (some short of candidates) batch like solo runs."""
    params = RerankParams(list_length=length)
    n_items = max(p["genres"].shape[0] for p in problems)
    k = max(p["candidates"].shape[1] for p in problems)

    def pad_items(p: dict) -> dict:
        extra = n_items - p["genres"].shape[0]
        out = dict(p)
        out["genres"] = np.vstack([p["genres"], np.zeros((extra, p["genres"].shape[1]), np.float32)])
        out["quality"] = np.concatenate([p["quality"], np.full(extra, 3.0)])
        out["long_tail"] = np.concatenate([p["long_tail"], np.zeros(extra, bool)])
        out["niche"] = np.concatenate([p["niche"], np.zeros(extra, bool)])
        return out

    # one shared catalog: the first problem's items (padded), every user keeps its own candidates
    catalog = pad_items(problems[0])
    solo, rows = [], []
    for p in problems:
        width = p["candidates"].shape[1]
        cand = np.full((1, k), -1, np.int64)
        cand[0, :width] = p["candidates"][0]
        rel = np.zeros((1, k), np.float32)
        rel[0, :width] = p["relevance"][0]
        user = {**catalog, "candidates": cand, "relevance": rel}
        user["profile"], user["niche_appetite"] = p["profile"], p["niche_appetite"]
        solo.append(rerank(**user, params=params).positions[0].tolist())
        rows.append(user)
    batch = {
        **catalog,
        "candidates": np.concatenate([u["candidates"] for u in rows]),
        "relevance": np.concatenate([u["relevance"] for u in rows]),
        "profile": np.concatenate([u["profile"] for u in rows]),
        "niche_appetite": np.concatenate([u["niche_appetite"] for u in rows]),
    }
    together = rerank(**batch, params=params).positions
    assert together.tolist() == solo


# ------------------------------------------------------------------ issue 13: served quality rules
def test_tail_item_floor_drops_duds_by_hand() -> None:
    # band 1 of 2 long tail; the best tail item (0, q 3.0) is under the 3.5 floor: item 2 (q 3.6) is
    # served instead, and the head slot goes to the best head item (1)
    quality = [3.0, 3.2, 3.6, 3.1]
    tail = [True, False, True, False]
    out = run([1.0, 0.9, 0.5, 0.8], [A] * 4, quality=quality, tail=tail, length=2,
              long_tail_min=0.5, long_tail_max=0.5, tail_item_floor=3.5)  # fmt: skip
    assert out.positions.tolist() == [[1, 2]]
    # no other candidate can fill the list: the dud is served rather than a short list
    out = run([1.0, 0.9], [A] * 2, quality=[3.0, 3.2], tail=[True, False], length=2, tail_item_floor=3.5)
    assert sorted(out.positions[0].tolist()) == [0, 1]


def test_quality_weight_by_hand() -> None:
    # gain = rel + w * q: 0.9 + 0.2 * 3.0 = 1.5 < 0.8 + 0.2 * 4.0 = 1.6, so item 1 goes first
    out = run([0.9, 0.8], [A, A], quality=[3.0, 4.0], length=2, quality_weight=0.2)
    assert out.positions.tolist() == [[1, 0]]
    np.testing.assert_allclose(out.gains[0], [1.6, 1.5], atol=1e-6)


@st.composite
def served_problem(draw: st.DrawFn) -> dict:
    """One user with 3-12 candidates: random relevance, quality, long-tail flags and 1-2 genres each."""
    k = draw(st.integers(3, 12))
    n_genres = 5
    codes = draw(st.lists(st.integers(0, n_genres - 1), min_size=2 * k, max_size=2 * k))
    genres = np.zeros((k, n_genres), np.float32)
    genres[np.arange(k), codes[:k]] = 1.0
    second = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    genres[np.arange(k)[second], np.asarray(codes[k:])[second]] = 1.0
    rel = draw(st.lists(st.floats(0, 1), min_size=k, max_size=k, unique=True))
    quality = draw(st.lists(st.sampled_from([2.5, 3.0, 3.4, 3.5, 3.8, 4.2, 4.6]), min_size=k, max_size=k))
    tail = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    return dict(
        candidates=np.arange(k, dtype=np.int64)[None, :],
        relevance=np.asarray([rel], dtype=np.float32),
        genres=genres,
        quality=np.asarray(quality),
        long_tail=np.asarray(tail),
        niche=genres[:, 0] > 0,
        profile=np.full((1, n_genres), 1.0 / n_genres, np.float32),
        niche_appetite=np.zeros(1, np.float32),
    )


FLOOR = 3.5
SERVED = dict(quality_floor=-math.inf, tail_item_floor=FLOOR, long_tail_min=0.35, long_tail_max=0.40)


@settings(max_examples=200, deadline=None)
@given(
    problem=served_problem(),
    length=st.integers(2, 8),
    lambdas=st.tuples(st.floats(0.8, 1), st.floats(0, 0.2)),
)
def test_band_and_item_floor_met_whenever_feasible(problem: dict, length: int, lambdas) -> None:
    """No long-tail item under the floor is served while other candidates can fill the list, and the
    long-tail count is inside the band whenever the candidates above the floor allow it."""
    params = RerankParams(list_length=length, min_genres=3, mmr_lambda=lambdas[0],
                          calibration_lambda=lambdas[1], quality_weight=0.2, **SERVED)  # fmt: skip
    out = rerank(**problem, params=params)
    chosen = _basic_invariants(problem, out.positions, length)
    q, tail = problem["quality"], problem["long_tail"]
    dud = tail & (q < FLOOR)
    n = len(chosen)
    lo, hi = params.long_tail_counts(n)
    n_tail_ok, n_head = int((tail & ~dud).sum()), int((~tail).sum())
    if n_tail_ok + n_head >= n:
        assert not dud[chosen].any()
        if n_tail_ok >= lo and n_head >= n - hi:
            assert lo <= int(tail[chosen].sum()) <= hi


@settings(max_examples=200, deadline=None)
@given(problem=served_problem(), length=st.integers(2, 8))
def test_arm_order_kept_where_the_band_allows(problem: dict, length: int) -> None:
    """Without diversity terms and with an exact band, the list is the constrained top-k: the best
    ``lo`` long-tail items and the best ``L - lo`` head items by the arm's relevance, and the pick
    order among them is the arm's order."""
    params = RerankParams(**{**FREE, **SERVED, "list_length": length, "long_tail_min": 0.4})
    out = rerank(**problem, params=params)
    chosen = _basic_invariants(problem, out.positions, length)
    rel, tail = problem["relevance"][0], problem["long_tail"]
    ok = ~(tail & (problem["quality"] < FLOOR))
    lo, hi = params.long_tail_counts(length)
    tails = [i for i in np.argsort(-rel, kind="stable") if tail[i] and ok[i]]
    heads = [i for i in np.argsort(-rel, kind="stable") if not tail[i]]
    if lo == hi and len(tails) >= lo and len(heads) >= length - lo:
        assert sorted(chosen) == sorted(tails[:lo] + heads[: length - lo])
        assert chosen == sorted(chosen, key=lambda i: -rel[i])


@settings(max_examples=150, deadline=None)
@given(problem=served_problem(), length=st.integers(2, 8), min_genres=st.integers(1, 5))
def test_genre_floor_met_for_single_genre_items_under_the_served_rules(
    problem: dict, length: int, min_genres: int
) -> None:
    """The genre floor holds next to the band and the item floor when items have one genre each."""
    g = problem["genres"]
    single = np.zeros_like(g)
    single[np.arange(g.shape[0]), np.argmax(g, axis=1)] = 1.0
    problem = {**problem, "genres": single, "niche": single[:, 0] > 0}
    params = RerankParams(**{**FREE, "list_length": length, "min_genres": min_genres, "mmr_lambda": 0.97,
                             "tail_item_floor": FLOOR, "quality_weight": 0.2})  # fmt: skip
    out = rerank(**problem, params=params)
    chosen = _basic_invariants(problem, out.positions, length)
    ok = ~(problem["long_tail"] & (problem["quality"] < FLOOR))
    pool = [i for i in range(g.shape[0]) if ok[i]] if ok.sum() >= length else list(range(g.shape[0]))
    available = int((single[pool].max(axis=0) > 0).sum())
    got = int((single[chosen].max(axis=0) > 0).sum())
    assert got >= min(min_genres, available, len(chosen))


@pytest.mark.parametrize("seed", range(6))
def test_band_look_ahead_by_counting_equals_the_full_look_ahead(seed: int) -> None:
    """Without a list-mean floor the re-ranker decides the long-tail look-ahead by counting; a floor
    that never binds takes the full look-ahead (prefix sums of qualities). Both must pick the same
    lists: many users of one batch, candidate lists longer than the class windows, padding, short
    lists, tail shares from none to all, and bands that cannot be met."""
    rng = np.random.default_rng(seed)
    n_users, k, n_items, n_genres = 300, 40, 120, 6
    cand = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    n_valid = rng.integers(0, k + 1, n_users)
    cand[np.arange(k)[None, :] >= n_valid[:, None]] = -1
    genres = (rng.random((n_items, n_genres)) < 0.3).astype(np.float32)
    profile = rng.random((n_users, n_genres)).astype(np.float32)
    problem = dict(
        candidates=cand,
        relevance=rng.random((n_users, k)).astype(np.float32),
        genres=genres,
        quality=rng.choice([2.5, 3.0, 3.5, 4.0, 4.5], n_items),
        long_tail=rng.random(n_items) < rng.choice([0.05, 0.3, 0.6, 0.95]),
        niche=genres[:, 0] > 0,
        profile=profile / profile.sum(axis=1, keepdims=True),
        niche_appetite=rng.random(n_users).astype(np.float32) * 0.2,
    )
    band = [(0.35, 0.40), (0.0, 0.3), (0.5, 1.0), (0.8, 0.9)][seed % 4]
    common = dict(list_length=10, long_tail_min=band[0], long_tail_max=band[1], batch_users=128,
                  tail_item_floor=3.2, quality_weight=0.2)  # fmt: skip
    counted = rerank(**problem, params=RerankParams(quality_floor=-math.inf, **common))
    full = rerank(**problem, params=RerankParams(quality_floor=-1e30, **common))
    np.testing.assert_array_equal(counted.positions, full.positions)
    np.testing.assert_array_equal(counted.gains, full.gains)
    np.testing.assert_array_equal(counted.tail_lo_used, full.tail_lo_used)


@pytest.mark.parametrize("seed", range(4))
def test_band_feasible_is_where_the_best_completion_is_finite(seed: int) -> None:
    """The counting check against the prefix-sum look-ahead on arbitrary states, including ones the
    greedy never reaches (bands out of reach, few candidates of a class left)."""
    from deepcuts.models.reranking.rerank import _band_feasible, _best_completion, _ClassWindow

    rng = np.random.default_rng(seed)
    n_users, k, length = 400, 30, 10
    valid = np.arange(k)[None, :] < rng.integers(0, k + 1, n_users)[:, None]
    tail = valid & (rng.random((n_users, k)) < rng.random((n_users, 1)))
    quality = np.where(valid, rng.choice([2.5, 3.0, 4.0, 4.5], (n_users, k)), 0.0)
    avail = valid & (rng.random((n_users, k)) < 0.8)
    width = min(k, 2 * length + 1)
    tail_win = _ClassWindow(quality, tail, width)
    head_win = _ClassWindow(quality, valid & ~tail, width)
    tail_now = rng.integers(0, 5, n_users)
    slots_after = rng.integers(0, length, n_users)
    lo = rng.integers(0, 8, n_users)
    hi = lo + rng.integers(0, 4, n_users)
    state = (tail_win, head_win)
    full = _best_completion(quality, tail, avail, *state, np.zeros(n_users), tail_now, slots_after, lo, hi,
                            length - 1)  # fmt: skip
    counted = _band_feasible(tail, avail, *state, tail_now, slots_after, lo, hi, length - 1)
    np.testing.assert_array_equal(counted[avail], np.isfinite(full)[avail])
