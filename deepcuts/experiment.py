"""The A/B split and the experiment registry's rules.

The split: a deterministic bucket per user from a salted hash; a user is in treatment iff the bucket lies
below the treatment share, so raising the share (a ramp) only moves control users into treatment and
lowering it only moves treatment users back.

The registry: every operator decision (``deepcuts experiment start|ramp|stop|ship``) is an :class:`Entry`
that puts an :class:`ExperimentState` in force from a run date on; :func:`state_at` folds the entries
for one run date; :func:`next_entry` checks a command against the state. Storage (serving DB and the
lake copy the nightly steps read) is in ``pipelines.experiment_registry``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from deepcuts.contracts import Variant
from deepcuts.settings import ABSettings

_BUCKETS = 10_000
#: The verdict of ``pipelines.ab_analysis`` that lets ``ship treatment`` through without ``--force``.
SHIP_VERDICT: Final = "treatment wins"


def bucket_of(user_ids: npt.ArrayLike, experiment: str, salt: str) -> npt.NDArray[np.int64]:
    """Stable bucket in [0, 10000) per user: sha256(experiment:salt:user_id) mod 10000.

    A cryptographic hash makes buckets independent of id order and of other experiments' salts;
    it is computed once per user per night, so its cost is irrelevant next to training.
    """
    prefix = f"{experiment}:{salt}:".encode()
    ids = np.asarray(user_ids, dtype=np.int64)
    out = np.empty(ids.shape[0], dtype=np.int64)
    for i, uid in enumerate(ids.tolist()):
        digest = hashlib.sha256(prefix + str(uid).encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") % _BUCKETS
    return out


def variant_of(
    user_ids: npt.ArrayLike, experiment: str, salt: str, treatment_share: float
) -> npt.NDArray[np.str_]:
    """``"treatment"`` for users whose bucket falls below ``treatment_share``, else ``"control"``."""
    if not 0.0 < treatment_share < 1.0:
        raise ValueError(f"treatment_share must be in (0, 1), got {treatment_share}")
    buckets = bucket_of(user_ids, experiment, salt)
    return np.where(
        buckets < round(treatment_share * _BUCKETS), Variant.TREATMENT.value, Variant.CONTROL.value
    )


# ----------------------------------------------------------------------------- the experiment registry
class ExperimentError(ValueError):
    """An operator command that the experiment's current state does not allow (the message says why)."""


