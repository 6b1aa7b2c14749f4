"""Serving benchmark on the local PostgreSQL: publish time and reads/second of the app query.

1. Builds one night (``--users`` users x 4 dayparts of assignments, every bandit arm's list of
   ``--list-length`` items per treatment user, the baseline list per control user) in a temporary lake and
   publishes it with the real ``deepcuts.pipelines.publish.publish`` (gates, COPY, indexes, view switch) into
   a fresh database, twice (the second night measures a publish next to a live version).
2. Runs ``--threads`` client threads, each with its own connection, executing ``sql/queries/user_list.sql``
   for random (user, daypart) pairs for ``--seconds`` seconds: reads/second and latency percentiles.
3. Repeats the read loop while a third night is published, counting errors and partial lists.

Prints a JSON summary and saves it to ``benchmarks/out/bench_serving.json``. Needs PostgreSQL at
``DEEPCUTS_TEST_PG_HOST:PORT`` (default 127.0.0.1:5432, user postgres) like the tests.

    .venv/bin/python benchmarks/bench_serving.py --users 20000 --threads 4 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepcuts.arms import bandit_arm_names  # noqa: E402
from deepcuts.contracts import C, Dataset, Daypart  # noqa: E402
from deepcuts.pipelines import serving  # noqa: E402
from deepcuts.pipelines.publish import publish  # noqa: E402
from deepcuts.pipelines.storage import Lake  # noqa: E402
from deepcuts.settings import load_settings  # noqa: E402

DAYPARTS = [d.value for d in Daypart]
ARMS = list(bandit_arm_names())
SEGMENTS = ["new", "casual", "power"]
BASELINE = "popularity"


def night(run_date: date, users: int, length: int, seed: int) -> dict[str, pd.DataFrame]:
    """A valid night built with numpy, shaped like the pipeline's: every bandit arm's list for each
    treatment user (odd ids), the baseline list for each control user; items 1000+ (never seen), ranks
    1..length; assignments pick a random arm per (user, daypart) for treatment users."""
    rng = np.random.default_rng(seed)
    n_assign = users * len(DAYPARTS)
    user = np.repeat(np.arange(1, users + 1, dtype=np.int64), len(DAYPARTS))
    daypart = np.tile(np.array(DAYPARTS, dtype=object), users)
    variant = np.where(user % 2 == 0, "control", "treatment").astype(object)
    arm = np.where(
        variant == "treatment", np.array(ARMS, dtype=object)[rng.integers(0, len(ARMS), n_assign)], BASELINE
    )
    # one list per (user, variant, arm): all arms for treatment users, the baseline for control users
    ids = np.arange(1, users + 1, dtype=np.int64)
    treated = ids[ids % 2 == 1]
    control = ids[ids % 2 == 0]
    list_user = np.concatenate([np.repeat(treated, len(ARMS)), control])
    list_arm = np.concatenate(
        [np.tile(np.array(ARMS, dtype=object), treated.size), [BASELINE] * control.size]
    )
    list_variant = np.concatenate([["treatment"] * (treated.size * len(ARMS)), ["control"] * control.size])
    n_lists = list_user.size
    # distinct items per list: a random offset plus a stride keeps them unique inside the list
    start = rng.integers(0, 50_000, n_lists)
    items = 1000 + (start[:, None] + np.arange(length)[None, :] * 97) % 50_000
    lists = pd.DataFrame(
        {
            C.USER_ID: np.repeat(list_user, length),
            C.VARIANT: np.repeat(list_variant.astype(object), length),
            C.ARM: np.repeat(list_arm, length),
            C.RANK: np.tile(np.arange(1, length + 1, dtype=np.int32), n_lists),
            C.ITEM_ID: items.ravel().astype(np.int64),
            C.SCORE: rng.random(n_lists * length).astype(np.float32),
            C.NOVELTY: rng.random(n_lists * length).astype(np.float32),
            C.IS_LONG_TAIL: rng.random(n_lists * length) < 0.35,
            C.REASON: "because you rated similar titles highly",
            C.RUN_DATE: run_date,
        }
    )
    assignments = pd.DataFrame(
        {
            C.USER_ID: user,
            C.DAYPART: daypart,
            C.SEGMENT: np.array(SEGMENTS, dtype=object)[user % 3],
            C.ARM: arm,
            C.PROPENSITY: np.where(variant == "treatment", 1 / len(ARMS), 1.0),
            C.VARIANT: variant,
            C.EXPERIMENT: "bench",
            C.RUN_DATE: run_date,
        }
    )
    policy = pd.DataFrame(
        [
            {
                C.SEGMENT: s,
                C.DAYPART: d,
                C.ARM: a,
                C.ALPHA: 2.0,
                C.BETA: 5.0,
                C.MEAN: 2 / 7,
                C.THOMPSON_PROBABILITY: 1 / 6,
                C.SELECTION_PROBABILITY: 1 / 6,
                C.RUN_DATE: run_date,
            }
            for s in SEGMENTS
            for d in DAYPARTS
            for a in ARMS
        ]
    )
    interactions = pd.DataFrame(
        {
            C.USER_ID: np.arange(1, users + 1, dtype=np.int64),
            C.ITEM_ID: np.full(users, 1, dtype=np.int64),
            C.RATING: np.full(users, 4.0, dtype=np.float32),
            C.TS: datetime(run_date.year, run_date.month, run_date.day, tzinfo=UTC),
        }
    )
    return {"lists": lists, "assignments": assignments, "policy": policy, "interactions": interactions}


def write(lake: Lake, day: date, frames: dict[str, pd.DataFrame]) -> None:
    lake.write_table(Dataset.ARM_LISTS, day, frames["lists"])
    lake.write_table(Dataset.ASSIGNMENTS, day, frames["assignments"])
    lake.write_table(Dataset.BANDIT_POLICY, day, frames["policy"])
    lake.write_table(Dataset.INTERACTIONS, day, frames["interactions"])
    lake.mark_all_complete()  # as assign and ingest do: publish checks it


def read_loop(
    url: str,
    users: int,
    length: int,
    seconds: float,
    threads: int,
    seed: int,
    until: threading.Thread | None = None,
) -> dict[str, Any]:
    """Read for ``seconds`` (or, with ``until``, until that thread has finished plus 2 s)."""
    stop = threading.Event()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    partial = [0]
    labels: set[str] = set()

    def worker(k: int) -> None:
        rng = np.random.default_rng(seed + k)
        engine = serving.make_engine(url, pool_size=1)
        query = sa.text(serving.read_query("user_list.sql"))
        local: list[float] = []
        try:
            with engine.connect() as conn:
                while not stop.is_set():
                    params = {
                        "user_id": int(rng.integers(1, users + 1)),
                        "daypart": DAYPARTS[int(rng.integers(4))],
                    }
                    t0 = time.perf_counter()
                    try:
                        rows = conn.execute(query, params).all()
                        conn.rollback()  # end the read transaction, as a pooled app request would
                    except Exception as exc:
                        with lock:
                            errors.append(repr(exc))
                        conn.rollback()
                        continue
                    local.append(time.perf_counter() - t0)
                    if len(rows) != length or len({r.list_version for r in rows}) != 1:
                        with lock:
                            partial[0] += 1
                    with lock:
                        labels.add(rows[0].list_version if rows else "")
        finally:
            engine.dispose()
            with lock:
                latencies.extend(local)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    if until is None:
        time.sleep(seconds)
    else:
        until.join()
        time.sleep(2.0)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {
        "reads": len(latencies),
        "seconds": round(elapsed, 2),
        "reads_per_second": round(len(latencies) / elapsed, 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 3) if lat.size else None,
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
        "errors": len(errors),
        "partial_lists": partial[0],
        "versions_seen": sorted(labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--list-length", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    host = os.environ.get("DEEPCUTS_TEST_PG_HOST", "127.0.0.1")
    port = os.environ.get("DEEPCUTS_TEST_PG_PORT", "5432")
    user = os.environ.get("DEEPCUTS_TEST_PG_USER", "postgres")
    admin = sa.create_engine(
        f"postgresql+psycopg2://{user}@{host}:{port}/postgres", isolation_level="AUTOCOMMIT"
    )
    name = f"deepcuts_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg2://{user}@{host}:{port}/{name}"
    out: dict[str, Any] = {"users": args.users, "list_length": args.list_length, "threads": args.threads}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(home=tmp, serving_url=url, rerank={"list_length": args.list_length})
            lake = Lake(settings.home)
            days = [date(2026, 3, 1) + timedelta(days=i) for i in range(3)]
            for i, day in enumerate(days):
                write(lake, day, night(day, args.users, args.list_length, seed=i))
            timings = []
            for day in days[:2]:
                t0 = time.perf_counter()
                result = publish(settings, day)
                timings.append(round(time.perf_counter() - t0, 2))
            out["rows_per_version"] = result["rows"]
            out["publish_seconds"] = timings
            out["publish_stage_seconds"] = result["stage_seconds"]
            out["steady"] = read_loop(url, args.users, args.list_length, args.seconds, args.threads, seed=1)

            during: dict[str, Any] = {}

            def publish_third() -> None:
                time.sleep(1.0)
                t0 = time.perf_counter()
                publish(settings, days[2])
                during["publish_seconds"] = round(time.perf_counter() - t0, 2)

            publisher = threading.Thread(target=publish_third)
            publisher.start()
            # read for as long as the publish takes (and a bit), so the readers live through the switch
            during.update(
                read_loop(url, args.users, args.list_length, 0, args.threads, seed=2, until=publisher)
            )
            out["during_publish"] = during
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    text = json.dumps(out, indent=2)
    print(text)
    out_dir = REPO / "benchmarks" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench_serving.json").write_text(text)


if __name__ == "__main__":
    main()
