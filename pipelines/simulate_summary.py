"""What the simulator measures: per-night metrics by variant, arm shares, the truth metrics (best arm,
regret; the formulas are in :mod:`deepcuts.pipelines.simulate`'s docstring), and the run's summary and plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from deepcuts.contracts import C, Variant
from deepcuts.jsonsafe import json_safe
from deepcuts.pipelines.ab_analysis import SCOREBOARD_METRICS
from deepcuts.pipelines.simulate_worlds import SimWorld, context_key

VARIANTS: Final = (Variant.CONTROL.value, Variant.TREATMENT.value)


# ================================================================================== metrics
def by_variant_metrics(
    shown: pd.DataFrame,
    clicked: np.ndarray,
    ratings: np.ndarray,
    genres: pd.DataFrame,
    niche_items: npt.ArrayLike = (),
) -> dict[str, dict[str, float | int | None]]:
    """Per variant: impressions, clicks, ctr, lists shown, mean rating, long-tail share, genres per list,
    exposed (shown) users, and impressions and clicks of the ``niche_items``
    (``deepcuts.pipelines.ab_analysis.niche_item_ids``)."""
    niche = np.isin(shown[C.ITEM_ID].to_numpy(np.int64), np.asarray(niche_items, dtype=np.int64))
    frame = shown.assign(_clicked=clicked, _rating=ratings, _niche=niche)
    exploded = genres.explode(C.GENRES).dropna() if not genres.empty else genres
    out: dict[str, dict[str, float | int | None]] = {}
    for variant in VARIANTS:
        rows = frame[frame[C.VARIANT] == variant]
        imps, clicks = len(rows), int(rows["_clicked"].sum())
        n_ratings = int(rows["_rating"].notna().sum())
        per_list = None
        if not rows.empty and not exploded.empty:
            merged = rows[[C.USER_ID, C.DAYPART, C.ITEM_ID]].merge(exploded, on=C.ITEM_ID, how="left")
            per_list = float(merged.groupby([C.USER_ID, C.DAYPART])[C.GENRES].nunique().mean())
        out[variant] = {
            "impressions": imps,
            "clicks": clicks,
            "ctr": clicks / imps if imps else None,
            "lists": int(rows.groupby([C.USER_ID, C.DAYPART]).ngroups) if imps else 0,
            "ratings": n_ratings,
            "mean_rating": float(rows["_rating"].mean()) if n_ratings else None,
            "long_tail_share": float(rows[C.IS_LONG_TAIL].astype(bool).mean()) if imps else None,
            "genres_per_list": per_list,
            "exposed_users": int(rows[C.USER_ID].nunique()),
            "niche_impressions": int(rows["_niche"].sum()),
            "niche_clicks": int((rows["_niche"] & rows["_clicked"]).sum()),
        }
    return out


def arm_shares(treatment_visits: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Context -> arm -> share of that context's treatment visits (list impressions) on the arm."""
    out: dict[str, dict[str, float]] = {}
    if treatment_visits.empty:
        return out
    counts = treatment_visits.groupby([C.SEGMENT, C.DAYPART, C.ARM]).size()
    for (segment, daypart), per_arm in counts.groupby(level=[0, 1]):
        total = float(per_arm.sum())
        out[context_key(segment, daypart)] = {
            arm: float(n) / total for (_, _, arm), n in sorted(per_arm.items())
        }
    return out


@dataclass(frozen=True)
class TruthMetrics:
    best_arm: dict[str, str]
    best_arm_share: dict[str, float]
    expected_reward: dict[str, dict[str, float]]
    regret: float


