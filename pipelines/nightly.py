"""``run_night``: every nightly step of the step registry (docs/architecture.md), in the DAG's order, in
one process.

The simulator, the benchmarks and the tests use it; the Airflow DAG does not (it calls the same functions
as separate, mapped tasks). Per-arm and per-shard steps run one after the other here.

A registry step whose module or function does not exist is an error (:class:`StepMissingError`, raised
before the first step runs), never a silent skip: a renamed step function must not vanish from every
simulation. Steps are skipped only when the caller names them (``skip``; the simulator's
``simulator.skip_steps``). Any failure inside a step
propagates: a broken step must stop the night, exactly as it stops the DAG. The DAG's tasks are held equal
to :data:`STEPS` by tests/dags/test_dags.py.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from deepcuts.progress import get_logger, progress
from deepcuts.settings import Settings

log = get_logger(__name__)

Fanout = Literal["once", "per_arm", "per_shard"]


@dataclass(frozen=True)
class Step:
    """One row of the step registry."""

    name: str
    module: str
    function: str
    fanout: Fanout = "once"


#: The step registry of docs/architecture.md, in the order the DAG runs it.
STEPS: tuple[Step, ...] = (
    Step("ingest", "deepcuts.pipelines.ingest", "ingest"),
    Step("train", "deepcuts.pipelines.train", "train_arm", "per_arm"),
    Step("bandit_update", "deepcuts.pipelines.bandit_update", "bandit_update"),
    Step("candidates", "deepcuts.pipelines.candidates", "candidates_shard", "per_shard"),
    Step("score", "deepcuts.pipelines.score", "score_shard", "per_shard"),
    Step("assign", "deepcuts.pipelines.assign", "assign"),
    Step("evaluate", "deepcuts.pipelines.evaluate", "evaluate_night"),
    Step("ab_analysis", "deepcuts.pipelines.ab_analysis", "ab_analysis"),
    Step("ope", "deepcuts.pipelines.ope", "ope"),
    Step("monitor", "deepcuts.pipelines.monitor", "monitor"),
    Step("publish", "deepcuts.pipelines.publish", "publish"),
    Step("report", "deepcuts.pipelines.report", "report"),
)
STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)

#: Consecutive registry steps the DAG runs side by side (the same upstream steps, none upstream of
#: another): after ``ingest``, the arms' training and the bandit's update (it reads only the feedback and
#: yesterday's posterior; ``assign`` is the first step that needs it); after ``assign``, the three checks
#: of the night; after ``monitor``, publish and the report (the report reads only the lake, nothing
#: publish writes: a rejected publish must not hide it). ``run_night`` still runs them one after the
#: other; ``deepcuts bench`` runs their tasks together in its slots, as the DAG does. Held equal to the
#: DAG by tests/dags/test_dags.py.
SIDE_BY_SIDE: tuple[frozenset[str], ...] = (
    frozenset({"train", "bandit_update"}),
    frozenset({"evaluate", "ab_analysis", "ope"}),
    frozenset({"publish", "report"}),
)


def stages(steps: tuple[Step, ...] = STEPS) -> list[tuple[Step, ...]]:
    """``steps`` in DAG order, grouped into stages: the steps of one :data:`SIDE_BY_SIDE` set that follow
    each other form one stage, every other step is a stage of its own."""
    out: list[tuple[Step, ...]] = []
    for step in steps:
        group = next((g for g in SIDE_BY_SIDE if step.name in g), None)
        if out and group is not None and out[-1][-1].name in group:
            out[-1] = (*out[-1], step)
        else:
            out.append((step,))
    return out


class StepMissingError(RuntimeError):
    """A registry step names a module or function that does not exist in this code base."""


def resolve(step: Step) -> Callable[..., Any]:
    """The step's function; :class:`StepMissingError` when its module or function does not exist."""
    try:
        module = importlib.import_module(step.module)
    except ModuleNotFoundError as exc:
        if exc.name != step.module:
            raise  # the module exists but one of its own imports is missing: that error says more
        raise StepMissingError(
            f"step {step.name!r}: no module {step.module} (fix deepcuts.pipelines.nightly.STEPS)"
        ) from exc
    func = getattr(module, step.function, None)
    if func is None:
        raise StepMissingError(
            f"step {step.name!r}: {step.module} has no function {step.function!r} "
            "(fix deepcuts.pipelines.nightly.STEPS)"
        )
    return func


