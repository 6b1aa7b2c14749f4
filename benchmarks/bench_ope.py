"""Coverage and bias of the OPE estimators on a synthetic logging problem with known true values.

World: 3 contexts x 4 arms, known click-through rates, a stochastic logging policy (the bandit's, with
its exploration floor), users with ~4 list impressions each (clustered). For each seeded repetition we
log ``n`` impressions, estimate four target policies with IPS / SNIPS / DR (cluster bootstrap 95% CIs,
poor constant reward model for DR) and check whether the CI holds the true value.

Also times the estimator at production scale (the cluster bootstrap on 500k impressions) and prints the
policy-learning curve of ``deepcuts.models.policy.bandit.simulate_policy_learning`` (share of traffic on the
best arm per night). Writes ``benchmarks/out/bench_ope.json``.

    .venv/bin/python benchmarks/bench_ope.py [--reps 300] [--n 4000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from deepcuts.models.policy.bandit import BanditConfig, simulate_policy_learning
from deepcuts.models.policy.ope import LoggedTrials, evaluate_policies, true_policy_value

OUT = Path(__file__).resolve().parent / "out"

CTR = np.array([[0.05, 0.10, 0.20, 0.08], [0.15, 0.05, 0.05, 0.10], [0.08, 0.08, 0.12, 0.30]])
MU = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]])
PX = np.array([0.5, 0.3, 0.2])
TARGETS = {
    "logging": MU,
    "arm2": np.tile([0.0, 0.0, 1.0, 0.0], (3, 1)),
    "greedy": np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]]),
    "uniform": np.full((3, 4), 0.25),
}


def log_data(rng: np.random.Generator, n: int) -> LoggedTrials:
    ctx = rng.choice(3, size=n, p=PX)
    arm = (np.cumsum(MU[ctx], axis=1) <= rng.random(n)[:, None]).sum(axis=1)
    reward = (rng.random(n) < CTR[ctx, arm]).astype(float)
    return LoggedTrials(ctx, arm, MU[ctx, arm], reward, rng.integers(0, max(n // 4, 1), size=n))


def coverage(reps: int, n: int, n_boot: int) -> dict[str, dict[str, float]]:
    hits: dict[str, list[float]] = {}
    errors: dict[str, list[float]] = {}
    model = np.full((3, 4), 0.1)
    for rep in range(reps):
        rng = np.random.default_rng(10_000 + rep)
        trials = log_data(rng, n)
        for e in evaluate_policies(TARGETS, trials, model, n_boot=n_boot, rng=rng, min_ess=50):
            truth = true_policy_value(TARGETS[e.policy], PX, CTR)
            key = f"{e.policy}/{e.estimator}"
            hits.setdefault(key, []).append(float(e.ci_low <= truth <= e.ci_high))
            errors.setdefault(key, []).append(e.estimate - truth)
    return {
        k: {
            "coverage": float(np.mean(v)),
            "bias": float(np.mean(errors[k])),
            "rmse": float(np.sqrt(np.mean(np.square(errors[k])))),
        }
        for k, v in hits.items()
    }


def scale_timing(n: int, n_boot: int) -> float:
    rng = np.random.default_rng(1)
    trials = log_data(rng, n)
    start = time.perf_counter()
    evaluate_policies(TARGETS, trials, np.full((3, 4), 0.1), n_boot=n_boot, rng=rng, min_ess=50)
    return time.perf_counter() - start


def _world(rng: np.random.Generator, gap: float, structure: str) -> np.ndarray:
    """12 contexts (3 segments x 4 dayparts) x 6 arms, list CTR ~0.6, one arm ``gap`` above the rest.

    ``structure``: the best arm is the same everywhere (``global``), per segment (``segment``), or drawn
    per context (``context``)."""
    ctr = 0.62 + rng.uniform(-0.04, 0.02, size=(12, 6))
    for c in range(12):
        k = {"global": 2, "segment": (2, 4, 0)[c // 4], "context": int(rng.integers(6))}[structure]
        ctr[c, k] = ctr[c].max() + gap
    return ctr


def pooling_comparison(reps: int = 4) -> dict[str, dict[str, float]]:
    """Best-arm selection probability on night 14 (mean and worst context, averaged over ``reps`` seeds)
    without pooling, with segment pooling at a fixed 50 pseudo-trials, and with segment pooling capped
    by the empirical-Bayes concentration (at most 100), at 30 and 100 list impressions per context and
    night."""
    rng = np.random.default_rng(5)
    segments = np.repeat(np.arange(3), 4)
    out: dict[str, dict[str, float]] = {}
    print("night-14 probability of the best arm (mean / worst context), gap 0.08 on CTR ~0.62:")
    for structure in ("global", "segment", "context"):
        ctr = _world(rng, 0.08, structure)
        for traffic in (30, 100):
            for label, config, groups in (
                ("none", BanditConfig(points=400), None),
                ("fixed50", BanditConfig(points=400, pooling_strength=50.0), segments),
                (
                    "eb100",
                    BanditConfig(points=400, pooling_strength=100.0, pooling_rule="empirical_bayes"),
                    segments,
                ),
            ):
                prob = np.mean(
                    [
                        simulate_policy_learning(ctr, 14, traffic, config, seed, groups)[
                            "best_arm_probability"
                        ][-1]
                        for seed in range(reps)
                    ],
                    axis=0,
                )
                key = f"{structure}/{traffic}/{label}"
                out[key] = {"mean": float(prob.mean()), "worst": float(prob.min())}
                print(
                    f"  best arm per {structure:<8} {traffic:>4} lists  pooling={label:<8} "
                    f"{prob.mean():.2f} / {prob.min():.2f}"
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--boot", type=int, default=300)
    args = parser.parse_args()

    start = time.perf_counter()
    cov = coverage(args.reps, args.n, args.boot)
    print(f"coverage of the 95% CI over {args.reps} repetitions, n={args.n} impressions each")
    print(f"{'policy/estimator':<20} {'coverage':>9} {'bias':>9} {'rmse':>9}")
    for key, row in cov.items():
        print(f"{key:<20} {row['coverage']:>9.3f} {row['bias']:>9.4f} {row['rmse']:>9.4f}")
    elapsed = time.perf_counter() - start

    t_scale = scale_timing(500_000, 500)
    print(f"500k impressions, 4 policies, 500 cluster-bootstrap replicates: {t_scale:.1f}s")

    ctr = np.array(
        [
            [0.04, 0.05, 0.08, 0.05, 0.03, 0.06],
            [0.10, 0.06, 0.05, 0.05, 0.04, 0.05],
            [0.05, 0.05, 0.05, 0.09, 0.05, 0.06],
        ]
    )
    curves = {}
    for traffic in (200, 500, 2000):
        out = simulate_policy_learning(ctr, 14, traffic, BanditConfig(), seed=7)
        curves[traffic] = out["best_arm_share"].min(axis=1).round(3).tolist()
        print(f"best-arm share (worst context) per night, {traffic} lists/context/night: {curves[traffic]}")

    pooling = pooling_comparison()

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench_ope.json"
    path.write_text(
        json.dumps(
            {
                "reps": args.reps,
                "n": args.n,
                "coverage": cov,
                "coverage_seconds": elapsed,
                "scale_500k_seconds": t_scale,
                "policy_learning_worst_context": curves,
                "pooling_night14": pooling,
            },
            indent=2,
        )
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