def truth_metrics(
    world: SimWorld,
    treatment_visits: pd.DataFrame,
    arm_lists: pd.DataFrame,
    population: pd.DataFrame,
    day_index: int,
) -> TruthMetrics:
    """True best arm per context, the share of treatment traffic on it, and the night's regret.

    ``treatment_visits``: ``user_id``, ``daypart``, ``segment``, ``arm`` (served) per treatment visit;
    ``arm_lists``: re-ranked lists of every bandit arm (``user_id``, ``arm``, ``rank``, ``item_id``);
    ``population``: ``user_id``, ``daypart``, ``segment`` of every treatment assignment. The value of arm
    ``a`` in context ``c`` is the mean expected reward of its lists over the population of ``c``, each
    (user, daypart) weighted by its visit probability (``SimWorld.visit_weight``): the traffic the
    context will get, not only the handful of visits of one night, so the best arm is not noise.
    """
    if treatment_visits.empty or arm_lists.empty or population.empty:
        return TruthMetrics({}, {}, {}, 0.0)
    pop = population[[C.USER_ID, C.DAYPART, C.SEGMENT]].drop_duplicates([C.USER_ID, C.DAYPART])
    pop = pop.assign(_weight=world.visit_weight(pop, day_index))
    lists = pop[[C.USER_ID, C.DAYPART, C.SEGMENT]].merge(arm_lists, on=C.USER_ID)
    reward = world.expected_reward(lists, day_index).rename("_reward").reset_index()
    per_pair = pop.merge(reward, on=[C.USER_ID, C.DAYPART], how="inner")
    per_pair["_wr"] = per_pair["_weight"] * per_pair["_reward"]
    sums = per_pair.groupby([C.SEGMENT, C.DAYPART, C.ARM])[["_wr", "_weight"]].sum()
    best_arm: dict[str, str] = {}
    expected: dict[str, dict[str, float]] = {}
    for (segment, daypart), per_arm in sums.groupby(level=[0, 1]):
        key = context_key(segment, daypart)
        values = {
            arm: float(row["_wr"] / row["_weight"]) if row["_weight"] > 0 else 0.0
            for (_, _, arm), row in per_arm.iterrows()
        }
        expected[key] = dict(sorted(values.items()))
        best_arm[key] = max(sorted(values), key=lambda a: values[a])

    visits = treatment_visits[[C.USER_ID, C.DAYPART, C.SEGMENT, C.ARM]].rename(columns={C.ARM: "_served"})
    visits = visits.assign(
        _ctx=[context_key(s, d) for s, d in zip(visits[C.SEGMENT], visits[C.DAYPART], strict=True)]
    )
    visits["_best"] = visits["_ctx"].map(best_arm)
    share = visits.assign(_on=visits["_served"] == visits["_best"]).groupby("_ctx")["_on"].mean()
    # pseudo-regret of each visit: value of the context's best arm minus value of the served arm (the
    # bandit chooses per context, so the per-context arm values are what it can learn; never negative)
    best_value = np.array(
        [expected.get(c, {}).get(a, np.nan) for c, a in zip(visits["_ctx"], visits["_best"], strict=True)]
    )
    served_value = np.array(
        [expected.get(c, {}).get(a, np.nan) for c, a in zip(visits["_ctx"], visits["_served"], strict=True)]
    )
    regret = float(np.nansum(best_value - served_value))
    return TruthMetrics(best_arm, {k: float(v) for k, v in sorted(share.items())}, expected, regret)


