"""Why refreshes do (not) halve the nights to 70%: the bandit's own arithmetic on a Bernoulli world
calibrated on the planted world, many seeds, in seconds instead of hours.

The closed loop of ``bench_intraday.py`` runs every nightly step and every refresh; one seed of it takes
hours with 24 refreshes a day. This script keeps only what decides the learning speed, with the
pipeline's own functions and settings (``deepcuts.models.policy.bandit``: pooling with the empirical-Bayes
cap, exact Thompson probabilities, the exploration floor, the daily discount):

* contexts, arms, the true reward of every (context, arm) and each context's treatment visits a day are
  read from a planted-world run of ``bench_intraday.py`` (``--sim``: its ``*_sim.json``; rewards of one
  night, visits averaged over the nights);
* a day's visits of a context start in the hours of its daypart by the world's visit timing
  (``--timing hourly``: ``world.visit_hour_profile``; ``daypart_start``: all in the first hour) and are
  served in ``refreshes`` slots; each slot's arms are drawn from the policy of (the night's snapshot,
  discounted, plus the day's evidence so far), exactly as ``pipelines/intraday.py`` computes it;
* the night folds the whole day in (``update_posterior``), whatever the cadence.

Reported per variant over ``--seeds`` seeds: the first night from which every context's selection
probability of its best arm stays >= 70% (the night's policy, as in ``bench_intraday.py``; the end of
the day's, the last refresh's), its quantiles, the share of seeds reaching the target (at most half the
nights of nightly-only, same seed), and the cumulative regret.

    nice -n 10 .venv/bin/python benchmarks/bench_intraday_model.py \\
        --sim benchmarks/out/bench_intraday_r1_d14_sim.json --seeds 20 [--set core|extra|traffic]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
TARGET = 0.7


@dataclass(frozen=True)
class World:
    contexts: list[str]
    arms: list[str]
    reward: np.ndarray  # contexts x arms, P(list clicked)
    visits: np.ndarray  # contexts: mean treatment visits a day
    hour_probability: np.ndarray  # contexts x 24: P(a visit starts in hour h)


@dataclass(frozen=True)
class Variant:
    name: str
    refreshes: int
    timing: str = "hourly"
    traffic: float = 1.0
    pooling: str | None = None  # None: the settings' pooling
    floor: float | None = None
    #: How a refresh pools (None: the settings' ``intraday.refresh_pooling``): ``live`` (the snapshot
    #: plus the day so far pooled, the EB caps re-estimated from both; the pipeline before 2026-11-30),
    #: ``night_caps`` (the night's caps kept for the day; model only), ``snapshot`` (only the night's
    #: snapshot is pooled, the day's own evidence added on top unpooled: the pipeline's default).
    refresh_pooling: str | None = None


def load_world(sim_path: Path, night: int, timing: str) -> World:
    from deepcuts.formulas import daypart_hours
    from deepcuts.models.policy.context import CONTEXTS
    from deepcuts.pipelines.simulate_worlds import visit_hour_probabilities
    from deepcuts.settings import load_settings

    record = json.loads(sim_path.read_text())
    nights = record["nights"]
    entry = nights[min(night, len(nights)) - 1]
    contexts = [f"{s}/{d}" for s, d in CONTEXTS]
    arms = sorted(next(iter(entry["expected_reward"].values())))
    # a context no user of the recorded world was in has no true reward that night (nor visits): it
    # gets the mean of the others, which its zero traffic never uses
    present = [c for c in contexts if c in entry["expected_reward"]]
    if len(present) < len(contexts):
        print(f"{sim_path.name}: night {night} has no reward for {sorted(set(contexts) - set(present))}")
    mean = {a: float(np.mean([entry["expected_reward"][c][a] for c in present])) for a in arms}
    reward = np.array([[entry["expected_reward"].get(c, mean)[a] for a in arms] for c in contexts])
    visits = np.array([np.mean([n["context_visits"].get(c, 0) for n in nights]) for c in contexts])
    world = load_settings().world
    ranges = daypart_hours(world.daypart_starts)
    if timing == "hourly":
        per_daypart = visit_hour_probabilities(world.visit_hour_profile, ranges)
    else:
        per_daypart = {d: np.eye(24)[start] for d, (start, _) in ranges.items()}
    hours = np.array([per_daypart[c.split("/")[1]] for c in contexts])
    return World(contexts, arms, reward, visits, hours)


def run_seed(world: World, variant: Variant, nights: int, seed: int, mc_draws: int) -> dict[str, Any]:
    from deepcuts.models.policy.bandit import (
        BanditConfig,
        pool_snapshot_with,
        pool_with,
        selection_probabilities,
        shrink_toward_groups,
        update_posterior,
    )
    from deepcuts.models.policy.context import pooling_groups
    from deepcuts.settings import load_settings

    settings = load_settings()
    cfg = settings.bandit
    # Monte Carlo selection probabilities (+-0.01 at 2,000 draws): the exact integration takes seconds
    # per policy on this machine, and a seed computes about 300 of them with 24 refreshes a day
    config = replace(BanditConfig.from_settings(cfg), method="monte_carlo", mc_draws=mc_draws)
    if variant.pooling is not None:
        config = replace(config, pooling=variant.pooling)
    if variant.floor is not None:
        config = replace(config, exploration_floor=variant.floor)
    groups = pooling_groups(config.pooling)
    refresh_pooling = variant.refresh_pooling or settings.intraday.refresh_pooling
    rng = np.random.default_rng(seed)
    n_ctx, n_arms = world.reward.shape
    best = world.reward.argmax(axis=1)
    rows = np.arange(n_ctx)
    # hours -> slots: a slot of 24 / refreshes hours
    slot_of_hour = np.arange(24) * variant.refreshes // 24
    slot_probability = np.zeros((n_ctx, variant.refreshes))
    for h in range(24):
        slot_probability[:, slot_of_hour[h]] += world.hour_probability[:, h]

    def policy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a_eff, b_eff, _ = pool_with(config, a, b, groups)
        return selection_probabilities(a_eff, b_eff, config, rng)[1]

    def refresh_policy(clicks: np.ndarray, trials: np.ndarray) -> np.ndarray:
        a, b = base_a + clicks, base_b + trials - clicks
        if refresh_pooling == "live" or groups is None:
            return policy(a, b)
        if refresh_pooling == "night_caps":
            a_eff, b_eff = shrink_toward_groups(a, b, groups, config.prior_alpha, config.prior_beta, caps)
        else:  # snapshot: the pipeline's own function (intraday.refresh_pooling = snapshot)
            a_eff, b_eff, _ = pool_snapshot_with(config, base_a, base_b, a, b, groups)
        return selection_probabilities(a_eff, b_eff, config, rng)[1]

    alpha = np.full((n_ctx, n_arms), config.prior_alpha)
    beta = np.full((n_ctx, n_arms), config.prior_beta)
    start, end, regret = np.empty((nights, n_ctx)), np.empty((nights, n_ctx)), np.empty(nights)
    total = 0.0
    for night in range(nights):
        caps = pool_with(config, alpha, beta, groups)[2]
        p_night = policy(alpha, beta)
        start[night] = p_night[rows, best]
        # the refresh's prior: the snapshot discounted by one day, before the day's evidence
        base_a = config.prior_alpha + config.discount * (alpha - config.prior_alpha)
        base_b = config.prior_beta + config.discount * (beta - config.prior_beta)
        trials = np.zeros((n_ctx, n_arms))
        clicks = np.zeros((n_ctx, n_arms))
        visits = rng.poisson(world.visits * variant.traffic)
        per_slot = np.stack([rng.multinomial(visits[c], slot_probability[c]) for c in range(n_ctx)])
        p = p_night
        for slot in range(variant.refreshes):
            if slot > 0 and per_slot[:, slot - 1].any():  # a refresh after every slot with visits
                p = refresh_policy(clicks, trials)
            counts = np.stack([rng.multinomial(per_slot[c, slot], p[c]) for c in range(n_ctx)])
            hits = rng.binomial(counts, world.reward)
            trials += counts
            clicks += hits
            total += float((counts * (world.reward.max(axis=1, keepdims=True) - world.reward)).sum())
        end[night] = (refresh_policy(clicks, trials) if variant.refreshes > 1 else p)[rows, best]
        regret[night] = total
        alpha, beta = update_posterior(
            alpha, beta, trials, clicks, config.prior_alpha, config.prior_beta, config.discount
        )
    return {"start": start, "end": end, "cumulative_regret": regret}


#: Variant sets (``--set``), each run next to nightly-only with the same seeds.
SETS: dict[str, list[Variant]] = {
    "core": [
        Variant("24/day, daypart-start timing", 24, "daypart_start"),
        Variant("24/day, hourly timing", 24),
    ],
    "extra": [
        Variant("nightly, no pooling", 1, pooling="none"),
        Variant("24/day, no pooling", 24, pooling="none"),
        Variant("nightly, no floor", 1, floor=0.0),
        Variant("nightly, 2x traffic", 1, traffic=2.0),
        Variant("nightly, 4x traffic", 1, traffic=4.0),
    ],
    "pooling": [
        Variant("24/day, refreshes pool live (before)", 24, refresh_pooling="live"),
        Variant("24/day, refreshes keep the night's EB caps", 24, refresh_pooling="night_caps"),
        Variant("24/day, refreshes pool the night's snapshot only", 24, refresh_pooling="snapshot"),
        Variant("24/day, no pooling", 24, pooling="none"),
    ],
    "traffic": [
        Variant("24/day, 4x traffic", 24, traffic=4.0),
        Variant("nightly, 4x traffic, no pooling", 1, traffic=4.0, pooling="none"),
        Variant("24/day, 4x traffic, no pooling", 24, traffic=4.0, pooling="none"),
    ],
}


def first_night_all(prob: np.ndarray) -> int | None:
    """1-based first night from which every context stays >= TARGET (None: never within the run)."""
    ok = (prob >= TARGET).all(axis=1)
    for i in range(len(ok)):
        if ok[i:].all():
            return i + 1
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sim", type=Path, default=OUT / "bench_intraday_r1_d14_sim.json")
    parser.add_argument("--reward-night", type=int, default=7, help="the night whose true rewards are used")
    parser.add_argument("--nights", type=int, default=14)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--label", default="", help="prefix of the output name")
    parser.add_argument("--mc-draws", type=int, default=2000, help="Monte Carlo draws per policy")
    parser.add_argument("--set", choices=sorted(SETS), default="core", help="variants next to nightly-only")
    args = parser.parse_args()

    variants = [Variant("nightly", 1), *SETS[args.set]]
    worlds = {t: load_world(args.sim, args.reward_night, t) for t in ("hourly", "daypart_start")}
    results: dict[str, Any] = {}
    for v in variants:
        runs = [run_seed(worlds[v.timing], v, args.nights, seed, args.mc_draws) for seed in range(args.seeds)]
        results[v.name] = {
            "variant": v.__dict__,
            "first_night_start": [first_night_all(r["start"]) for r in runs],
            "first_night_end": [first_night_all(r["end"]) for r in runs],
            "cumulative_regret": [float(r["cumulative_regret"][-1]) for r in runs],
            "min_p_best_start_mean": np.mean([r["start"].min(axis=1) for r in runs], axis=0)
            .round(3)
            .tolist(),
            # pairs (seed, context) whose best arm the night's policy starves on night 3 (lock-ins)
            "starved_night_3": float(np.mean([r["start"][min(2, args.nights - 1)] <= 0.05 for r in runs])),
            "contexts_ge_70_start_mean": np.mean([(r["start"] >= TARGET).sum(axis=1) for r in runs], axis=0)
            .round(2)
            .tolist(),
        }
    base = results["nightly"]["first_night_start"]
    for name, r in results.items():
        f = [x if x is not None else args.nights + 1 for x in r["first_night_start"]]
        e = [x if x is not None else args.nights + 1 for x in r["first_night_end"]]
        b = [x if x is not None else args.nights + 1 for x in base]
        r["target_met_share"] = float(np.mean([fi <= bi / 2 for fi, bi in zip(f, b, strict=True)]))
        print(
            f"{name:34s} nights to 70% (night's policy) median {np.median(f):4.1f} "
            f"[q10 {np.quantile(f, 0.1):4.1f}, q90 {np.quantile(f, 0.9):4.1f}]; end of day median "
            f"{np.median(e):4.1f}; <= half of nightly in {r['target_met_share']:.0%} of seeds; "
            f"regret {np.mean(r['cumulative_regret']):7.1f} +- "
            f"{np.std(r['cumulative_regret']) / np.sqrt(len(f)):.1f}"
        )
        print(
            f"{'':34s} contexts >= 70% by night (mean): {r['contexts_ge_70_start_mean']}; "
            f"(seed, context) at P(best) <= 0.05 on night 3: {r['starved_night_3']:.1%}"
        )
    w = worlds["hourly"]
    print("contexts:", w.contexts)
    print("visits a day:", w.visits.round(1).tolist())
    gap = np.sort(w.reward, axis=1)
    print("best - second reward:", (gap[:, -1] - gap[:, -2]).round(3).tolist())
    out = OUT / f"bench_intraday_model_{args.label}{args.set}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
