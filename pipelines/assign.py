"""Nightly step ``assign``: an arm, a propensity and an A/B variant per (user, daypart) for day D+1.

For every user in ``interactions(D)`` and every daypart:

- context = (segment from the user's history as of the end of D, daypart);
- variant = the experiment in force for ``D`` (``deepcuts.pipelines.experiment_registry.state_for``: the
registry's
  lake copy, the ``ab.*`` settings before its first entry): while it runs, the salted hash split of
  ``deepcuts.experiment.variant_of`` (stable across nights; a ramp moves only the users between the old
  and the new share); once shipped or stopped, the shipped variant (control after a stop) for everyone;
- treatment: arm drawn from the context's selection probabilities (Thompson probabilities of
  ``posterior(D)`` mixed with the exploration floor); propensity = that arm's selection probability.
  The draw is ``u = splitmix64(seed(D), 4 * user_id + daypart_index)`` mapped through the cumulative
  probabilities, so it is reproducible from (run date, seed) and a user's draw never depends on
  which other users exist;
- control: the experiment's baseline arm (``ab.baseline_arm`` by default) with propensity 1.0.

Writes ``assignments(D)``, ``bandit/policy(D)`` (one row per context and arm), ``arm_lists(D)`` and
``served_lists(D)``. ``arm_lists`` holds every list the night may serve, one per (user, variant, arm):
the control users' baseline list (the baseline arm's candidates, top ``rerank.list_length`` by rank, no
re-ranking, reason ``baseline``; novelty and the long-tail flag from ``scored(D)``) and, for the treatment
users, the re-ranked list of every arm the policy may choose; the publish step loads them once a night,
so an intraday refresh that re-draws the arms loads no list. ``served_lists`` is each (user, daypart)'s
pick among them (its assignment's arm and variant).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from deepcuts.contracts import C, Dataset, Variant
from deepcuts.experiment import ExperimentState
from deepcuts.models.policy.bandit import BanditConfig, posterior_mean, sample_arms, uniform_hash
from deepcuts.models.policy.context import (
    DAYPARTS,
    SEGMENTS,
    category_codes,
    context_arm_frame,
    user_segments,
)
from deepcuts.pipelines.bandit_update import policy_probabilities, posterior_arrays
from deepcuts.pipelines.experiment_registry import state_for
from deepcuts.pipelines.storage import Lake, MissingDataError
from deepcuts.progress import get_logger
from deepcuts.seeds import derive_seed, rng_for
from deepcuts.settings import Settings

log = get_logger(__name__)

#: Reason written on control rows (the baseline is served as the arm ranked it).
BASELINE_REASON = "baseline"


def active_arms(settings: Settings, lake: Lake, run_date: date) -> tuple[list[str], list[str]]:
    """(arms the policy may choose tonight, arms dropped and why-able): bandit arms that are enabled and
    have re-ranked lists for ``run_date``. Dropping an arm keeps every logged propensity exact."""
    enabled = [a for a in settings.bandit.arms if a in settings.arms.enabled]
    available = [a for a in enabled if lake.parts(Dataset.RERANKED, run_date, subdir=a)]
    dropped = [a for a in settings.bandit.arms if a not in available]
    if not available:
        raise MissingDataError(
            f"assign {run_date}: no re-ranked lists for any bandit arm {list(settings.bandit.arms)} "
            f"(looked in {lake.partition_dir(Dataset.RERANKED, run_date)}); run the score step first"
        )
    return available, dropped


def policy_table(
    alpha: np.ndarray,
    beta: np.ndarray,
    thompson: np.ndarray,
    selection: np.ndarray,
    arms: list[str],
    run_date: date,
) -> pd.DataFrame:
    """BANDIT_POLICY_SCHEMA rows: contexts (canonical order) x arms."""
    return context_arm_frame(
        arms,
        run_date,
        {
            C.ALPHA: alpha,
            C.BETA: beta,
            C.MEAN: posterior_mean(alpha, beta),
            C.THOMPSON_PROBABILITY: thompson,
            C.SELECTION_PROBABILITY: selection,
        },
    )


def draw_assignments(
    settings: Settings,
    run_date: date,
    segments: pd.DataFrame,
    selection: np.ndarray,
    arms: list[str],
    experiment: ExperimentState,
) -> pd.DataFrame:
    """ASSIGNMENTS_SCHEMA rows, users (sorted) x dayparts (canonical order), split by ``experiment``."""
    users = segments[C.USER_ID].to_numpy(np.int64)
    n_users, n_dayparts = users.size, len(DAYPARTS)
    seg_idx = category_codes(segments[C.SEGMENT].to_numpy(object), SEGMENTS)
    user_col = np.repeat(users, n_dayparts)
    day_idx = np.tile(np.arange(n_dayparts, dtype=np.int64), n_users)
    ctx = np.repeat(seg_idx, n_dayparts) * n_dayparts + day_idx
    seed = derive_seed(settings.bandit.seed, run_date, "bandit.assign")
    uniforms = uniform_hash(user_col * n_dayparts + day_idx, seed)
    arm_idx = sample_arms(selection, ctx, uniforms)

    variant = np.repeat(experiment.variants(users), n_dayparts)
    treated = variant == Variant.TREATMENT.value
    arm_names = np.asarray(arms, dtype=object)
    arm = np.where(treated, arm_names[arm_idx], experiment.baseline_arm)
    propensity = np.where(treated, selection[ctx, arm_idx], 1.0)
    return pd.DataFrame(
        {
            C.USER_ID: user_col,
            C.DAYPART: np.asarray(DAYPARTS, dtype=object)[day_idx],
            C.SEGMENT: np.asarray(SEGMENTS, dtype=object)[np.repeat(seg_idx, n_dayparts)],
            C.ARM: arm,
            C.PROPENSITY: propensity.astype(np.float64),
            C.VARIANT: variant.astype(object),
            C.EXPERIMENT: experiment.experiment,
            C.RUN_DATE: np.full(user_col.size, run_date),
        }
    )


def _baseline_lists(settings: Settings, lake: Lake, run_date: date, arm: str) -> pd.DataFrame:
    """Top ``list_length`` candidates of the baseline arm, as ranked by the arm, with novelty and the
    long-tail flag: from ``scored(D)`` (every candidate of every arm, with its deep-cut scores); when the
    score step did not cover the baseline arm, from ``candidates(D)`` and
    :mod:`deepcuts.models.recommenders.item_stats`."""
    length = settings.rerank.list_length
    columns = [C.USER_ID, C.ITEM_ID, C.RANK, C.SCORE]
    if lake.parts(Dataset.SCORED, run_date, subdir=arm):
        scored = lake.read_df(
            Dataset.SCORED, run_date, subdir=arm, columns=[*columns, C.NOVELTY, C.IS_LONG_TAIL]
        )
        top = scored[scored[C.RANK] <= length]
        return top.assign(**{C.ARM: arm, C.REASON: BASELINE_REASON})

    from deepcuts.models.recommenders.item_stats import ItemStats
    from deepcuts.models.reranking.deepcut_scores import novelty

    log.info(
        "assign %s: no scored candidates for baseline arm %r, using candidates + item stats", run_date, arm
    )
    cand = lake.read_df(Dataset.CANDIDATES, run_date, subdir=arm, columns=columns)
    cand = cand[cand[C.RANK] <= length]
    items = lake.read_df(Dataset.ITEMS, run_date, columns=[C.ITEM_ID])
    interactions = lake.read_df(Dataset.INTERACTIONS, run_date)
    stats = ItemStats.from_frames(
        interactions, items, settings.arms.quality.prior_weight, settings.arms.long_tail.head_share
    )
    ids = cand[C.ITEM_ID].to_numpy(np.int64)
    pos = np.minimum(np.searchsorted(stats.item_ids, ids), max(stats.item_ids.size - 1, 0))
    known = stats.item_ids[pos] == ids
    share = np.where(known, stats.popularity_share[pos], 0.0)
    return cand.assign(
        **{
            C.ARM: arm,
            C.NOVELTY: novelty(share, int(stats.counts.sum())),
            C.IS_LONG_TAIL: np.where(known, stats.is_long_tail[pos], True),
            C.REASON: BASELINE_REASON,
        }
    )


def _treatment_lists(lake: Lake, run_date: date, arms: list[str]) -> pd.DataFrame:
    columns = [C.USER_ID, C.ITEM_ID, C.RANK, C.SCORE, C.ARM, C.NOVELTY, C.IS_LONG_TAIL, C.REASON]
    frames = [lake.read_df(Dataset.RERANKED, run_date, subdir=arm, columns=columns) for arm in arms]
    return pd.concat(frames, ignore_index=True)


_ARM_LIST_COLUMNS = [
    C.USER_ID,
    C.VARIANT,
    C.ARM,
    C.RANK,
    C.ITEM_ID,
    C.SCORE,
    C.NOVELTY,
    C.IS_LONG_TAIL,
    C.REASON,
    C.RUN_DATE,
]


def build_arm_lists(
    assignments: pd.DataFrame, control_lists: pd.DataFrame, treatment_lists: pd.DataFrame, run_date: date
) -> pd.DataFrame:
    """ARM_LISTS_SCHEMA rows: the control lists of the users assigned control, every treatment list
    (every arm) of the users assigned treatment; sorted by (user, variant, arm, rank)."""
    frames = []
    for variant, lists in (
        (Variant.CONTROL.value, control_lists),
        (Variant.TREATMENT.value, treatment_lists),
    ):
        users = np.unique(assignments.loc[assignments[C.VARIANT] == variant, C.USER_ID].to_numpy(np.int64))
        mine = lists[np.isin(lists[C.USER_ID].to_numpy(np.int64), users)]
        frames.append(mine.assign(**{C.VARIANT: variant}))
    out = pd.concat(frames, ignore_index=True)
    out[C.RUN_DATE] = run_date
    return out[_ARM_LIST_COLUMNS].sort_values([C.USER_ID, C.VARIANT, C.ARM, C.RANK], ignore_index=True)


def build_served_lists(
    assignments: pd.DataFrame, control_lists: pd.DataFrame, treatment_lists: pd.DataFrame, run_date: date
) -> tuple[pd.DataFrame, int]:
    """SERVED_LISTS_SCHEMA rows for every assignment (user, daypart) that has a list; and the number
    of assignments left without one."""
    return _gather_served(
        assignments,
        {Variant.CONTROL.value: control_lists, Variant.TREATMENT.value: treatment_lists},
        run_date,
    )


def served_from_arm_lists(
    assignments: pd.DataFrame, arm_lists: pd.DataFrame, run_date: date
) -> tuple[pd.DataFrame, int]:
    """:func:`build_served_lists` from ``arm_lists`` (each assignment's pick by user, variant and arm)."""
    variants = arm_lists[C.VARIANT].to_numpy(object)
    lists = arm_lists.drop(columns=[C.VARIANT, C.RUN_DATE], errors="ignore")
    by_variant = {v: lists[variants == v] for v in (Variant.CONTROL.value, Variant.TREATMENT.value)}
    return _gather_served(assignments, by_variant, run_date)


#: Columns of a served row taken from the assignment; the others come from the chosen list.
_ASSIGNMENT_KEYS = [C.USER_ID, C.DAYPART, C.ARM, C.VARIANT]


def _gather_served(
    assignments: pd.DataFrame, lists: dict[str, pd.DataFrame], run_date: date
) -> tuple[pd.DataFrame, int]:
    """Each assignment's list: the rows of ``lists[variant]`` with the assignment's (user, arm), in
    (user, daypart, rank) order (ties in rank keep the list's order); and the number of assignments
    without a row (assignments are unique per (user, daypart), as :func:`draw_assignments` writes them).

    An inner join of the assignments with the lists on (user, arm) gives the same rows; this gathers them
    by position instead (the lists sorted once by (user, arm, rank), each assignment's run found by a
    binary search) and taken column by column (Arrow-backed strings stay Arrow), so that no hash-join
    copies of the lists are made and the result needs no sort: at ML-20M shape (8.3M treatment list
    rows, 554k assignments) the assign step's peak RSS fell from 3.8 to 3.05 GB (docs/benchmarks.md).
    """
    users = assignments[C.USER_ID].to_numpy(np.int64)
    days = category_codes(assignments[C.DAYPART].to_numpy(object), DAYPARTS)
    served_order = np.lexsort((days, users))  # the served rows' order: by user, then daypart
    users = users[served_order]
    arm_names = list(pd.unique(assignments[C.ARM].to_numpy(object)))
    arm_codes = category_codes(assignments[C.ARM].to_numpy(object)[served_order], arm_names)
    variants = assignments[C.VARIANT].to_numpy(object)[served_order]
    user_vocab = np.unique(users)

    lengths = np.zeros(users.size, np.int64)
    runs: list[tuple[pd.DataFrame, npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    for variant, frame in lists.items():
        mine = np.flatnonzero(variants == variant)  # this variant's assignments, in served order
        key = _user_arm_keys(frame[C.USER_ID].to_numpy(np.int64), user_vocab, frame[C.ARM], arm_names)
        ranked = np.lexsort((frame[C.RANK].to_numpy(), key))  # stable: equal ranks keep the list's order
        ranked = ranked[key[ranked] >= 0]  # users or arms no assignment has
        sorted_keys = key[ranked]
        wanted = np.searchsorted(user_vocab, users[mine]) * len(arm_names) + arm_codes[mine]
        start = np.searchsorted(sorted_keys, wanted, side="left")
        lengths[mine] = np.searchsorted(sorted_keys, wanted, side="right") - start
        runs.append((frame, mine, start, ranked))

    # served row i is row picks[i] of the variants' gathered rows, concatenated (a permutation)
    offsets = np.cumsum(lengths) - lengths
    taken: list[tuple[pd.DataFrame, npt.NDArray[np.int64]]] = []
    places = []
    for frame, mine, start, ranked in runs:
        counts = lengths[mine]
        within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        taken.append((frame, ranked[np.repeat(start, counts) + within]))  # the list rows, run after run
        places.append(np.repeat(offsets[mine], counts) + within)  # where they go in the served order
    picks = np.empty(int(lengths.sum()), np.int64)
    picks[np.concatenate(places)] = np.arange(picks.size)
    # Column by column, with positional takes (Arrow-backed strings stay Arrow, no Python objects): the
    # assignment's keys repeated over its rows, then the chosen list's columns.
    of_assignment = np.repeat(served_order, lengths)
    out = {col: assignments[col].take(of_assignment).reset_index(drop=True) for col in _ASSIGNMENT_KEYS}
    for col in [c for c in taken[0][0].columns if c not in (C.USER_ID, C.ARM)]:
        gathered = pd.concat([frame[col].take(rows) for frame, rows in taken], ignore_index=True)
        out[col] = gathered.take(picks).reset_index(drop=True)
    served = pd.DataFrame(out)
    served[C.RUN_DATE] = run_date
    return served, int((lengths == 0).sum())


def _user_arm_keys(
    user_ids: npt.NDArray[np.int64], user_vocab: npt.NDArray[np.int64], arms: pd.Series, arm_names: list[str]
) -> npt.NDArray[np.int64]:
    """One int64 per (user, arm) of list rows: ``user position x arms + arm position`` over the
    assignments' users and arms, -1 where the user or the arm is not among them."""
    pos = np.minimum(np.searchsorted(user_vocab, user_ids), max(user_vocab.size - 1, 0))
    known = user_vocab[pos] == user_ids if user_vocab.size else np.zeros(user_ids.size, bool)
    arm = category_codes(arms, arm_names)  # a Series: Arrow-backed strings factorise without objects
    return np.where(known & (arm >= 0), pos * len(arm_names) + arm, -1)


def assign(settings: Settings, run_date: date) -> dict[str, Any]:
    """Assign arms and variants for D+1; write assignments, the policy table and the served lists."""
    cfg = settings.bandit
    lake = Lake(settings.home)
    if not lake.has(Dataset.BANDIT_POSTERIOR, run_date):
        raise MissingDataError(
            f"assign {run_date}: no bandit posterior for this run date "
            f"({lake.partition_dir(Dataset.BANDIT_POSTERIOR, run_date)}); run bandit_update first"
        )
    arms, dropped = active_arms(settings, lake, run_date)
    lake.require_inputs(run_date, Dataset.BANDIT_POSTERIOR, Dataset.RERANKED, Dataset.INTERACTIONS)
    if dropped:
        log.warning(
            "assign %s: arms %s are disabled or have no re-ranked lists; not served tonight",
            run_date,
            dropped,
        )

    config = BanditConfig.from_settings(cfg)
    alpha, beta = posterior_arrays(lake.read_df(Dataset.BANDIT_POSTERIOR, run_date), tuple(arms), config)
    a_eff, b_eff, thompson, selection = policy_probabilities(
        alpha, beta, config, rng_for(cfg.seed, run_date, "bandit.selection_mc")
    )
    policy = policy_table(a_eff, b_eff, thompson, selection, arms, run_date)

    interactions = lake.read_df(Dataset.INTERACTIONS, run_date, columns=[C.USER_ID, C.TS])
    segments = user_segments(interactions, run_date, cfg)
    del interactions  # the whole history (20M rows at ML-20M shape) is not needed past the segments
    experiment = state_for(settings, run_date, lake)
    assignments = draw_assignments(settings, run_date, segments, selection, arms, experiment)

    control = _baseline_lists(settings, lake, run_date, experiment.baseline_arm)
    treatment = _treatment_lists(lake, run_date, arms)
    paths = {
        "assignments": lake.write_table(Dataset.ASSIGNMENTS, run_date, assignments),
        "policy": lake.write_table(Dataset.BANDIT_POLICY, run_date, policy),
    }
    # one big table alive at a time (served lists, then arm lists: ~0.7 GB each at ML-20M shape); the
    # manifest that makes the night's tables visible is written only after both
    served, missing = build_served_lists(assignments, control, treatment, run_date)
    if missing:
        log.warning(
            "assign %s: %d (user, daypart) assignments have no list (the arm wrote none for the user)",
            run_date,
            missing,
        )
    paths["served_lists"] = lake.write_table(Dataset.SERVED_LISTS, run_date, served)
    served_rows = len(served)
    del served
    arm_lists = build_arm_lists(assignments, control, treatment, run_date)
    paths["arm_lists"] = lake.write_table(Dataset.ARM_LISTS, run_date, arm_lists)
    lake.mark_all_complete()
    treated = assignments[assignments[C.VARIANT] == Variant.TREATMENT.value]
    arm_share = (treated[C.ARM].value_counts(normalize=True).reindex(arms, fill_value=0.0)).round(4)
    result = {
        "run_date": run_date.isoformat(),
        "experiment": experiment.experiment,
        "experiment_status": experiment.status.value,
        "treatment_share": experiment.treatment_share if experiment.running else None,
        "users": int(segments.shape[0]),
        "assignments": len(assignments),
        "treatment_assignments": len(treated),
        "segments": {k: int(v) for k, v in segments[C.SEGMENT].value_counts().sort_index().items()},
        "arms": arms,
        "arms_dropped": dropped,
        "treatment_arm_share": {k: float(v) for k, v in arm_share.items()},
        "served_rows": served_rows,
        "arm_list_rows": len(arm_lists),
        "assignments_without_list": int(missing),
        "paths": paths,
    }
    log.info(
        "assign %s: %d users, %d assignments (%d treatment), %d served rows",
        run_date,
        result["users"],
        result["assignments"],
        result["treatment_assignments"],
        result["served_rows"],
    )
    return result
