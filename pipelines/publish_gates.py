"""The publish gates: what ``publish`` checks before a new serving version may go live.

The version state machine (register, load, switch, retention, recovery) is
:mod:`deepcuts.pipelines.publish`; this module only computes verdicts. Each gate is a dict
``{"gate", "passed", "value", "detail"}`` (the ``gate_report`` of ``publish_log``):

- :func:`data_gates` need only the frames (run before anything is loaded): the night's lists, its
  assignments and policy; an intraday refresh has no lists (it reuses the night's, gated then);
- :func:`critical_alert_gate` vetoes the publish while a critical alert of the run date is open;
- :func:`db_gates` check what was loaded (row counts, every assignment's list present in the lists
  table the version reads (:func:`uncovered_assignments`), :func:`changed_share` band).

:func:`checksum` identifies a night's content (identical data already live is a no-op) and
:func:`seen_pairs` reads the history the ``no_seen_items`` gate checks against.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from deepcuts.contracts import C, Dataset, Daypart, Variant
from deepcuts.pipelines import serving
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import PublishSettings

_EXAMPLES = 5  # offending rows quoted per failed gate


# --------------------------------------------------------------------------- content
def checksum(*frames: pd.DataFrame) -> str:
    """SHA-256 over the rows of each frame in a canonical order (sorted by every column).

    Row order and ``run_date`` do not matter; any changed value does.
    """
    digest = hashlib.sha256()
    for frame in frames:
        cols = sorted(c for c in frame.columns if c != C.RUN_DATE)
        canon = frame[cols].sort_values(cols, kind="stable").reset_index(drop=True)
        digest.update(",".join(cols).encode())
        digest.update(str(len(canon)).encode())
        digest.update(pd.util.hash_pandas_object(canon, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def seen_pairs(lake: Lake, run_date: date, user_ids: np.ndarray, *, distinct: bool = True) -> pd.DataFrame:
    """Distinct (user_id, item_id) pairs of the users' rating history as of ``run_date``.

    ``canonical/interactions(D)`` is a cumulative snapshot (everything up to the end of D, see
    pipelines/ingest.py), so the newest partition at or before ``run_date`` is the whole history; only
    the two id columns of the users being published are read. ``distinct=False``: every history row's
    pair, repeats included (publish: :func:`data_gates` with ``seen_distinct=False`` deduplicates them
    only when a listed item is seen, the rare case that needs them counted).
    """
    days = [d for d in lake.run_dates(Dataset.INTERACTIONS) if d <= run_date]
    if not days:
        return pd.DataFrame({C.USER_ID: pd.Series(dtype="int64"), C.ITEM_ID: pd.Series(dtype="int64")})
    users = pc.field(C.USER_ID).isin(np.unique(user_ids))
    table = lake.read_table(Dataset.INTERACTIONS, days[-1], columns=[C.USER_ID, C.ITEM_ID], filter=users)
    pairs = table.to_pandas()
    return _distinct_pairs(pairs) if distinct else pairs


def _distinct_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs.drop_duplicates()`` of a (user_id, item_id) frame: the first row of each pair, in order,
    found from one int64 key per row instead of hashing both id columns of the whole history."""
    keys = _pair_keys(pairs, pairs)
    if keys is None:
        return pairs.drop_duplicates()
    first = ~pd.Series(keys[0]).duplicated().to_numpy()
    return pairs if first.all() else pairs[first]


