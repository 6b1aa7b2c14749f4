"""Every registered arm (deepcuts/arms.py) on the ML-100k Recommenders split, and fit + recommend
time at ML-1M size.

Usage: ``.venv/bin/python benchmarks/bench_models.py [--ml1m-size]``

1. ML-100k (``../shared/data/ml-100k/splits/recommenders-item-stratified-seed42``): every arm built by
   ``deepcuts.models.recommenders.registry.build_recommender`` with the default settings, fit on train.tsv,
   top-10 for every test user (seen items removed), scored by ``deepcuts.metrics.score_lists``. Targets: best
   nDCG@10 >= 0.47, every relevance arm above popularity, long_tail / serendipity with a long-tail share
   several times popularity's and nDCG@10 >= half the best, all the arms fit + recommend in <= 15 s.
2. ``--ml1m-size``: a synthetic 6,040 users x 3,706 items x 1,000,209 ratings world (power-law item
   popularity) for the <= 60 s total target.

Prints a table and writes ``benchmarks/out/models_ml100k.json`` (and ``models_ml1m_size.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepcuts.arms import arm_names  # noqa: E402
from deepcuts.contracts import C  # noqa: E402
from deepcuts.metrics import ListContext, score_lists  # noqa: E402
from deepcuts.models.recommenders.registry import base_arm, build_recommender  # noqa: E402
from deepcuts.pipelines.loaders import load_dataset, load_split  # noqa: E402
from deepcuts.settings import load_settings  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "ml-100k"
SPLIT = SHARED / "splits" / "recommenders-item-stratified-seed42"
OUT = ROOT / "benchmarks" / "out"


def run_arms(train: pd.DataFrame, items: pd.DataFrame, users: np.ndarray, k: int) -> dict[str, dict]:
    settings = load_settings()
    results: dict[str, dict] = {}
    fitted = {}
    for arm in arm_names():
        # as in the nightly train step, long_tail / serendipity reuse the fitted base arm (the registry
        # lists the relevance arms first)
        base = fitted.get(base_arm(arm, settings) or "")
        model = build_recommender(arm, settings, seed=42, base=base)
        c0, t0 = time.process_time(), time.perf_counter()
        model.fit(train, items)
        t1 = time.perf_counter()
        recs = model.recommend(users, k)
        c2, t2 = time.process_time(), time.perf_counter()
        fitted[arm] = model
        # CPU seconds of this process (all its threads): a load-independent figure on a shared machine
        results[arm] = {
            "recs": recs,
            "fit_seconds": t1 - t0,
            "recommend_seconds": t2 - t1,
            "cpu_seconds": c2 - c0,
        }
        print(f"{arm:12s} fit {t1 - t0:6.2f}s  recommend {t2 - t1:5.2f}s  cpu {c2 - c0:6.2f}s", flush=True)
    return results


def ml100k() -> None:
    if not SPLIT.exists():
        print(f"{SPLIT} not present; skipping ML-100k")
        return
    train, test = load_split(SPLIT / "train.tsv", SPLIT / "test.tsv")
    items = load_dataset("ml-100k", SHARED).items
    users = np.intersect1d(test[C.USER_ID].unique(), train[C.USER_ID].unique())
    runs = run_arms(train, items, users, 10)
    ctx = ListContext.build(k=10, train=train, items=items, head_share=0.8, truth=test)
    table = {}
    for arm, run in runs.items():
        metrics = score_lists(run["recs"], ctx, users)
        metrics.update({k: v for k, v in run.items() if k != "recs"})
        table[arm] = metrics
    frame = pd.DataFrame(table).T
    cols = ["ndcg@10", "precision@10", "recall@10", "map", "long_tail_share", "novelty", "catalog_coverage"]
    cols += ["mean_hit_rating", "fit_seconds", "recommend_seconds"]
    print(frame[[c for c in cols if c in frame.columns]].astype(float).round(4).to_string())
    total = float(frame["fit_seconds"].sum() + frame["recommend_seconds"].sum())
    print(f"CPU seconds: {float(frame['cpu_seconds'].sum()):.2f}; load average {os.getloadavg()[0]:.1f}")
    best = float(frame["ndcg@10"].max())
    print(f"total fit + recommend: {total:.2f}s (target <= 15 s); best nDCG@10 {best:.4f} (target >= 0.47)")
    _write("models_ml100k.json", {"arms": table, "total_seconds": total})


def synthetic_ml1m(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """6,040 x 3,706 with 1,000,209 distinct ratings; item popularity ~ Zipf, user activity ~ lognormal."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n_ratings = 6040, 3706, 1_000_209
    item_p = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item_p /= item_p.sum()
    activity = rng.lognormal(0, 1, n_users)
    per_user = np.maximum(20, np.round(activity / activity.sum() * n_ratings)).astype(int)
    per_user = np.minimum(per_user, n_items // 2)
    users, its = [], []
    for u, m in enumerate(per_user):
        users.append(np.full(m, u + 1))
        its.append(rng.choice(n_items, size=m, replace=False, p=item_p) + 1)
    interactions = pd.DataFrame(
        {
            C.USER_ID: np.concatenate(users).astype(np.int64),
            C.ITEM_ID: np.concatenate(its).astype(np.int64),
        }
    )
    interactions[C.RATING] = rng.integers(1, 6, len(interactions)).astype(np.float32)
    interactions[C.TS] = pd.Timestamp("2026-01-01", tz="UTC")
    genres = np.array(["Action", "Anime", "Comedy", "Drama", "Horror", "Western", "Documentary"])
    items = pd.DataFrame(
        {
            C.ITEM_ID: np.arange(1, n_items + 1, dtype=np.int64),
            C.GENRES: [list(genres[rng.random(genres.size) < 0.25]) for _ in range(n_items)],
        }
    )
    return interactions, items


def ml1m_size() -> None:
    interactions, items = synthetic_ml1m()
    print(f"synthetic ML-1M size: {interactions[C.USER_ID].nunique()} users, {len(items)} items, "
          f"{len(interactions)} ratings")  # fmt: skip
    users = np.unique(interactions[C.USER_ID])
    runs = run_arms(interactions, items, users, 100)
    timing = {a: {k: v for k, v in r.items() if k != "recs"} for a, r in runs.items()}
    total = sum(r["fit_seconds"] + r["recommend_seconds"] for r in timing.values())
    cpu = sum(r["cpu_seconds"] for r in timing.values())
    load = os.getloadavg()[0]
    print(f"total fit + recommend (top-100 for every user): {total:.2f}s wall, {cpu:.2f}s CPU "
          f"(target <= 60 s; load average {load:.1f} on {os.cpu_count()} cores)")  # fmt: skip
    _write(
        "models_ml1m_size.json", {"arms": timing, "total_seconds": total, "cpu_seconds": cpu, "load": load}
    )


def _write(name: str, payload: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        **payload,
    }
    (OUT / name).write_text(json.dumps(payload, indent=2, default=float))
    print(f"wrote {OUT / name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ml1m-size", action="store_true", help="also time the arms at ML-1M size")
    args = parser.parse_args()
    ml100k()
    if args.ml1m_size:
        ml1m_size()


if __name__ == "__main__":
    main()