@contextmanager
def step_pool(workers: int) -> Iterator[Executor | None]:
    """Worker processes for the fan-out steps (per arm, per shard), like the mapped tasks of the DAG
    running in ``workers`` Celery slots; ``workers <= 1`` runs them in this process (yields None).

    ``forkserver`` processes: forking a process that holds BLAS threads can deadlock. Reuse one pool for
    many nights; each worker imports the step modules once.
    """
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("forkserver")
    ) as pool:
        yield pool


def resolve_workers(workers: int) -> int:
    """``0`` means one worker per CPU."""
    return workers if workers > 0 else (os.cpu_count() or 1)


def _fan_out(func: Callable[..., Any], calls: list[tuple[Any, ...]], pool: Executor | None) -> list[Any]:
    if pool is None:
        return [func(*args) for args in calls]
    futures = [pool.submit(func, *args) for args in calls]
    return [f.result() for f in futures]


def run_night(
    settings: Settings,
    run_date: date,
    n_shards: int | None = None,
    *,
    skip: Collection[str] = (),
    pool: Executor | None = None,
    arms: Collection[str] | None = None,
) -> dict[str, Any]:
    """Run every registry step for ``run_date`` in order; return the steps' results and timings.

    ``n_shards`` defaults to ``settings.arms.user_shards``; the arms are decided once, as the DAG's
    ``plan`` task does (:func:`deepcuts.pipelines.plan.plan_arms`: ``arms``, default
    ``settings.arms.enabled``, plus the A/B control arm), and every step gets settings whose ``arms.enabled``
    is that plan. With a ``pool`` (:func:`step_pool`) the per-arm and per-shard calls of a step run side by
    side in it, as the DAG's mapped tasks do; the steps themselves still run one after the other.
    ``skip`` names steps not to run (e.g. ``{"report"}`` in a long simulation); unknown names are an
    error, and so is a step of the registry that cannot be resolved (:func:`resolve`). Returns
    ``{"run_date", "results": {step: result}, "seconds": {step: s}, "skipped": {step: reason},
    "total_seconds"}`` where per-arm results are a dict by arm and per-shard results a list by shard.
    """
    unknown = sorted(set(skip) - set(STEP_NAMES))
    if unknown:
        raise ValueError(f"run_night: unknown steps to skip {unknown}; the steps are {list(STEP_NAMES)}")
    shards = int(n_shards or settings.arms.user_shards)
    if shards < 1:
        raise ValueError(f"run_night: n_shards must be >= 1, got {shards}")
    # imported here: building a Settings imports this module (STEP_NAMES), and the plan reads the lake
    from deepcuts.pipelines.plan import plan_arms, train_order, with_arms

    planned = plan_arms(settings, run_date, arms)
    settings = with_arms(settings, planned)
    arms = list(planned)
    # per-arm calls start in this order (the deep-cut arms' bases first, as the DAG maps train)
    arm_order = list(train_order(settings, arms))
    # Every step is resolved before the first one runs: a missing one fails the night at once, not hours in.
    funcs = {step.name: resolve(step) for step in STEPS if step.name not in skip}
    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    skipped: dict[str, str] = {}
    start = time.monotonic()
    log.info("night %s: %d steps, arms %s, %d user shards", run_date, len(STEPS), arms, shards)
    for step in progress(STEPS, desc=f"night {run_date}", logger=log):
        if step.name in skip:
            skipped[step.name] = "skipped on request"
            continue
        func = funcs[step.name]
        t0 = time.monotonic()
        if step.fanout == "per_arm":
            outputs = dict(
                zip(
                    arm_order, _fan_out(func, [(settings, run_date, a) for a in arm_order], pool), strict=True
                )
            )
            results[step.name] = {arm: outputs[arm] for arm in arms}
        elif step.fanout == "per_shard":
            results[step.name] = _fan_out(
                func, [(settings, run_date, k, shards) for k in range(shards)], pool
            )
        else:
            results[step.name] = func(settings, run_date)
        seconds[step.name] = round(time.monotonic() - t0, 3)
        log.info("night %s: %s done in %.1fs", run_date, step.name, seconds[step.name])
    total = round(time.monotonic() - start, 3)
    if skipped:
        log.info("night %s: steps skipped on request: %s", run_date, sorted(skipped))
    log.info("night %s: finished in %.1fs", run_date, total)
    return {
        "run_date": run_date.isoformat(),
        "results": results,
        "seconds": seconds,
        "skipped": skipped,
        "total_seconds": total,
    }
