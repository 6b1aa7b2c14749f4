"""A/B statistics benchmark: A/A false-positive rate of the sequential test, power, and the SRM check.

Runs the statistics of ``deepcuts.models.abtest.ab_stats`` exactly as ``deepcuts.pipelines.ab_analysis`` does
(cumulative per-user totals, one look per night, running minimum of the mSPRT p-value), on synthetic
user-level data with known truth, so many seeded experiments fit in a minute:

* every night each user visits with probability ``visit_p`` and then sees one list of ``list_len``
  impressions; a user's CTR is drawn once from Beta with mean ``base_ctr`` and concentration ``kappa``
  (heterogeneous users: clicks of one user are correlated, which is why users are the unit);
* A/A: both variants share the truth; the false-positive rate is the share of experiments whose
  always-valid p-value ever falls to ``alpha`` within the horizon (looking every night);
* power: treatment users' CTRs are multiplied by ``1 + lift``; power is the share of experiments that
  reach ``p <= alpha`` with a positive difference by each night;
* SRM: chi-square p on 50/50 random splits (false alarms at ``srm_alpha``), on the hash split of 20,000
  ids, and on a 48/52 split of 20,000 users.

    .venv/bin/python benchmarks/bench_ab.py [--quick]

Prints a table and writes ``benchmarks/out/bench_ab.json`` and ``benchmarks/out/bench_ab_power.png``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from deepcuts.experiment import variant_of
from deepcuts.models.abtest.ab_stats import msprt_p_value, srm_test, user_ctr
from deepcuts.settings import ABSettings

OUT = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True)
class Design:
    users: int
    nights: int
    base_ctr: float = 0.05
    kappa: float = 20.0
    visit_p: float = 0.5
    list_len: int = 10


def run_experiments(
    design: Design, lift: float, runs: int, tau2: float, alpha: float, seed: int
) -> np.ndarray:
    """Night (1-based) at which each experiment first reached p <= alpha with the sign of ``lift``
    (or with any sign when ``lift == 0``); 0 = never within the horizon."""
    rng = np.random.default_rng(seed)
    half = design.users // 2
    a = design.base_ctr * design.kappa
    b = (1 - design.base_ctr) * design.kappa
    stop = np.zeros(runs, dtype=np.int64)
    for r in range(runs):
        p_ctl = rng.beta(a, b, half)
        p_trt = np.clip(rng.beta(a, b, design.users - half) * (1 + lift), 0, 1)
        clicks = [np.zeros(half), np.zeros(design.users - half)]
        imps = [np.zeros(half), np.zeros(design.users - half)]
        p_run = 1.0
        for night in range(1, design.nights + 1):
            for g, probs in enumerate((p_ctl, p_trt)):
                n = design.list_len * (rng.random(probs.size) < design.visit_p)
                imps[g] += n
                clicks[g] += rng.binomial(n, probs)
            ctl, trt = user_ctr(clicks[0], imps[0]), user_ctr(clicks[1], imps[1])
            diff = trt.ctr - ctl.ctr
            p_run = msprt_p_value(diff, trt.variance + ctl.variance, tau2, p_run)
            if p_run <= alpha and (lift == 0 or np.sign(diff) == np.sign(lift)):
                stop[r] = night
                break
    return stop


def srm_section(srm_alpha: float, runs: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    shares = {"control": 0.5, "treatment": 0.5}
    alarms = 0
    for _ in range(runs):
        t = int(rng.binomial(20_000, 0.5))
        alarms += srm_test({"control": 20_000 - t, "treatment": t}, shares, srm_alpha).mismatch
    ab = ABSettings()
    split = variant_of(np.arange(1, 20_001), ab.experiment, ab.salt, 0.5)
    hashed = srm_test(
        {"control": int((split == "control").sum()), "treatment": int((split == "treatment").sum())},
        shares,
        srm_alpha,
    )
    skewed = srm_test({"control": 9_600, "treatment": 10_400}, shares, srm_alpha)
    return {
        "false_alarm_rate_50_50": alarms / runs,
        "hash_split_20000_p": hashed.p_value,
        "hash_split_20000_fires": hashed.mismatch,
        "split_48_52_20000_p": skewed.p_value,
        "split_48_52_20000_fires": skewed.mismatch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke test)")
    parser.add_argument("--tau2", type=float, default=None, help="mSPRT tau^2 (default: settings)")
    args = parser.parse_args()
    ab = ABSettings()
    tau2 = args.tau2 if args.tau2 is not None else ab.msprt_tau2
    aa_runs, power_runs = (100, 40) if args.quick else (1000, 200)
    t0 = time.monotonic()

    aa_design = Design(users=2_000, nights=30)
    aa_stop = run_experiments(aa_design, 0.0, aa_runs, tau2, ab.alpha, seed=1)
    fpr = float((aa_stop > 0).mean())
    # A/A at the power design's size too (fewer runs: it is the expensive one)
    aa_big = run_experiments(Design(users=20_000, nights=14), 0.0, power_runs, tau2, ab.alpha, seed=2)
    fpr_big = float((aa_big > 0).mean())

    # Users are the unit, so the between-user spread of true CTRs caps what more nights can buy: with
    # a fixed population the estimate converges to that population's own difference. Power is
    # therefore reported for two designs: moderate heterogeneity (kappa 100) and strong (kappa 20).
    power: dict[str, dict] = {}
    for label, design in (
        ("20k_users_kappa100", Design(users=20_000, nights=28, kappa=100.0)),
        ("20k_users_kappa20", Design(users=20_000, nights=28, kappa=20.0)),
        ("100k_users_kappa20", Design(users=100_000, nights=28, kappa=20.0)),
    ):
        stop = run_experiments(design, 0.05, power_runs, tau2, ab.alpha, seed=3)
        by_night = [float(((stop > 0) & (stop <= k)).mean()) for k in range(1, design.nights + 1)]
        power[label] = {
            "design": asdict(design),
            "relative_lift": 0.05,
            "runs": power_runs,
            "power_by_night": by_night,
            "nights_to_80pct_power": next((k + 1 for k, p in enumerate(by_night) if p >= 0.8), None),
        }

    srm = srm_section(ab.srm_alpha, 2_000, seed=4)
    result = {
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "alpha": ab.alpha,
        "msprt_tau2": tau2,
        "aa": {
            "design": asdict(aa_design),
            "runs": aa_runs,
            "false_positive_rate": fpr,
            "design_20000": asdict(Design(users=20_000, nights=14)),
            "runs_20000": power_runs,
            "false_positive_rate_20000": fpr_big,
        },
        "power": power,
        "srm": srm,
        "seconds": round(time.monotonic() - t0, 1),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_ab.json").write_text(json.dumps(result, indent=2))
    _plot(power, OUT / "bench_ab_power.png")

    print(f"A/A false-positive rate, 2,000 users x 30 nightly looks, {aa_runs} runs: {fpr:.3f}")
    print(f"A/A false-positive rate, 20,000 users x 14 nightly looks, {power_runs} runs: {fpr_big:.3f}")
    for label, entry in power.items():
        curve = entry["power_by_night"]
        marks = ", ".join(f"night {k}: {curve[k - 1]:.2f}" for k in (7, 14, 21, 28) if k <= len(curve))
        horizon = entry["nights_to_80pct_power"]
        print(f"power, +5% relative CTR lift, {label}: {marks}; 80% at night {horizon}")
    print(
        f"SRM (alpha {ab.srm_alpha}): false alarms on 50/50 {srm['false_alarm_rate_50_50']:.4f}; "
        f"hash split p {srm['hash_split_20000_p']:.3f}; 48/52 of 20,000 p {srm['split_48_52_20000_p']:.2e} "
        f"(fires: {srm['split_48_52_20000_fires']})"
    )
    print(f"done in {result['seconds']}s -> {OUT / 'bench_ab.json'}")


def _plot(power: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, entry in power.items():
        curve = entry["power_by_night"]
        ax.plot(range(1, len(curve) + 1), curve, marker=".", label=label)
    ax.axhline(0.8, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="night", ylabel="power (share detected)", ylim=(0, 1.02))
    ax.set_title("mSPRT power, +5% relative CTR lift (base CTR 5%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