def _pair_keys(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """One int64 per (user_id, item_id) row of ``a`` and of ``b``, equal exactly when both ids are equal;
    ``None`` when the ids are not non-null integers or the key would not fit (use the frames then)."""
    columns = []
    for frame in (a, b):
        for col in (C.USER_ID, C.ITEM_ID):
            values = frame[col]
            if not (isinstance(values.dtype, np.dtype) and values.dtype.kind == "i"):
                return None
            columns.append(values.to_numpy().astype(np.int64, copy=False))
    a_users, a_items, b_users, b_items = columns
    if not (a_users.size and b_users.size):
        return a_users.copy(), b_users.copy()  # nothing to pair: any keys compare empty
    item_lo = min(int(a_items.min()), int(b_items.min()))
    item_span = max(int(a_items.max()), int(b_items.max())) - item_lo + 1
    user_lo = min(int(a_users.min()), int(b_users.min()))
    user_span = max(int(a_users.max()), int(b_users.max())) - user_lo + 1
    if user_span * item_span >= 2**63:
        return None
    return (
        (a_users - user_lo) * item_span + (a_items - item_lo),
        (b_users - user_lo) * item_span + (b_items - item_lo),
    )


def _no_listed_item_seen(lists: pd.DataFrame, seen: pd.DataFrame) -> bool:
    """True when no (user, item) of ``lists`` is in ``seen``, decided on int64 keys (the common case,
    cheap); False when some is or the keys cannot tell (the caller then joins the frames for the
    gate's detail)."""
    keys = _pair_keys(lists, seen)
    if keys is None:
        return False
    list_keys, seen_keys = keys
    return not pd.Series(seen_keys).isin(list_keys).any()


# --------------------------------------------------------------------------- gates
def gate(name: str, passed: bool, detail: str, value: float | None = None) -> dict[str, Any]:
    return {"gate": name, "passed": bool(passed), "value": value, "detail": detail}


def _examples(frame: pd.DataFrame, cols: list[str]) -> str:
    return json.dumps(frame[cols].head(_EXAMPLES).astype(object).to_dict("records"), default=str)


def data_gates(
    lists: pd.DataFrame | None,
    assignments: pd.DataFrame,
    policy: pd.DataFrame,
    seen: pd.DataFrame,
    list_length: int,
    *,
    seen_distinct: bool = True,
) -> list[dict[str, Any]]:
    """The gates that need only the frames. Each returns passed + a detail naming offending rows.

    ``lists`` holds every list the version may serve, one per (user, variant, arm) (``ARM_LISTS_SCHEMA``);
    ``None`` for an intraday refresh, which reads the lists of the night's version (gated when that was
    published; :func:`uncovered_assignments` checks on the database that each assignment has its list).

    - ``assignments_unique``: one assignment per (user, daypart);
    - ``complete``: every active user (one with an assignment) has an assignment for every daypart; with
      ``lists``: every assignment's (user, variant, arm) has a list, every list has exactly
      ``list_length`` rows with ranks 1..list_length, and no list belongs to a user without an
      assignment of that variant;
    - ``lists_unique``: no duplicate (user, variant, arm, rank) nor (user, variant, arm, item);
    - ``no_seen_items``: no item of any list is in its user's history (``seen``: its distinct
      (user_id, item_id) pairs; with ``seen_distinct=False`` the pairs may repeat and count once);
    - ``finite``: score, novelty, propensity finite; propensity in (0, 1];
    - ``known_values``: daypart and variant in their enums;
    - ``policy_valid``: probabilities finite in [0, 1], one row per (segment, daypart, arm), selection
      probabilities sum to 1 (+-1e-6) per context.
    """
    gates: list[dict[str, Any]] = []
    key = [C.USER_ID, C.DAYPART]
    list_key = [C.USER_ID, C.VARIANT, C.ARM]

    dup_assign = assignments[assignments.duplicated(key, keep=False)]
    gates.append(
        gate(
            "assignments_unique",
            dup_assign.empty,
            "ok"
            if dup_assign.empty
            else f"{len(dup_assign)} duplicated rows, e.g. {_examples(dup_assign, key)}",
            float(len(dup_assign)),
        )
    )

    problems: list[str] = []
    n_users = int(assignments[C.USER_ID].nunique())
    if n_users == 0:
        problems.append("no assignments: nothing to publish")
    dayparts = [d.value for d in Daypart]
    per_user = assignments.groupby(C.USER_ID)[C.DAYPART].nunique()
    partial_users = per_user[per_user < len(dayparts)]
    if len(partial_users):
        problems.append(
            f"{len(partial_users)} active users lack a daypart assignment, e.g. users "
            f"{partial_users.index[:_EXAMPLES].tolist()}"
        )
    if lists is not None:
        problems += _list_coverage(lists, assignments, list_length)
    gates.append(gate("complete", not problems, "; ".join(problems) or "ok", float(n_users)))
    if lists is not None:
        gates += _list_gates(lists, seen, seen_distinct)

    bad_parts = []
    numeric = [(C.PROPENSITY, assignments, key)]
    if lists is not None:
        numeric = [(C.SCORE, lists, list_key), (C.NOVELTY, lists, list_key), *numeric]
    for col, frame, where in numeric:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if col == C.PROPENSITY:
            bad |= ~((values > 0) & (values <= 1))
        if bad.any():
            example = _examples(frame[bad], [*where, col])
            bad_parts.append(f"{int(bad.sum())} bad {col} values, e.g. {example}")
    gates.append(gate("finite", not bad_parts, "; ".join(bad_parts) or "ok", float(len(bad_parts))))

    value_problems = []
    checked = [(C.DAYPART, set(dayparts), assignments), (C.VARIANT, {v.value for v in Variant}, assignments)]
    if lists is not None:
        checked.append((C.VARIANT, {v.value for v in Variant}, lists))
    for col, allowed, frame in checked:
        unknown = sorted(set(frame[col].unique()) - allowed)
        if unknown:
            value_problems.append(f"unknown {col} {unknown[:_EXAMPLES]} (allowed {sorted(allowed)})")
    gates.append(gate("known_values", not value_problems, "; ".join(value_problems) or "ok"))

    policy_problems = []
    ctx = [C.SEGMENT, C.DAYPART]
    for col in (C.THOMPSON_PROBABILITY, C.SELECTION_PROBABILITY, C.MEAN):
        values = policy[col].to_numpy(np.float64)
        if not (np.isfinite(values) & (values >= 0) & (values <= 1)).all():
            policy_problems.append(f"{col} outside [0, 1] or not finite")
    for col in (C.ALPHA, C.BETA):
        values = policy[col].to_numpy(np.float64)
        if not (np.isfinite(values) & (values > 0)).all():
            policy_problems.append(f"{col} not finite and positive")
    if policy.duplicated([*ctx, C.ARM]).any():
        policy_problems.append("duplicate (segment, daypart, arm) rows")
    if len(policy):
        sums = policy.groupby(ctx)[C.SELECTION_PROBABILITY].sum()
        off = sums[(sums - 1.0).abs() > 1e-6]
        if len(off):
            policy_problems.append(f"selection probabilities do not sum to 1 in {len(off)} contexts")
    else:
        policy_problems.append("the policy is empty")
    gates.append(gate("policy_valid", not policy_problems, "; ".join(policy_problems) or "ok"))
    return gates


def _list_gates(lists: pd.DataFrame, seen: pd.DataFrame, seen_distinct: bool = True) -> list[dict[str, Any]]:
    """``lists_unique`` and ``no_seen_items`` over every list the version may serve."""
    list_key = [C.USER_ID, C.VARIANT, C.ARM]
    dup_rank = lists[lists.duplicated([*list_key, C.RANK], keep=False)]
    dup_item = lists[lists.duplicated([*list_key, C.ITEM_ID], keep=False)]
    ok = dup_rank.empty and dup_item.empty
    if _no_listed_item_seen(lists, seen):
        hits = lists.iloc[0:0]
    else:
        pairs = seen if seen_distinct else _distinct_pairs(seen)
        hits = lists[[*list_key, C.ITEM_ID]].merge(pairs, on=[C.USER_ID, C.ITEM_ID], how="inner")
    return [
        gate(
            "lists_unique",
            ok,
            "ok"
            if ok
            else f"{len(dup_rank)} rows share a rank, {len(dup_item)} rows repeat an item in their "
            f"list, e.g. {_examples(pd.concat([dup_rank, dup_item]), [*list_key, C.RANK, C.ITEM_ID])}",
            float(len(dup_rank) + len(dup_item)),
        ),
        gate(
            "no_seen_items",
            hits.empty,
            "ok"
            if hits.empty
            else f"{len(hits)} listed items are in the user's history, e.g. "
            f"{_examples(hits, [*list_key, C.ITEM_ID])}",
            float(len(hits)),
        ),
    ]


def _list_coverage(lists: pd.DataFrame, assignments: pd.DataFrame, list_length: int) -> list[str]:
    """``complete``'s list half: each assignment has its list, each list is full, none is orphaned."""
    problems: list[str] = []
    list_key = [C.USER_ID, C.VARIANT, C.ARM]
    shape = lists.groupby(list_key).agg(
        n=(C.RANK, "size"), rmin=(C.RANK, "min"), rmax=(C.RANK, "max"), nr=(C.RANK, "nunique")
    )
    wanted = assignments.drop_duplicates(list_key).set_index(list_key).index
    missing = wanted.difference(shape.index)
    if len(missing):
        problems.append(
            f"{len(missing)} assigned (user, variant, arm) have no list, e.g. {missing[:_EXAMPLES].tolist()}"
        )
    owners = assignments.drop_duplicates([C.USER_ID, C.VARIANT]).set_index([C.USER_ID, C.VARIANT]).index
    orphan = shape.index.droplevel(C.ARM).unique().difference(owners)
    if len(orphan):
        problems.append(
            f"{len(orphan)} (user, variant) have lists but no assignment, e.g. {orphan[:_EXAMPLES].tolist()}"
        )
    full = (
        (shape["n"] == list_length)
        & (shape["nr"] == list_length)
        & (shape["rmin"] == 1)
        & (shape["rmax"] == list_length)
    )
    short = shape[~full]
    if len(short):
        problems.append(
            f"{len(short)} lists are not exactly ranks 1..{list_length}, e.g. "
            f"{short.head(_EXAMPLES).reset_index()[[*list_key, 'n']].to_dict('records')}"
        )
    return problems


def _served_rows(version: int, lists_version: int) -> str:
    """SQL of the rows the views would show for ``version`` (its assignments joined with its lists)."""
    a = f"assignments_{serving.version_suffix(version)}"
    lst = f"lists_{serving.version_suffix(lists_version)}"
    return (
        f"SELECT a.user_id, a.daypart, l.rank, l.item_id FROM {a} a JOIN {lst} l "
        "ON l.user_id = a.user_id AND l.variant = a.variant AND l.arm = a.arm"
    )


def changed_share(
    conn: Connection,
    new_version: int,
    previous_version: int | None,
    new_lists: int | None = None,
    previous_lists: int | None = None,
) -> float | None:
    """Share of the new version's users whose list (any daypart) differs from the previous version's.

    changed = |{u : exists (u, daypart, rank, item) in new EXCEPT old}| / |users in new|, over the rows
    the views show (assignments joined with the lists table each version reads: ``new_lists`` /
    ``previous_lists``, default the version itself); a user absent from the previous version counts as
    changed. ``None`` when there is no previous version.
    """
    if previous_version is None or previous_version == serving.EMPTY_VERSION:
        return None
    new_rows = _served_rows(new_version, new_version if new_lists is None else new_lists)
    old_rows = _served_rows(previous_version, previous_version if previous_lists is None else previous_lists)
    changed = conn.exec_driver_sql(
        f"SELECT COUNT(*) FROM (SELECT DISTINCT user_id FROM ({new_rows} EXCEPT {old_rows}) d) u"
    ).scalar_one()
    total = conn.exec_driver_sql(
        f"SELECT COUNT(DISTINCT user_id) FROM assignments_{serving.version_suffix(new_version)}"
    ).scalar_one()
    return float(changed) / float(total) if total else None


def uncovered_assignments(conn: Connection, version: int, lists_version: int, list_length: int) -> int:
    """Assignments of ``version`` whose (user, variant, arm) has not exactly ``list_length`` rows in
    ``lists_v<lists_version>``: (user, daypart) pairs the app would get a short or no list for."""
    a = f"assignments_{serving.version_suffix(version)}"
    lst = f"lists_{serving.version_suffix(lists_version)}"
    return int(
        conn.execute(
            sa.text(
                f"SELECT COUNT(*) FROM {a} a WHERE (SELECT COUNT(*) FROM {lst} l WHERE l.user_id = a.user_id "
                "AND l.variant = a.variant AND l.arm = a.arm) <> :n"
            ),
            {"n": int(list_length)},
        ).scalar_one()
    )


def critical_alert_gate(critical: list[dict[str, Any]]) -> dict[str, Any]:
    """``no_critical_alert``: passes when no critical alert of the run date is open (unacknowledged)."""
    return gate(
        "no_critical_alert",
        not critical,
        "ok" if not critical else "; ".join(f"{a['check_name']}: {a['message']}" for a in critical),
        float(len(critical)),
    )


def db_gates(
    loaded: dict[str, int],
    counts: dict[str, int],
    share: float | None,
    cfg: PublishSettings,
    uncovered: int = 0,
) -> list[dict[str, Any]]:
    """The gates on what was loaded: ``row_counts`` (each table holds the rows sent),
    ``lists_cover_assignments`` (``uncovered`` assignments lack a full list in the lists table the
    version reads) and ``changed_share`` (the share of users whose list changed is inside the band)."""
    count_ok = loaded == counts
    return [
        gate("row_counts", count_ok, "ok" if count_ok else f"loaded {loaded}, expected {counts}"),
        gate(
            "lists_cover_assignments",
            uncovered == 0,
            "ok" if uncovered == 0 else f"{uncovered} (user, daypart) assignments have no full list",
            float(uncovered),
        ),
        gate(
            "changed_share",
            share is None or cfg.min_changed_share <= share <= cfg.max_changed_share,
            "no previous version"
            if share is None
            else f"{share:.4f} of users have a changed list "
            f"(band [{cfg.min_changed_share}, {cfg.max_changed_share}])",
            share,
        ),
    ]
