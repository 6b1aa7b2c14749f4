"""Greedy deep-cut re-ranker: the arm's order, kept wherever the product's rules allow.

All users of a batch are re-ranked in lock-step: at each of the ``L`` greedy steps the marginal gain of
every remaining candidate of every user is one numpy expression over a ``(users, candidates)`` block.

Objective (marginal gain of adding candidate ``i`` to the partial list ``S`` of user ``u``)::

    gain(i) = (1 - lc) * [lm * rel_i - (1 - lm) * max_{j in S} sim(i, j)]
              - lc * [KL(p_u || q~(S + i)) - KL(p_u || q~(S))]
              + boost * niche_i * [u has a niche appetite]
              + w * quality_i

- ``rel_i`` is the arm's relevance normalised to [0, 1] per user (see
  :func:`deepcuts.models.reranking.deepcut_scores.normalise_relevance`);
- ``sim(i, j)`` is the cosine of the items' multi-hot genre vectors (MMR, Carbonell & Goldstein 1998);
- ``p_u(g)`` is the user's genre profile and ``q(g|S) = sum_{i in S} p(g|i) / |S|`` the list's genre
  mix with ``p(g|i) = 1/|genres(i)|`` for each genre of ``i``; ``q~ = (1 - a) q + a p`` (Steck 2018,
  "Calibrated recommendations", ``a = calibration_alpha``); ``KL(p||q~) = sum_g p(g) log(p(g) / q~(g))``;
- ``lm = mmr_lambda``, ``lc = calibration_lambda`` (0.97 / 0.03 by default: the diversity terms only
  break near-ties of relevance), ``boost = niche_boost``, ``w = quality_weight`` (the quality tilt: per
  rating-scale point of the item's shrunk mean).

Rules, in priority order (a higher one is never traded for a lower one):

0. **per-item floor**: long-tail candidates with quality below ``tail_item_floor`` are removed before the
   greedy starts, unless the user would then have fewer candidates than list slots (:func:`_drop_duds`).
1. **long tail (exact)**, and, when ``quality_floor`` is finite (off by default), the list's mean quality
   ``>= quality_floor``: the number of long-tail items lies in ``[ceil(lt_min * L), floor(lt_max * L)]``.
   Before each pick the re-ranker checks, for every candidate, that some completion of the list still
   meets both: with ``r`` slots left after the pick and ``k`` of them long tail, the best completion
   takes the ``k`` best-quality remaining long-tail items and the ``r - k`` best remaining head items,
   so the check is ``max_k [Q(S + i) + PL_{-i}(k) + PH_{-i}(r - k)] >= floor * L`` over the ``k`` that
   keep the count in the band (``PL``/``PH``: prefix sums of sorted remaining qualities, without
   ``i``); without a floor it only asks that such a ``k`` exists (decided by counting
   the available candidates of each class, :func:`_band_feasible`: same decisions, far cheaper).
   Picking only feasible candidates keeps
   a feasible completion alive by induction, so when a list meeting the rule exists, the output meets
   it. When none exists the targets are relaxed per user to the best attainable: the band is clipped to
   what the candidates allow and the floor is lowered to the best mean quality reachable inside the band.
2. **genres (greedy)**: at least ``min_genres`` distinct genres (capped at the number of genres among the
   user's candidates). A candidate is genre-feasible when
   ``new_i + (slots_left - 1) * max_new >= genres_still_needed`` (``new_i``: genres ``i`` adds;
   ``max_new``: the most any remaining candidate adds). This is exact for single-genre items and a
   necessary condition otherwise (maximum coverage is NP-hard), so it is a soft target; the penalty
   grows with the shortfall, so an out-of-reach target still yields as many genres as the rule finds.

Among the candidates that pass the checks, the one with the largest gain is taken (ties: the lower
candidate position, i.e. the arm's better rank). With the diversity, niche and quality terms off and an
exact band, the result is the constrained top-k: the best long-tail and the best head items by the arm's
relevance, in the arm's order (tests/models/reranking/test_rerank.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from deepcuts.settings import Settings

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Penalties that order the constraints above any gain (gains are O(1)).
_PENALTY_QUALITY_TAIL = 1.0e6
_PENALTY_GENRES = 1.0e3
#: Slack for float sums in the quality check (quality is on the rating scale, so this is tiny).
_EPS = 1.0e-4


@dataclass(frozen=True)
class RerankParams:
    """Numeric targets of one re-ranking run (built from :class:`deepcuts.settings.RerankSettings`)."""

    list_length: int = 10
    #: Floor on the list's mean quality, already on the dataset's rating scale (-inf: off, the default
    #: since issue 13; ``rerank.list_quality_floor`` switches it on).
    quality_floor: float = -math.inf
    #: Per-item safety floor of long-tail items on the rating scale: a long-tail candidate below it is
    #: dropped unless the user has too few other candidates to fill the list.
    tail_item_floor: float = -math.inf
    #: Gain per rating-scale point of an item's quality (the quality tilt of the ranking).
    quality_weight: float = 0.0
    long_tail_min: float = 0.35
    long_tail_max: float = 0.40
    min_genres: int = 6
    mmr_lambda: float = 0.97
    calibration_lambda: float = 0.03
    calibration_alpha: float = 0.01
    niche_boost: float = 0.1
    #: Users with at least this share of niche items in their history get the niche boost.
    niche_appetite_min: float = 0.05
    #: Users re-ranked per numpy block (bounds memory at about ``batch * K * G * 4 * 8`` bytes).
    batch_users: int = 1024

    def __post_init__(self) -> None:
        if self.list_length < 1:
            raise ValueError(f"list_length must be >= 1 (got {self.list_length})")
        if not 0.0 <= self.long_tail_min <= self.long_tail_max <= 1.0:
            raise ValueError(
                f"need 0 <= long_tail_min <= long_tail_max <= 1 (got {self.long_tail_min}, "
                f"{self.long_tail_max}); fix rerank.long_tail_min / rerank.long_tail_max"
            )
        for name in ("mmr_lambda", "calibration_lambda", "calibration_alpha"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1] (got {value}); fix rerank.{name}")

    @classmethod
    def from_settings(cls, settings: Settings, rating_min: float, rating_max: float) -> RerankParams:
        """Targets from the settings; the 5-point quality floor is scaled to ``[rating_min, rating_max]``."""
        rs = settings.rerank
        span = (rating_max - rating_min) / 4.0  # one 5-point rating step on this scale
        item_floor = settings.arms.quality.item_floor_5pt
        return cls(
            list_length=rs.list_length,
            quality_floor=(
                settings.quality_floor_scaled(rating_min, rating_max) if rs.list_quality_floor else -math.inf
            ),
            tail_item_floor=rating_min + (item_floor - 1.0) * span,
            quality_weight=rs.quality_weight / span if span > 0 else 0.0,
            long_tail_min=rs.long_tail_min,
            long_tail_max=rs.long_tail_max,
            min_genres=rs.min_genres,
            mmr_lambda=rs.mmr_lambda,
            calibration_lambda=rs.calibration_lambda,
            calibration_alpha=rs.calibration_alpha,
            niche_boost=rs.niche_boost,
            niche_appetite_min=rs.niche_appetite_min,
            batch_users=rs.batch_users,
        )

    def long_tail_counts(self, length: int) -> tuple[int, int]:
        """The band ``[ceil(min * L), floor(max * L)]`` of long-tail items in a list of ``length``.

        If the band holds no integer (e.g. 35-40% of 3 items), the nearest count to its middle is used.
        """
        lo = math.ceil(self.long_tail_min * length - 1e-9)
        hi = math.floor(self.long_tail_max * length + 1e-9)
        if lo > hi:
            mid = round((self.long_tail_min + self.long_tail_max) / 2 * length)
            lo = hi = int(mid)
        return lo, hi


@dataclass(frozen=True)
class RerankResult:
    """Positions (into the candidate axis) of the chosen items, best first; ``-1`` pads short lists."""

    positions: IntArray
    #: Marginal gain of each chosen item at the step it was chosen (NaN where padded).
    gains: FloatArray
    #: Per user: the quality floor (mean) and long-tail band actually enforced after relaxation.
    floor_used: FloatArray
    tail_lo_used: IntArray
    tail_hi_used: IntArray


def rerank(
    candidates: IntArray,
    relevance: FloatArray,
    genres: FloatArray,
    quality: FloatArray,
    long_tail: BoolArray,
    niche: BoolArray,
    profile: FloatArray,
    niche_appetite: FloatArray,
    params: RerankParams,
) -> RerankResult:
    """Re-rank every user's candidates greedily (see the module docstring for the objective).

    Args:
        candidates: ``(U, K)`` catalog indices of each user's candidates, ``-1`` where padded.
        relevance: ``(U, K)`` relevance in [0, 1] (values at padded slots are ignored).
        genres: ``(n_items, G)`` multi-hot genre matrix of the catalog.
        quality: ``(n_items,)`` quality on the rating scale (finite).
        long_tail: ``(n_items,)`` long-tail flags.
        niche: ``(n_items,)`` niche-genre flags.
        profile: ``(U, G)`` genre profile ``p(g|u)`` per user (rows sum to 1, or 0 for no history).
        niche_appetite: ``(U,)`` share of the user's history in niche genres.
        params: targets and trade-offs.

    Returns:
        A :class:`RerankResult` with ``positions`` of shape ``(U, min(L, K))``.
    """
    cand = np.asarray(candidates, dtype=np.int64)
    if cand.ndim != 2:
        raise ValueError(f"candidates must be a (users, K) array, got shape {cand.shape}")
    n_users, k = cand.shape
    genres = np.asarray(genres, dtype=np.float32)
    n_items = genres.shape[0]
    _check_shapes(cand, relevance, genres, quality, long_tail, niche, profile, niche_appetite)
    if cand.size and (cand.max() >= n_items or cand.min() < -1):
        raise ValueError(f"candidate indices must be in [-1, {n_items}) (catalog rows); got out-of-range")
    quality = np.asarray(quality, dtype=np.float64)
    if not np.isfinite(quality).all():
        raise ValueError("quality has NaN/inf entries; give every catalog item a quality (prior mean)")
    length = min(params.list_length, k)
    positions = np.full((n_users, length), -1, dtype=np.int64)
    gains = np.full((n_users, length), np.nan, dtype=np.float32)
    floor_used = np.zeros(n_users, dtype=np.float32)
    lo_used = np.zeros(n_users, dtype=np.int64)
    hi_used = np.zeros(n_users, dtype=np.int64)
    step = max(1, params.batch_users)
    catalog_slots = _genre_slots(genres)
    for start in range(0, n_users, step):
        sl = slice(start, min(start + step, n_users))
        out = _rerank_block(
            cand[sl],
            np.asarray(relevance, dtype=np.float32)[sl],
            genres,
            quality,
            np.asarray(long_tail, dtype=bool),
            np.asarray(niche, dtype=bool),
            np.asarray(profile, dtype=np.float32)[sl],
            np.asarray(niche_appetite, dtype=np.float32)[sl],
            params,
            length,
            catalog_slots,
        )
        positions[sl], gains[sl], floor_used[sl], lo_used[sl], hi_used[sl] = out
    return RerankResult(positions, gains, floor_used, lo_used, hi_used)


def _check_shapes(
    cand: IntArray,
    relevance: FloatArray,
    genres: FloatArray,
    quality: FloatArray,
    long_tail: BoolArray,
    niche: BoolArray,
    profile: FloatArray,
    niche_appetite: FloatArray,
) -> None:
    n_users, _ = cand.shape
    n_items, n_genres = genres.shape
    expected = {
        "relevance": (np.shape(relevance), cand.shape),
        "quality": (np.shape(quality), (n_items,)),
        "long_tail": (np.shape(long_tail), (n_items,)),
        "niche": (np.shape(niche), (n_items,)),
        "profile": (np.shape(profile), (n_users, n_genres)),
        "niche_appetite": (np.shape(niche_appetite), (n_users,)),
    }
    bad = {name: got for name, (got, want) in expected.items() if tuple(got) != want}
    if bad:
        wants = {name: want for name, (_, want) in expected.items() if name in bad}
        raise ValueError(f"rerank inputs have wrong shapes {bad}; expected {wants}")


class _ClassWindow:
    """The best-quality candidates of one class (long tail or head), sorted once per block.

    Only the ``width`` best of a class can ever enter a best completion (at most ``L - 1`` of them are
    taken by earlier picks and at most ``L`` more are needed), so the look-ahead works on this window.
    """

    def __init__(self, q_cand: np.ndarray, member: np.ndarray, width: int) -> None:
        key = np.where(member, -q_cand, np.inf)
        order = np.argsort(key, axis=1, kind="stable")[:, :width]  # ties: lower candidate position
        self.order = order
        # the window's cells in a flattened (U, K) array: a plain take of them is several times cheaper
        # than take_along_axis, which the greedy loop would otherwise do on every step
        self.flat_order = order + np.arange(order.shape[0])[:, None] * member.shape[1]
        self.q = np.take_along_axis(q_cand, order, axis=1)
        self.member = np.take_along_axis(member, order, axis=1)

    def available(self, avail: np.ndarray) -> np.ndarray:
        """``(U, W)``: the window's members that are available in the ``(U, K)`` mask ``avail``."""
        return self.member & np.take(np.ascontiguousarray(avail).ravel(), self.flat_order)

    def prefix(self, avail: np.ndarray, max_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prefix sums ``P(j)``, ``j = 0..max_k + 1``, of the best available qualities of the class.

        Returns ``(prefix (U, max_k + 2), in_window (U, W) available members, rank (U, W))`` where
        ``rank`` is a member's 0-based position among the available members (quality descending) and
        ``prefix[:, j] = -inf`` when fewer than ``j`` members are available.
        """
        m = self.available(avail)
        count = np.cumsum(m, axis=1)
        csum = np.cumsum(np.where(m, self.q, 0.0), axis=1)
        n_users, width = m.shape
        # the j-th available member sits where count first reaches j: scatter its running sum to P(j)
        prefix = np.full((n_users, max_k + 2), -np.inf)
        prefix[:, 0] = 0.0
        put = m & (count <= max_k + 1)
        rows = np.broadcast_to(np.arange(n_users)[:, None], (n_users, width))
        prefix[rows[put], count[put]] = csum[put]
        return prefix, m, count - 1


def _band_max(
    tail_part: np.ndarray,
    head_part: np.ndarray,
    tail_base: np.ndarray,
    slots: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """``max_k tail_part[..., k] + head_part[..., slots - k]`` over ``k = 0..slots`` with
    ``lo <= tail_base + k <= hi`` (``-inf`` when no ``k`` qualifies).

    Both parts hold values for ``0..R`` on their last axis and have one leading user axis; the index
    shuffle is done on whichever part is smaller (the other may have an extra candidate axis).
    ``tail_base``, ``slots``, ``lo``, ``hi`` are per user (``tail_base`` may carry the candidate axis).
    """
    r_max = tail_part.shape[-1] - 1
    shape = (-1,) + (1,) * (max(tail_part.ndim, head_part.ndim) - 1)
    if slots.size and (slots == slots.flat[0]).all():
        # the usual case (lock-step users with full candidate lists): one r for all, plain slicing
        r = int(slots.flat[0])
        ks = np.arange(r + 1)
        vals = tail_part[..., : r + 1] + head_part[..., r::-1]
        count = np.asarray(tail_base)[..., None] + ks
        ok = (count >= lo.reshape(shape)) & (count <= hi.reshape(shape))
        return np.where(ok, vals, -np.inf).max(axis=-1)
    ks = np.arange(r_max + 1)
    slots_b = slots.reshape(shape)
    rev = np.clip(slots_b - ks, 0, r_max)  # (U, 1.., R + 1): index of the other part
    if head_part.size <= tail_part.size:
        # k indexes the tail part; gather head_part[slots - k]
        head_vals = np.take_along_axis(
            head_part, np.broadcast_to(rev, (*head_part.shape[:-1], r_max + 1)), -1
        )
        vals = tail_part + head_vals
        n_tail = ks
    else:
        # j indexes the head part; gather tail_part[slots - j] and count slots - j tail items
        tail_vals = np.take_along_axis(
            tail_part, np.broadcast_to(rev, (*tail_part.shape[:-1], r_max + 1)), -1
        )
        vals = tail_vals + head_part
        n_tail = slots_b - ks
    count = np.asarray(tail_base)[..., None] + n_tail
    ok = (ks <= slots_b) & (count >= lo.reshape(shape)) & (count <= hi.reshape(shape))
    return np.where(ok, vals, -np.inf).max(axis=-1)


def _best_completion(
    q_cand: np.ndarray,
    tail_cand: np.ndarray,
    avail: np.ndarray,
    tail_win: _ClassWindow,
    head_win: _ClassWindow,
    q_now: np.ndarray,
    tail_now: np.ndarray,
    slots_after: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_r: int,
) -> np.ndarray:
    """Best reachable total quality of the finished list if candidate ``i`` is picked now, per (u, i).

    ``-inf`` where no completion keeps the long-tail count inside ``[lo, hi]``. ``slots_after`` is the
    number of items still to add after ``i`` (per user); ``max_r`` bounds it. A candidate outside the
    top ``slots_after`` of its class does not change its class's prefix sums, so its best completion is
    one number per user and class; the few inside get theirs computed exactly.
    """
    pl, m_l, rank_l = tail_win.prefix(avail, max_r)
    ph, m_h, rank_h = head_win.prefix(avail, max_r)
    ks = np.arange(max_r + 1)
    pl_k, ph_k = pl[:, : max_r + 1], ph[:, : max_r + 1]
    # generic: candidate not among its class's best `slots_after` available items
    best_if_tail = _band_max(pl_k, ph_k, tail_now + 1, slots_after, lo, hi)
    best_if_head = _band_max(pl_k, ph_k, tail_now, slots_after, lo, hi)
    total = q_now[:, None] + q_cand + np.where(tail_cand, best_if_tail[:, None], best_if_head[:, None])
    # exact for the members whose own prefix sums change (available rank < slots_after <= max_r - t
    # after t picks): they sit in the first max_r sorted positions of their class window
    e = max(1, min(max_r, tail_win.order.shape[1]))
    for win, pref, m, rank, is_tail in (
        (tail_win, pl, m_l, rank_l, True),
        (head_win, ph, m_h, rank_h, False),
    ):
        q_win, order, m, rank = win.q[:, :e], win.order[:, :e], m[:, :e], rank[:, :e]
        shifted = pref[:, None, 1 : max_r + 2] - q_win[:, :, None]
        without = np.where(rank[:, :, None] < ks, shifted, pref[:, None, : max_r + 1])
        if is_tail:
            best = _band_max(without, ph_k[:, None, :], (tail_now + 1)[:, None], slots_after, lo, hi)
        else:
            best = _band_max(pl_k[:, None, :], without, tail_now[:, None], slots_after, lo, hi)
        exact = q_now[:, None] + q_win + best
        current = np.take_along_axis(total, order, axis=1)
        np.put_along_axis(total, order, np.where(m, exact, current), axis=1)
    return total


def _band_feasible(
    tail_cand: np.ndarray,
    avail: np.ndarray,
    tail_win: _ClassWindow,
    head_win: _ClassWindow,
    tail_now: np.ndarray,
    slots_after: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    max_r: int,
) -> np.ndarray:
    """``np.isfinite(_best_completion(...))`` per (u, i) by counting alone: whether picking ``i`` now
    keeps a completion with the long-tail count in ``[lo, hi]``.

    Without a list-mean quality floor (the default) that is all the look-ahead decides, and it needs no
    prefix sums: the completion is finite when some ``k`` tail items (and ``r - k`` head items) are
    available, exactly as :func:`_best_completion` counts them (available members of each class window,
    ``i`` itself left out where that function computes the exact value: the first ``max_r`` window
    positions). ``k`` then ranges over ``max(0, r - heads, lo - base) .. min(r, tails, hi - base)``.
    """
    e = max(1, min(max_r, tail_win.order.shape[1]))
    # candidates left out of their own class's count (the two classes' members are disjoint)
    own = np.zeros(avail.shape, dtype=bool)
    n_class = []
    for win in (tail_win, head_win):
        m = win.available(avail)
        n_class.append(m.sum(axis=1, dtype=np.int32)[:, None])
        own.ravel()[win.flat_order[:, :e][m[:, :e]]] = True
    tails = n_class[0] - (own & tail_cand)
    heads = n_class[1] - (own & ~tail_cand)
    base = tail_now.astype(np.int32)[:, None] + tail_cand
    r = slots_after.astype(np.int32)[:, None]
    low = np.maximum(np.maximum(r - heads, lo.astype(np.int32)[:, None] - base), 0)
    high = np.minimum(np.minimum(r, tails), hi.astype(np.int32)[:, None] - base)
    return low <= high


def _genre_slots(genres: FloatArray) -> tuple[IntArray, FloatArray]:
    """Each catalog item's genre indices padded to the widest item (pad = ``G``), and its genre count.

    The greedy loop works on these ``(items, M)`` index lists instead of ``(items, G)`` vectors: items
    have a few genres (``M`` is 6 on MovieLens) out of ``G`` (18-20), so per-step work shrinks by ``G/M``.
    """
    n_genres = genres.shape[1]
    present = genres > 0
    counts = present.sum(axis=1)
    width = max(int(counts.max(initial=0)), 1)
    # stable sort puts each item's genres first (in index order), the pad after them
    order = np.argsort(~present, axis=1, kind="stable")[:, :width]
    slots = np.where(np.arange(width)[None, :] < counts[:, None], order, n_genres)
    return slots.astype(np.int64), counts.astype(np.float32)


def _gather(per_user: np.ndarray, flat_slots: IntArray) -> np.ndarray:
    """``per_user[u, slots[u, k, m]]`` for ``(U, G + 1)`` values, via precomputed flat indices
    ``flat_slots = u * (G + 1) + slots`` (plain ``take`` is much cheaper than ``take_along_axis``)."""
    return np.take(per_user.ravel(), flat_slots)


def _rerank_block(
    cand: IntArray,
    rel: FloatArray,
    genres: FloatArray,
    quality: np.ndarray,
    long_tail: BoolArray,
    niche: BoolArray,
    profile: FloatArray,
    appetite: FloatArray,
    params: RerankParams,
    length: int,
    catalog_slots: tuple[IntArray, FloatArray],
) -> tuple[IntArray, FloatArray, FloatArray, IntArray, IntArray]:
    n_users, k = cand.shape
    n_genres = genres.shape[1]
    cand = _drop_duds(cand, quality, long_tail, params.tail_item_floor, length)
    valid = cand >= 0
    idx = np.where(valid, cand, 0)
    slots = np.where(valid[:, :, None], catalog_slots[0][idx], n_genres)  # (U, K, M); pad = G
    n_g = np.where(valid, catalog_slots[1][idx], 0.0).astype(np.float32)
    inv_n = np.divide(1.0, n_g, out=np.zeros_like(n_g), where=n_g > 0)  # p(g|i) for each genre of i
    inv_sqrt_n = np.sqrt(inv_n)
    q_cand = np.where(valid, quality[idx], 0.0)
    tail_cand = long_tail[idx] & valid
    boost = (
        params.niche_boost * (niche[idx] & valid) * (appetite >= params.niche_appetite_min)[:, None]
    ).astype(np.float32)
    rel = np.where(valid, np.nan_to_num(rel, nan=0.0), 0.0).astype(np.float32)
    tilt = (params.quality_weight * q_cand).astype(np.float32)
    rows = np.arange(n_users)

    # --- per-user targets, relaxed to what the candidates allow ---------------------------------
    n_valid = valid.sum(axis=1)
    l_eff = np.minimum(length, n_valid)
    n_tail = tail_cand.sum(axis=1)
    n_head = n_valid - n_tail
    band = np.array([params.long_tail_counts(int(x)) for x in range(length + 1)], dtype=np.int64)
    lo = np.minimum(band[l_eff, 0], n_tail)
    hi = np.maximum(band[l_eff, 1], l_eff - n_head)
    hi = np.maximum(hi, lo)
    # best total quality of a whole list inside the band: the largest "completion" of an empty list
    width = min(k, 2 * length + 1)
    tail_win = _ClassWindow(q_cand, tail_cand, width)
    head_win = _ClassWindow(q_cand, valid & ~tail_cand, width)
    best_total = _best_list_total(tail_win, head_win, valid, l_eff, lo, hi, length)
    if np.isfinite(params.quality_floor):
        required = np.minimum(params.quality_floor * l_eff, best_total) - _EPS * np.maximum(l_eff, 1)
    else:  # no list-mean floor: the look-ahead only keeps the long-tail band reachable
        required = np.full(n_users, -np.inf)
    flat_slots = rows[:, None, None] * (n_genres + 1) + slots
    union = np.zeros((n_users, n_genres + 1), dtype=bool)
    union.ravel()[flat_slots.ravel()] = True
    genre_target = np.minimum(params.min_genres, union[:, :n_genres].sum(axis=1))

    # --- lock-step greedy ------------------------------------------------------------------------
    # Per-user genre arrays carry one extra column G for the pad slot.
    profile = profile.astype(np.float32)
    alpha = np.float32(params.calibration_alpha)
    has_profile = profile.sum(axis=1) > 0
    p_log = np.where(profile > 0, np.log(np.maximum(profile, 1e-30)), 0.0).astype(np.float32)
    p_entropy_term = (profile * p_log).sum(axis=1)  # sum_g p log p: the part of the KL without q
    p_at = _gather(np.concatenate([profile, np.zeros((n_users, 1), np.float32)], axis=1), flat_slots)
    lm, lc = np.float32(params.mmr_lambda), np.float32(params.calibration_lambda)

    selected = np.zeros((n_users, k), dtype=bool)
    mix = np.zeros_like(profile)  # sum of p(g|i) over the chosen items
    covered = np.zeros((n_users, n_genres + 1), dtype=bool)
    covered[:, n_genres] = True  # the pad slot never counts as a new genre
    # genres each candidate would add; kept up to date from the genres each pick newly covers
    width_m = slots.shape[2]
    new_genres = np.float32(width_m) - np.einsum("ukm->uk", _gather(covered, flat_slots).astype(np.float32))
    # The KL term's log(offset_g + c / n_i) depends on the user, the genre and the item's genre count
    # n_i only: one table per user of (G + 1) x (M + 1) logs replaces the (K x M) logs per step, with
    # the same float32 operations on the same values (n_i = 0 marks padded candidates).
    counts_tab = np.arange(width_m + 1, dtype=np.float32)
    inv_tab = np.divide(1.0, counts_tab, out=np.zeros_like(counts_tab), where=counts_tab > 0)
    flat_tab = flat_slots * (width_m + 1) + n_g.astype(np.int64)[:, :, None]
    max_sim = np.zeros((n_users, k), dtype=np.float32)
    q_now = np.zeros(n_users)
    tail_now = np.zeros(n_users, dtype=np.int64)
    kl_now = _kl(profile, p_log, np.zeros_like(profile), alpha)
    positions = np.full((n_users, length), -1, dtype=np.int64)
    gains = np.full((n_users, length), np.nan, dtype=np.float32)
    for t in range(length):
        active = t < l_eff
        if not active.any():
            break
        avail = valid & ~selected & active[:, None]
        # calibration: KL(p || q~(S + i)) per candidate. With q~ = offset + c p(.|i), offset =
        # (1 - a) mix / (t + 1) + a p and c = (1 - a) / (t + 1), only the genres of i change:
        # KL(S + i) = sum p log p - sum_g p log offset - sum_{g in i} p [log(offset + c/n_i) - log offset]
        # (the 1e-30 keeps logs finite where p(g) = 0; those terms are multiplied by p(g) = 0)
        offset = (1 - alpha) * mix / np.float32(t + 1) + alpha * profile + np.float32(1e-30)
        log_offset = np.log(offset)
        base = p_entropy_term - (profile * log_offset).sum(axis=1)
        off_ext = np.concatenate([offset, np.ones((n_users, 1), np.float32)], axis=1)
        logoff_ext = np.concatenate([log_offset, np.zeros((n_users, 1), np.float32)], axis=1)
        inc = ((1 - alpha) / np.float32(t + 1)) * inv_tab
        table = np.log(off_ext[:, :, None] + inc)
        table -= logoff_ext[:, :, None]
        lifted = np.take(table.ravel(), flat_tab)
        kl_with = base[:, None] - np.einsum("ukm,ukm->uk", p_at, lifted)
        kl_with = np.where(has_profile[:, None], kl_with, 0.0)
        gain = (1 - lc) * (lm * rel - (1 - lm) * max_sim) - lc * (kl_with - kl_now[:, None]) + boost + tilt
        # constraint 1: quality floor and long-tail band (exact look-ahead)
        # finished users (l_eff <= t) take the common value: their rows are masked, and one shared
        # slot count lets _band_max use plain slicing
        slots_after = np.maximum(np.where(active, l_eff, length) - t - 1, 0)
        if np.isfinite(params.quality_floor):
            completion = _best_completion(
                q_cand,
                tail_cand,
                avail,
                tail_win,
                head_win,
                q_now,
                tail_now,
                slots_after,
                lo,
                hi,
                max(length - 1, 0),
            )
            ok_quality_tail = (completion >= required[:, None]) & np.isfinite(completion)
        else:  # required is -inf: only the band's reachability counts, and counting decides it
            ok_quality_tail = _band_feasible(
                tail_cand, avail, tail_win, head_win, tail_now, slots_after, lo, hi, max(length - 1, 0)
            )
        # constraint 2: distinct genres (greedy necessary condition)
        max_new = np.where(avail, new_genres, 0.0).max(axis=1)
        needed = np.maximum(genre_target - covered[:, :n_genres].sum(axis=1), 0)
        slots_now = l_eff - t
        # shortfall > 0: even the best continuation cannot reach the genre target; the penalty grows
        # with the shortfall, so when the target is out of reach the pick still adds the most genres
        reach = new_genres + (slots_now - 1)[:, None] * max_new[:, None]
        shortfall = np.maximum(needed[:, None] - reach, 0.0)
        score = gain - _PENALTY_QUALITY_TAIL * ~ok_quality_tail - _PENALTY_GENRES * shortfall
        score = np.where(avail, score, -np.inf)
        pick = np.argmax(score, axis=1)  # first maximum: the arm's better rank wins ties
        picked = active & avail[rows, pick]
        u = rows[picked]
        p = pick[picked]
        positions[u, t] = p
        gains[u, t] = gain[u, p]
        selected[u, p] = True
        chosen = np.zeros((n_users, n_genres + 1), dtype=np.float32)
        chosen[u[:, None], slots[u, p]] = 1.0
        chosen[:, n_genres] = 0.0
        mix += chosen[:, :n_genres] * inv_n[rows, pick][:, None] * picked[:, None]
        newly = (chosen > 0) & ~covered
        covered |= newly
        q_now[u] += q_cand[u, p]
        tail_now[u] += tail_cand[u, p]
        kl_now[u] = kl_with[u, p]
        # MMR: cos(i, j) = |G_i & G_j| / sqrt(n_i n_j) with j the item just chosen
        # one gather for two small counts per candidate: genres shared with the pick (<= M) plus
        # (M + 1) x the genres the pick newly covered (exact integers in float32)
        shared = np.einsum("ukm->uk", _gather(chosen + np.float32(width_m + 1) * newly, flat_slots))
        now_covered = np.floor(shared / np.float32(width_m + 1))
        overlap = shared - np.float32(width_m + 1) * now_covered
        new_genres -= now_covered
        sim = overlap * inv_sqrt_n * (inv_sqrt_n[rows, pick] * picked)[:, None]
        np.maximum(max_sim, sim, out=max_sim)
    floor_used = (required + _EPS * np.maximum(l_eff, 1)) / np.maximum(l_eff, 1)
    return positions, gains, floor_used.astype(np.float32), lo, hi


def _drop_duds(
    cand: IntArray, quality: np.ndarray, long_tail: BoolArray, floor: float, length: int
) -> IntArray:
    """``cand`` with long-tail candidates under ``floor`` set to ``-1`` (padding), for every user who
    keeps at least ``min(length, candidates)`` candidates without them (the others keep theirs, so a
    list is never cut short: a dud is served only when nothing else can fill the list)."""
    if not np.isfinite(floor):
        return cand
    valid = cand >= 0
    idx = np.where(valid, cand, 0)
    dud = valid & long_tail[idx] & (quality[idx] < floor)
    enough = (valid & ~dud).sum(axis=1) >= np.minimum(length, valid.sum(axis=1))
    return np.where(dud & enough[:, None], -1, cand)


def _best_list_total(
    tail_win: _ClassWindow,
    head_win: _ClassWindow,
    valid: np.ndarray,
    l_eff: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    length: int,
) -> np.ndarray:
    """Largest total quality of an ``l_eff``-item list whose long-tail count is in ``[lo, hi]``."""
    pl, _, _ = tail_win.prefix(valid, length)
    ph, _, _ = head_win.prefix(valid, length)
    zeros = np.zeros_like(l_eff)
    best = _band_max(pl[:, : length + 1], ph[:, : length + 1], zeros, l_eff, lo, hi)
    return np.where(l_eff > 0, best, 0.0)


def _kl(profile: np.ndarray, p_log: np.ndarray, mix: np.ndarray, alpha: np.float32) -> np.ndarray:
    """``KL(p || (1 - a) q + a p)`` per user for a list mix ``q`` (rows of ``mix``; 0 = empty list)."""
    q_tilde = (1 - alpha) * mix + alpha * profile
    terms = profile * (p_log - np.log(np.maximum(q_tilde, 1e-30)))
    return np.where(profile.sum(axis=1) > 0, terms.sum(axis=1), 0.0).astype(np.float32)