def summarise(record: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers: CTR over the run, best-arm share at night 14 and at the end, regret growth."""
    nights = record["nights"]
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        imps = sum(n["impressions"][variant] or 0 for n in nights)
        clicks = sum(n["clicks"][variant] or 0 for n in nights)
        out[f"ctr_{variant}"] = clicks / imps if imps else None
    if nights and nights[-1].get("best_arm_share") is not None:
        for label, idx in (("night_14", min(14, len(nights)) - 1), ("last_night", len(nights) - 1)):
            night = nights[idx]
            out[f"best_arm_share_{label}"] = {
                **_headline(night["best_arm_share"], idx + 1),
                "traffic_weighted": json_safe(_weighted_share(night)),
            }
            out[f"best_arm_probability_{label}"] = _headline(night.get("best_arm_probability"), idx + 1)
        regret = [n["regret"] for n in nights]
        half = len(regret) // 2
        if half:
            out["regret_first_half_per_night"] = float(np.mean(regret[:half]))
            out["regret_second_half_per_night"] = float(np.mean(regret[half:]))
        out["cumulative_regret"] = nights[-1]["cumulative_regret"]
    out["final_ab"] = nights[-1]["ab"] if nights else None
    # the last night's scoreboard as ab_analysis computed it (cumulative lift, niche ratio and rating;
    # list metrics of the lists users saw that night), and per metric the nights it was met
    out["scoreboard"] = (nights[-1]["ab"] or {}).get("scoreboard") if nights else None
    boards = [(n["night"], (n.get("ab") or {}).get("scoreboard") or {}) for n in nights]
    out["scoreboard_nights_met"] = {
        name: [k for k, board in boards if (board.get(name) or {}).get("met")] for name in SCOREBOARD_METRICS
    }
    for key in ("niche_impressions", "niche_clicks"):
        out[key] = {v: sum(n.get(key, {}).get(v) or 0 for n in nights) for v in VARIANTS}
    return out


def _headline(values: dict[str, float] | None, night: int) -> dict[str, Any]:
    """Min, mean and the number of contexts at or above 70% of a context -> share mapping."""
    values = values or {}
    return {
        "night": night,
        "min": min(values.values()) if values else None,
        "mean": float(np.mean(list(values.values()))) if values else None,
        "contexts_at_or_above_70pct": sum(v >= 0.7 for v in values.values()),
        "contexts": len(values),
    }


def plot_simulation(record: dict[str, Any], path: Path) -> Path:
    """A 2x2 PNG: CTR by variant, best-arm share, cumulative regret, long-tail share and A/B p-value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nights = record["nights"]
    x = [n["night"] for n in nights]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    ax = axes[0, 0]
    for variant in VARIANTS:
        ax.plot(x, [_nan(n["ctr"][variant]) for n in nights], marker=".", label=variant)
    ax.set(title="CTR per impression", xlabel="night", ylabel="clicks / impressions")
    ax.legend()
    ax = axes[0, 1]
    if nights and nights[0].get("best_arm_share") is not None:
        contexts = sorted({c for n in nights for c in (n["best_arm_share"] or {})})
        for ctx in contexts:
            ax.plot(x, [_nan((n["best_arm_share"] or {}).get(ctx)) for n in nights], lw=0.8, alpha=0.6)
        mean = [np.nanmean(list((n["best_arm_share"] or {}).values()) or [np.nan]) for n in nights]
        ax.plot(x, mean, color="grey", lw=1.5, ls="--", label="mean over contexts")
        ax.plot(x, [_weighted_share(n) for n in nights], color="black", lw=2, label="traffic-weighted")
        ax.axhline(0.7, color="grey", ls=":", lw=1)
        ax.legend()
    ax.set(title="treatment traffic on the true best arm (per context)", xlabel="night", ylim=(0, 1.02))
    ax = axes[1, 0]
    if nights and nights[0].get("cumulative_regret") is not None:
        ax.plot(x, [n["cumulative_regret"] for n in nights], marker=".")
    ax.set(title="cumulative regret (expected list rewards)", xlabel="night")
    ax = axes[1, 1]
    for variant in VARIANTS:
        ax.plot(
            x, [_nan(n["long_tail_share"][variant]) for n in nights], marker=".", label=f"long tail {variant}"
        )
    band = (record.get("targets") or {}).get("long_tail_share")
    if band:
        ax.axhspan(band["low"], band["high"], color="tab:green", alpha=0.15, lw=0, label="target band")
    ax.set(title="long-tail share of shown items; A/B p-value", xlabel="night", ylim=(0, 1.02))
    ax.set_ylabel("long-tail share")
    ax2 = ax.twinx()
    ax2.plot(x, [_nan(n["ab"]["p_value"]) for n in nights], color="black", ls=":", label="mSPRT p")
    ax2.set(ylim=(0, 1.02), ylabel="always-valid p")
    ax.legend(loc="upper left")
    fig.suptitle(f"deepcuts simulation: {record['world']} world, seed {record['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _weighted_share(night: dict[str, Any]) -> float:
    """Best-arm share over all treatment visits of the night (contexts weighted by their visits)."""
    shares, visits = night.get("best_arm_share") or {}, night.get("context_visits") or {}
    total = sum(visits.get(c, 0) for c in shares)
    return sum(v * visits.get(c, 0) for c, v in shares.items()) / total if total else math.nan


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
