"""The deep-cut arms' plain-reduction paths (normalise_rows, _floor_last) equal the where= reductions
they replace, bit for bit: seen entries at the row extremes, ties, NaN/inf outside the seen entries
(the fallback), rows all seen, constant rows, empty blocks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from deepcuts.models.recommenders import long_tail
from deepcuts.models.recommenders.item_cf import ItemCFRecommender
from deepcuts.models.recommenders.long_tail import LongTailRecommender, QualityFloorMixin, normalise_rows
from deepcuts.models.recommenders.serendipity import SerendipityRecommender
from deepcuts.settings import ItemCFSettings, LongTailSettings, QualitySettings, SerendipitySettings
from tests.models.recommenders.test_math import _quality_world


@pytest.fixture(params=[1, 700, None], ids=["row-chunks", "ragged-chunks", "one-chunk"], autouse=True)
def chunk_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test also runs with the elementwise steps split into chunks of one row and of a few rows
    (the last one shorter), as on blocks wider than the test blocks."""
    if request.param is not None:
        monkeypatch.setattr(long_tail, "CHUNK_BYTES", request.param)


def reference_normalise(scores: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """normalise_rows as it was: where= reductions over the finite unseen entries."""
    out = np.array(scores, dtype=np.float32, copy=True)
    out[seen] = -np.inf
    finite = np.isfinite(out)
    lo = out.min(axis=1, keepdims=True, where=finite, initial=np.inf)
    hi = out.max(axis=1, keepdims=True, where=finite, initial=-np.inf)
    lo = np.where(np.isfinite(lo), lo, 0.0)
    span = np.where(np.isfinite(hi), hi - lo, 0.0)
    out -= lo
    out /= np.maximum(span, 1e-12)
    np.copyto(out, -np.inf, where=~finite)
    return out


def reference_floor_last(scores: np.ndarray, below: np.ndarray) -> np.ndarray:
    """_floor_last as it was: where= reductions and a where= subtract."""
    scores = scores.copy()
    finite = np.isfinite(scores)
    hi = scores.max(axis=1, keepdims=True, where=finite, initial=-np.inf)
    lo = scores.min(axis=1, keepdims=True, where=finite, initial=np.inf)
    shift = np.where(np.isfinite(hi - lo), hi - lo + 1.0, 0.0).astype(np.float32)
    np.subtract(scores, shift, out=scores, where=below[None, :])
    return scores


def random_block(rng: np.random.Generator, n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores with many ties (few distinct values, signed zeros) and a seen mask holding row extremes."""
    values = np.array([-3.5, -1.0, -0.0, 0.0, 0.25, 1.0, 7.0], dtype=np.float32)
    scores = rng.choice(values, size=(n_rows, n_cols)) * rng.choice([1.0, 1e-3, 1e30], size=(n_rows, 1))
    scores = scores.astype(np.float32)
    seen = rng.random((n_rows, n_cols)) < 0.3
    if n_cols:
        # seen items the base model scores highest and lowest: must not set any row's bounds
        scores[:, 0], seen[:, 0] = 1e6, True
        scores[:, -1], seen[:, -1] = -1e6, True
    if n_rows > 2:
        seen[1] = True  # a user who has seen everything
        scores[2] = 0.5  # a constant row
    return scores, seen


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def inject_non_finite(rng: np.random.Generator, scores: np.ndarray, seen: np.ndarray, value: float) -> None:
    """``value`` at a few unseen entries: the plain-reduction path must hand over to the where= one."""
    free = np.argwhere(~seen)
    if free.size:
        pick = free[rng.choice(len(free), size=min(3, len(free)), replace=False)]
        scores[pick[:, 0], pick[:, 1]] = value


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("shape", [(7, 11), (1, 1), (0, 5), (4, 0), (33, 64)])
@pytest.mark.parametrize("extra", [None, np.nan, np.inf, -np.inf])
def test_normalise_rows_equals_the_where_reductions(seed: int, shape: tuple[int, int], extra: float) -> None:
    rng = np.random.default_rng(seed)
    scores, seen = random_block(rng, *shape)
    if extra is not None:
        inject_non_finite(rng, scores, seen, extra)
    want = reference_normalise(scores, seen)
    assert same_bits(normalise_rows(scores, seen), want)
    assert same_bits(normalise_rows(scores, sp.csr_matrix(seen)), want)
    if not seen.any():
        assert same_bits(normalise_rows(scores), want)


def test_normalise_rows_with_an_overflowing_span_keeps_seen_entries_at_minus_inf() -> None:
    scores = np.array([[3e38, -3e38, 1.0, 5.0]], dtype=np.float32)
    seen = np.array([[False, False, False, True]])
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the case under test
        got = normalise_rows(scores, seen)
        want = reference_normalise(scores, seen)
    assert same_bits(got, want)
    assert got[0, 3] == -np.inf


class Floored(QualityFloorMixin):
    def __init__(self, below: np.ndarray) -> None:
        self.below_floor_ = below


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("shape", [(7, 11), (1, 1), (0, 5), (4, 0), (33, 64)])
@pytest.mark.parametrize("extra", [None, np.nan, np.inf, -np.inf, 2.0])
def test_floor_last_equals_the_where_reductions(seed: int, shape: tuple[int, int], extra: float) -> None:
    rng = np.random.default_rng(seed)
    scores, seen = random_block(rng, *shape)
    below = rng.random(shape[1]) < 0.5
    scores[seen] = -np.inf  # as the arms hand it over
    if extra == 2.0:
        scores[seen & (rng.random(shape) < 0.5)] = 2.0  # seen entries not at -inf: the where= path
    elif extra is not None:
        inject_non_finite(rng, scores, seen, extra)
    want = reference_floor_last(scores, below)
    model = Floored(below)
    rows, cols = np.nonzero(seen)
    assert same_bits(model._floor_last(scores.copy(), (rows, cols)), want)
    assert same_bits(model._floor_last(scores.copy(), seen), want)
    assert same_bits(model._floor_last(scores.copy()), want)


@pytest.mark.parametrize(
    ("cls", "config"),
    [
        (LongTailRecommender, LongTailSettings(head_share=0.8, tail_boost=2.5)),
        (SerendipityRecommender, SerendipitySettings(unexpectedness_weight=2.0)),
    ],
)
def test_deep_cut_scores_equal_the_where_composition(cls: type, config: object) -> None:
    interactions, items = _quality_world()
    model = cls(
        config,
        base=ItemCFRecommender(ItemCFSettings(ease_lambda=1.0)),
        quality=QualitySettings(prior_weight=1.0),
    ).fit(interactions, items)
    rows = np.arange(model.data.n_users)
    seen = model.data.binary_rows(rows).toarray() > 0
    rel = reference_normalise(model.base.score_block(rows), seen)
    if cls is LongTailRecommender:
        boost = np.where(model.stats_.is_long_tail, config.tail_boost, 1.0).astype(np.float32)
        raw = rel * boost[None, :]
    else:
        raw = np.exp(model.unexpectedness(rows) * np.float32(config.unexpectedness_weight)) * rel
    assert same_bits(model._score(rows), reference_floor_last(raw, model.below_floor_))