class Status(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # ended without a winner: every user gets control
    SHIPPED = "shipped"  # ended with a winner: every user gets the shipped variant


class Action(StrEnum):
    START = "start"
    RAMP = "ramp"
    STOP = "stop"
    SHIP = "ship"


@dataclass(frozen=True)
class ExperimentState:
    """The split in force for a run date: which experiment, its salt, treatment share and control arm,
    and whether it still runs. An ended experiment serves one variant to everyone."""

    experiment: str
    salt: str
    treatment_share: float
    baseline_arm: str
    status: Status = Status.RUNNING
    #: The variant every user gets once the experiment ended (control after ``stop``).
    shipped_variant: str | None = None

    @classmethod
    def from_settings(cls, ab: ABSettings) -> ExperimentState:
        """The first experiment, before the registry has any entry: the ``ab.*`` settings."""
        return cls(ab.experiment, ab.salt, ab.treatment_share, ab.baseline_arm)

    @property
    def running(self) -> bool:
        return self.status is Status.RUNNING

    @property
    def split_text(self) -> str:
        """``"treatment share 0.2"`` while running, ``"everyone gets treatment"`` once ended."""
        if self.running:
            return f"treatment share {self.treatment_share:g}"
        return f"everyone gets {self.shipped_variant}"

    def variants(self, user_ids: npt.ArrayLike) -> npt.NDArray[np.str_]:
        """Each user's variant: the salted split while running, the shipped variant once ended."""
        if self.running:
            return variant_of(user_ids, self.experiment, self.salt, self.treatment_share)
        n = np.asarray(user_ids).shape[0]
        return np.full(n, self.shipped_variant or Variant.CONTROL.value)

    def ab_settings(self, ab: ABSettings) -> ABSettings:
        """``ab`` with this experiment's name, salt, share and control arm (the statistics' settings stay)."""
        return ab.model_copy(
            update={
                "experiment": self.experiment,
                "salt": self.salt,
                "treatment_share": self.treatment_share,
                "baseline_arm": self.baseline_arm,
            }
        )


@dataclass(frozen=True)
class Entry:
    """One operator decision: the state it puts in force from ``effective_from`` (a run date) on."""

    seq: int
    action: Action
    state: ExperimentState
    effective_from: date
    created_at: str
    created_by: str
    #: The A/B verdict of the latest analysed night when the decision was taken (``ship``, ``stop``).
    verdict: str | None = None
    forced: bool = False
    reason: str = ""

    def as_record(self) -> dict[str, Any]:
        """A flat JSON-safe row (the DB table's columns, the lake copy's objects)."""
        s = self.state
        return {
            "seq": self.seq,
            "action": self.action.value,
            "experiment": s.experiment,
            "salt": s.salt,
            "treatment_share": s.treatment_share,
            "baseline_arm": s.baseline_arm,
            "status": s.status.value,
            "shipped_variant": s.shipped_variant,
            "effective_from": self.effective_from.isoformat(),
            "created_at": self.created_at,
            "created_by": self.created_by,
            "verdict": self.verdict,
            "forced": self.forced,
            "reason": self.reason,
        }

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Entry:
        state = ExperimentState(
            experiment=str(row["experiment"]),
            salt=str(row["salt"]),
            treatment_share=float(row["treatment_share"]),
            baseline_arm=str(row["baseline_arm"]),
            status=Status(row["status"]),
            shipped_variant=row.get("shipped_variant"),
        )
        effective = row["effective_from"]
        return cls(
            seq=int(row["seq"]),
            action=Action(row["action"]),
            state=state,
            effective_from=effective if isinstance(effective, date) else date.fromisoformat(str(effective)),
            created_at=str(row["created_at"]),
            created_by=str(row["created_by"]),
            verdict=row.get("verdict"),
            forced=bool(row.get("forced", False)),
            reason=str(row.get("reason") or ""),
        )


def state_at(entries: Sequence[Entry], run_date: date, default: ExperimentState) -> ExperimentState:
    """The state in force for ``run_date``: the last entry effective on or before it, else ``default``.

    Entries are in ``seq`` order and their ``effective_from`` never decreases (:func:`next_entry`), so
    the last one that applies is the latest decision for that date.
    """
    state = default
    for entry in entries:
        if entry.effective_from <= run_date:
            state = entry.state
    return state


def latest_state(entries: Sequence[Entry], default: ExperimentState) -> ExperimentState:
    """The state after every decision taken so far (some may take effect only from a later run date)."""
    return entries[-1].state if entries else default


@dataclass(frozen=True)
class Command:
    """An operator command, before it is checked against the registry."""

    action: Action
    effective_from: date
    created_at: str
    created_by: str
    experiment: str | None = None  # start
    salt: str | None = None  # start
    treatment_share: float | None = None  # start, ramp
    baseline_arm: str | None = None  # start
    variant: str | None = None  # ship
    verdict: str | None = None  # the latest verdict, for ship's guardrail and the history
    force: bool = False
    reason: str = ""


def next_entry(entries: Sequence[Entry], default: ExperimentState, cmd: Command) -> Entry:
    """The registry entry ``cmd`` appends, or :class:`ExperimentError` saying why it is not allowed.

    Rules: one experiment at a time (``start`` only after ``stop``/``ship``, with a name never used);
    ``ramp`` changes the share of a running experiment only; ``ship treatment`` needs the verdict
    "treatment wins" unless forced with a reason; no decision may take effect before an earlier one.
    """
    current = latest_state(entries, default)
    if entries and cmd.effective_from < entries[-1].effective_from:
        raise ExperimentError(
            f"{cmd.action.value} from {cmd.effective_from} would take effect before the registry's last "
            f"entry ({entries[-1].action.value} from {entries[-1].effective_from}); decisions are never "
            "retroactive"
        )
    if cmd.force and not cmd.reason.strip():
        raise ExperimentError("--force needs --reason: the reason is logged with the decision")
    if cmd.action is Action.START:
        state = _start(entries, default, current, cmd)
    elif not current.running:
        raise ExperimentError(
            f"experiment {current.experiment!r} is already {current.status.value}; "
            f"start a new one with `deepcuts experiment start NAME`"
        )
    elif cmd.action is Action.RAMP:
        share = _share(cmd.treatment_share)
        state = replace(current, treatment_share=share)
    elif cmd.action is Action.STOP:
        state = replace(current, status=Status.STOPPED, shipped_variant=Variant.CONTROL.value)
    else:
        state = replace(current, status=Status.SHIPPED, shipped_variant=_ship_variant(cmd))
    return Entry(
        seq=(entries[-1].seq if entries else 0) + 1,
        action=cmd.action,
        state=state,
        effective_from=cmd.effective_from,
        created_at=cmd.created_at,
        created_by=cmd.created_by,
        verdict=cmd.verdict,
        forced=cmd.force,
        reason=cmd.reason.strip(),
    )


def _start(
    entries: Sequence[Entry], default: ExperimentState, current: ExperimentState, cmd: Command
) -> ExperimentState:
    if current.running:
        raise ExperimentError(
            f"experiment {current.experiment!r} is running; ship or stop it before starting another "
            "(`deepcuts experiment ship treatment|control` or `deepcuts experiment stop`)"
        )
    used = {default.experiment} | {e.state.experiment for e in entries}
    if not cmd.experiment or cmd.experiment in used:
        raise ExperimentError(
            f"experiment name {cmd.experiment!r} is empty or already used ({sorted(used)}); a new "
            "experiment needs a new name so that its totals start clean"
        )
    if not cmd.salt or not cmd.baseline_arm:
        raise ExperimentError("start needs a salt and a baseline arm")
    return ExperimentState(cmd.experiment, cmd.salt, _share(cmd.treatment_share), cmd.baseline_arm)


def _share(share: float | None) -> float:
    if share is None or not 0.0 < share < 1.0:
        raise ExperimentError(
            f"treatment share must be strictly between 0 and 1, got {share}; to give everyone one variant "
            "use `ship` (or `stop` for control)"
        )
    return float(share)


def _ship_variant(cmd: Command) -> str:
    if cmd.variant not in (Variant.TREATMENT.value, Variant.CONTROL.value):
        raise ExperimentError(f"ship needs 'treatment' or 'control', got {cmd.variant!r}")
    if cmd.variant == Variant.TREATMENT.value and cmd.verdict != SHIP_VERDICT and not cmd.force:
        raise ExperimentError(
            f"the latest verdict is {cmd.verdict or 'not available yet'!r}, not {SHIP_VERDICT!r}: refusing "
            'to ship treatment; to ship anyway pass --force --reason "..." (logged in the registry)'
        )
    return cmd.variant
