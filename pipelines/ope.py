"""Nightly step ``ope``: off-policy CTR estimates per list impression from the logged treatment traffic.

Data: the treatment list impressions that arrived on D (``feedback_events(D)``, attributed exactly like
``bandit_update``: one trial per ``(user, daypart, list_version, service day)``, reward = any click on
it in the same partition), each with its logged context, arm and propensity. Control traffic is a
deterministic policy (the baseline arm, propensity 1) on a different list (not re-ranked), so it cannot
support estimates of the bandit's arms and is left out.

Target policies: ``logging`` (the policy that served those lists: ``bandit/policy`` of the newest run date
before D, else reconstructed from the logged propensities), ``posterior`` (``bandit/policy(D)``, the
policy served next), and ``arm:<name>`` for each arm (always that arm). Reward model for DR: the
posterior mean per (context, arm) of the snapshot *before* D, fitted on earlier days only, so DR stays
unbiased on D's data. Estimators and intervals: :mod:`deepcuts.models.policy.ope`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from deepcuts.contracts import C, Dataset
from deepcuts.models.policy.bandit import BanditConfig, posterior_mean
from deepcuts.models.policy.context import CONTEXTS, category_codes, context_index
from deepcuts.models.policy.ope import LoggedTrials, evaluate_policies
from deepcuts.pipelines.bandit_update import (
    ARM_INDEX,
    CLICK_OFFSET,
    CONTEXT,
    FIRST_OFFSET,
    attribute_list_impressions,
    load_posterior,
    policy_probabilities,
    posterior_arrays,
    read_feedback_window,
)
from deepcuts.pipelines.storage import Lake, MissingDataError
from deepcuts.progress import get_logger
from deepcuts.seeds import rng_for
from deepcuts.settings import Settings

log = get_logger(__name__)


def policy_matrix(frame: pd.DataFrame, arms: tuple[str, ...]) -> np.ndarray:
    """Contexts x arms selection probabilities from a BANDIT_POLICY table (arms absent -> 0; a context
    absent from the table -> uniform)."""
    out = np.zeros((len(CONTEXTS), len(arms)))
    ctx = context_index(frame[C.SEGMENT].to_numpy(object), frame[C.DAYPART].to_numpy(object))
    arm = category_codes(frame[C.ARM].to_numpy(object), arms)
    ok = (ctx >= 0) & (arm >= 0)
    out[ctx[ok], arm[ok]] = frame[C.SELECTION_PROBABILITY].to_numpy(np.float64)[ok]
    empty = out.sum(axis=1) <= 0
    out[empty] = 1.0 / len(arms)
    return out / out.sum(axis=1, keepdims=True)


def logging_matrix_from_logs(trials: LoggedTrials, n_arms: int) -> np.ndarray:
    """The logging policy reconstructed from logged propensities: per (context, arm) the median logged
    propensity; the remaining mass of a context is spread evenly over its arms never logged."""
    out = np.full((len(CONTEXTS), n_arms), np.nan)
    frame = pd.DataFrame({"c": trials.context, "a": trials.arm, "p": trials.propensity})
    med = frame.groupby(["c", "a"])["p"].median()
    if len(med):
        out[med.index.get_level_values(0), med.index.get_level_values(1)] = med.to_numpy()
    for row in out:
        known = np.isfinite(row)
        mass = row[known].sum()
        if mass > 1.0:
            row[known] /= mass
            mass = 1.0
        row[~known] = (1.0 - mass) / (~known).sum() if (~known).any() else 0.0
    return out / out.sum(axis=1, keepdims=True)


def _logged_trials(
    lake: Lake, run_date: date, arms: tuple[str, ...], day_start_hour: int
) -> tuple[LoggedTrials, dict[str, int]]:
    events = read_feedback_window(lake, run_date, 0)
    keys, stats = attribute_list_impressions(events, arms, day_start_hour)
    keys = keys[keys[FIRST_OFFSET] == 0]
    trials = LoggedTrials(
        context=keys[CONTEXT].to_numpy(np.int64),
        arm=keys[ARM_INDEX].to_numpy(np.int64),
        propensity=keys[C.PROPENSITY].to_numpy(np.float64),
        reward=(keys[CLICK_OFFSET].to_numpy(np.int64) == 0).astype(np.float64),
        cluster=keys[C.USER_ID].to_numpy(np.int64),
    )
    return trials, stats


def ope(settings: Settings, run_date: date) -> dict[str, Any]:
    """IPS / SNIPS / DR estimates with bootstrap 95% CIs: logging, posterior and single-arm policies."""
    cfg = settings.bandit
    config = BanditConfig.from_settings(cfg)
    arms = tuple(cfg.arms)
    lake = Lake(settings.home)

    trials, stats = _logged_trials(lake, run_date, arms, cfg.daypart_starts[0])
    if trials.n == 0:
        log.warning(
            "ope %s: no treatment list impressions with propensities arrived; estimates are empty", run_date
        )

    # reward model: the posterior before D (independent of D's rewards)
    alpha_prev, beta_prev, _ = load_posterior(lake, run_date, arms, config)
    reward_model = posterior_mean(alpha_prev, beta_prev)

    lake.require_inputs(run_date, Dataset.BANDIT_POLICY, Dataset.BANDIT_POSTERIOR, missing_ok=True)
    previous_policy = lake.latest_before(Dataset.BANDIT_POLICY, run_date)
    if previous_policy is not None:
        logging_pi = policy_matrix(lake.read_df(Dataset.BANDIT_POLICY, previous_policy), arms)
    else:
        logging_pi = logging_matrix_from_logs(trials, len(arms))
    if lake.has(Dataset.BANDIT_POLICY, run_date):
        posterior_pi = policy_matrix(lake.read_df(Dataset.BANDIT_POLICY, run_date), arms)
    elif lake.has(Dataset.BANDIT_POSTERIOR, run_date):
        alpha, beta = posterior_arrays(lake.read_df(Dataset.BANDIT_POSTERIOR, run_date), arms, config)
        *_, posterior_pi = policy_probabilities(
            alpha, beta, config, rng_for(cfg.seed, run_date, "bandit.ope_mc")
        )
    else:
        raise MissingDataError(
            f"ope {run_date}: neither bandit/policy nor bandit/posterior exists for this run date; "
            "run bandit_update and assign first"
        )
    policies = {"logging": logging_pi, "posterior": posterior_pi}
    for k, arm in enumerate(arms):
        one_hot = np.zeros_like(logging_pi)
        one_hot[:, k] = 1.0
        policies[f"arm:{arm}"] = one_hot

    estimates = evaluate_policies(
        policies,
        trials,
        reward_model,
        n_boot=cfg.ope_bootstrap,
        rng=rng_for(cfg.seed, run_date, "bandit.ope_bootstrap"),
        min_ess=cfg.ope_min_ess,
    )
    frame = pd.DataFrame(
        {
            C.POLICY: [e.policy for e in estimates],
            C.ESTIMATOR: [e.estimator for e in estimates],
            C.ESTIMATE: [e.estimate for e in estimates],
            C.CI_LOW: [e.ci_low for e in estimates],
            C.CI_HIGH: [e.ci_high for e in estimates],
            C.N_TRIALS: [e.n_trials for e in estimates],
            C.ESS: [e.ess for e in estimates],
            C.THIN_SUPPORT: [e.thin_support for e in estimates],
            C.RUN_DATE: run_date,
        }
    )
    path = lake.write_table(Dataset.OPE, run_date, frame)
    lake.mark_all_complete()

    dr = {e.policy: e for e in estimates if e.estimator == "dr"}
    arm_dr = {p: e.estimate for p, e in dr.items() if p.startswith("arm:") and not e.thin_support}
    result: dict[str, Any] = {
        "run_date": run_date.isoformat(),
        "n_trials": trials.n,
        "clicks": int(trials.reward.sum()),
        "logged_ctr": float(trials.reward.mean()) if trials.n else None,
        "posterior_dr": _finite(dr["posterior"].estimate),
        "posterior_dr_ci": [_finite(dr["posterior"].ci_low), _finite(dr["posterior"].ci_high)],
        "best_arm_dr": max(arm_dr, key=lambda p: arm_dr[p]).removeprefix("arm:") if arm_dr else None,
        "thin_support": sorted({e.policy for e in estimates if e.thin_support}),
        "duplicate_events": stats.get("duplicate_events", 0),
        "path": path,
    }
    log.info(
        "ope %s: %d trials, logged CTR %s, posterior policy DR %s",
        run_date,
        trials.n,
        result["logged_ctr"],
        result["posterior_dr"],
    )
    return result


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
