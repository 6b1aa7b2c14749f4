"""Off-policy estimators: hand-computed values, coverage on a synthetic logging problem, and the step."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from deepcuts.contracts import C, Dataset
from deepcuts.models.policy.ope import (
    LoggedTrials,
    effective_sample_size,
    evaluate_policies,
    point_estimates,
    true_policy_value,
)
from deepcuts.pipelines.bandit_update import bandit_update
from deepcuts.pipelines.ope import logging_matrix_from_logs, ope
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings

D = date(2026, 3, 10)


def test_point_estimates_hand_computed() -> None:
    # 2 contexts x 2 arms; target always plays arm 1
    pi = np.array([[0.0, 1.0], [0.0, 1.0]])
    q = np.array([[0.1, 0.2], [0.3, 0.4]])
    t = LoggedTrials(
        context=np.array([0, 0, 1, 1]),
        arm=np.array([1, 0, 1, 1]),
        propensity=np.array([0.5, 0.5, 0.25, 0.25]),
        reward=np.array([1.0, 1.0, 0.0, 1.0]),
        cluster=np.arange(4),
    )
    # weights 2, 0, 4, 4; w * r = 2, 0, 0, 4
    est = point_estimates(pi, t, q)
    assert est["ips"] == pytest.approx(6 / 4)
    assert est["snips"] == pytest.approx(6 / 10)
    # dr terms: 0.2 + 2 (1 - 0.2) = 1.8; 0.2 + 0 = 0.2; 0.4 + 4 (0 - 0.4) = -1.2; 0.4 + 4 (1 - 0.4) = 2.8
    assert est["dr"] == pytest.approx((1.8 + 0.2 - 1.2 + 2.8) / 4)
    assert effective_sample_size(np.array([2.0, 0.0, 4.0, 4.0])) == pytest.approx(100 / 36)


def _synthetic(rng: np.random.Generator, n: int) -> tuple[LoggedTrials, np.ndarray, np.ndarray, np.ndarray]:
    """3 contexts x 4 arms, a stochastic logging policy with a floor, Bernoulli clicks."""
    ctr = np.array([[0.05, 0.10, 0.20, 0.08], [0.15, 0.05, 0.05, 0.10], [0.08, 0.08, 0.12, 0.30]])
    mu = np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.4, 0.4], [0.25, 0.25, 0.25, 0.25]])
    px = np.array([0.5, 0.3, 0.2])
    ctx = rng.choice(3, size=n, p=px)
    u = rng.random(n)
    arm = (np.cumsum(mu[ctx], axis=1) <= u[:, None]).sum(axis=1)
    reward = (rng.random(n) < ctr[ctx, arm]).astype(float)
    users = rng.integers(0, n // 4, size=n)  # ~4 lists per user: clustered
    trials = LoggedTrials(ctx, arm, mu[ctx, arm], reward, users)
    return trials, ctr, mu, px


def test_estimators_cover_the_true_value() -> None:
    reps, n = 40, 4000
    targets = {
        "logging": None,
        "arm2": np.tile([0.0, 0.0, 1.0, 0.0], (3, 1)),
        "greedy": np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]]),
        "mix": np.tile([0.25, 0.25, 0.25, 0.25], (3, 1)),
    }
    wrong_model = np.full((3, 4), 0.1)  # DR must stay unbiased with a poor reward model
    hits: dict[tuple[str, str], int] = {}
    for rep in range(reps):
        rng = np.random.default_rng(1000 + rep)
        trials, ctr, mu, px = _synthetic(rng, n)
        policies = {k: (mu if v is None else v) for k, v in targets.items()}
        for e in evaluate_policies(policies, trials, wrong_model, n_boot=200, rng=rng, min_ess=50):
            truth = true_policy_value(policies[e.policy], px, ctr)
            hits[(e.policy, e.estimator)] = hits.get((e.policy, e.estimator), 0) + (
                e.ci_low <= truth <= e.ci_high
            )
    coverage = {k: v / reps for k, v in hits.items()}
    assert min(coverage.values()) >= 0.9, coverage


def test_thin_support_flag() -> None:
    rng = np.random.default_rng(0)
    trials, _, mu, _ = _synthetic(rng, 300)
    rare = np.tile([0.0, 0.0, 0.0, 1.0], (3, 1))
    out = evaluate_policies({"rare": rare, "logging": mu}, trials, np.zeros((3, 4)), 100, rng, min_ess=100)
    flags = {e.policy: e.thin_support for e in out}
    assert flags == {"rare": True, "logging": False}


def test_logging_matrix_from_logs() -> None:
    t = LoggedTrials(
        context=np.array([0, 0, 0]),
        arm=np.array([0, 0, 1]),
        propensity=np.array([0.5, 0.5, 0.3]),
        reward=np.zeros(3),
        cluster=np.arange(3),
    )
    m = logging_matrix_from_logs(t, 4)
    assert m[0].tolist() == pytest.approx([0.5, 0.3, 0.1, 0.1])
    assert m[1].tolist() == pytest.approx([0.25] * 4)


def test_ope_step_writes_estimates(settings: Settings) -> None:
    lake = Lake(settings.home)
    arms = settings.bandit.arms
    rng = np.random.default_rng(4)
    rows = []
    for u in range(400):
        for d_i, daypart in enumerate(("morning", "evening")):
            k = int(rng.integers(len(arms)))
            version = "v1"
            base = {
                C.EVENT_TS: datetime(2026, 3, 10, 9, tzinfo=UTC) + timedelta(minutes=u),
                C.USER_ID: u,
                C.ITEM_ID: 1,
                C.RATING: None,
                C.ARM: arms[k],
                C.LIST_VERSION: version,
                C.VARIANT: "treatment",
                C.SEGMENT: "casual",
                C.DAYPART: daypart,
                C.PROPENSITY: 1 / len(arms),
            }
            rows.append(base | {C.EVENT_ID: f"{u}-{d_i}-i", C.EVENT_TYPE: "impression", C.POSITION: 1})
            if rng.random() < (0.3 if arms[k] == "graph" else 0.1):
                rows.append(base | {C.EVENT_ID: f"{u}-{d_i}-c", C.EVENT_TYPE: "click", C.POSITION: 1})
    lake.write_table(Dataset.FEEDBACK_EVENTS, D, pd.DataFrame(rows))
    lake.mark_all_complete()  # as ingest does when it finishes
    bandit_update(settings, D)
    out = ope(settings, D)
    first = lake.read_bytes(Dataset.OPE, D, "part-0.parquet")
    assert ope(settings, D)["n_trials"] == out["n_trials"] == 800
    assert lake.read_bytes(Dataset.OPE, D, "part-0.parquet") == first
    table = lake.read_df(Dataset.OPE, D)
    assert len(table) == (2 + len(arms)) * 3
    logging_ips = table[(table[C.POLICY] == "logging") & (table[C.ESTIMATOR] == "ips")].iloc[0]
    assert logging_ips[C.ESTIMATE] == pytest.approx(out["logged_ctr"])  # uniform logging: weights 1
    assert out["best_arm_dr"] == "graph"
    # a single arm keeps ~800 / 6 trials of weight 6: ESS = its trial count, above the 100 threshold
    arm_ips = table[(table[C.POLICY] == "arm:graph") & (table[C.ESTIMATOR] == "ips")].iloc[0]
    assert 100 < arm_ips[C.ESS] < 200 and out["thin_support"] == []
