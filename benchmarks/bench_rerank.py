"""Benchmark of the deep-cut re-ranker.

1. Quality on the ML-100k split (``../shared/data/ml-100k/splits/recommenders-item-stratified-seed42``):
   fit the relevance arms, pick the best by nDCG@10, re-rank its top-100 candidates (with the nightly
   head and long-tail quotas) and compare nDCG@10, long-tail share, genres per list and mean hit rating
   with the un-re-ranked lists; sweep the long-tail band and the quality weight to draw the nDCG vs
   long-tail share and nDCG vs mean hit rating curves (``docs/img/rerank_tradeoff.png``, default marked).
2. Speed at MovieLens-1M size: 6,040 users x 100 candidates x the bandit arms (6) over 3,706 items and
   18 genres (synthetic candidates), re-ranking only, and the whole score step per arm.

Usage: ``.venv/bin/python benchmarks/bench_rerank.py [--arms svd,item_cf,graph] [--skip-quality]``.
Prints a table and writes ``benchmarks/out/bench_rerank.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepcuts.arms import bandit_arm_names
from deepcuts.contracts import C
from deepcuts.metrics import ListContext, score_lists
from deepcuts.models.reranking.rerank import RerankParams, rerank
from deepcuts.pipelines.evaluate import load_evaluation_data, long_tail_ids, make_holdout
from deepcuts.pipelines.score import ScoringContext, process_arm
from deepcuts.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ROOT.parent / "shared" / "data" / "ml-100k" / "splits" / "recommenders-item-stratified-seed42"
OUT = ROOT / "benchmarks" / "out"
IMG = ROOT / "docs" / "img"
KEYS = (
    "ndcg@10",
    "long_tail_share",
    "genres_per_list",
    "mean_hit_rating",
    "ild",
    "novelty",
    "catalog_coverage",
)


def _metrics(lists: pd.DataFrame, ctx: ListContext, users: np.ndarray) -> dict[str, float]:
    m = score_lists(lists[[C.USER_ID, C.ITEM_ID, C.RANK]], ctx, users=users)
    return {key: round(float(m[key]), 4) for key in KEYS if m.get(key) is not None}


def _mean_list_quality(frame: pd.DataFrame) -> float:
    return round(float(frame.groupby(C.USER_ID)[C.QUALITY].mean().mean()), 4)


def quality_benchmark(arms: list[str], pool: int) -> dict[str, Any]:
    from deepcuts.models.recommenders.base import InteractionMatrix
    from deepcuts.models.recommenders.registry import build_recommender
    from deepcuts.pipelines.candidates import candidate_quotas

    settings = load_settings()
    train, test, items, _ = load_evaluation_data(
        "ml-100k", settings, train_file=SPLIT / "train.tsv", test_file=SPLIT / "test.tsv"
    )
    holdout = make_holdout(train, test)
    tail = long_tail_ids(train, items, settings)
    ctx_eval = ListContext.build(
        k=10, train=holdout.train, items=items, head_share=settings.arms.long_tail.head_share,
        truth=holdout.test, long_tail_item_ids=tail,
    )  # fmt: skip
    users = holdout.users
    quotas = candidate_quotas(InteractionMatrix.from_frames(holdout.train, items), settings)
    recs: dict[str, pd.DataFrame] = {}
    base: dict[str, dict[str, float]] = {}
    factors = None
    for arm in arms:
        started = time.perf_counter()
        model = build_recommender(arm, settings, seed=42).fit(holdout.train, items)
        # the nightly candidates: top candidates_n with the head and long-tail quotas
        recs[arm] = model.recommend(users, pool, quotas=quotas)
        base[arm] = _metrics(recs[arm][recs[arm][C.RANK] <= 10], ctx_eval, users)
        print(f"{arm:10s} nDCG@10 {base[arm]['ndcg@10']:.4f}  ({time.perf_counter() - started:.1f}s)")
        if arm == "svd":
            factors = (model.data.item_ids, model.item_factors_)
    best = max(base, key=lambda a: base[a]["ndcg@10"])
    emb = factors if best == "svd" else None
    ctx = ScoringContext.build(settings, holdout.train, items, emb)
    candidates = recs[best]

    def run(params: RerankParams, label: str) -> dict[str, Any]:
        local = replace(ctx, params=params)
        started = time.perf_counter()
        out = process_arm(local, candidates, best, datetime.now(UTC).date())
        row = _metrics(out.reranked, ctx_eval, users)
        row["mean_list_quality"] = _mean_list_quality(out.reranked)
        row["seconds"] = round(time.perf_counter() - started, 3)
        row["label"] = label
        row["params"] = {
            "long_tail": [params.long_tail_min, params.long_tail_max],
            "list_quality_floor": params.quality_floor if np.isfinite(params.quality_floor) else None,
            "tail_item_floor": params.tail_item_floor if np.isfinite(params.tail_item_floor) else None,
            "quality_weight": params.quality_weight,
            "mmr_lambda": params.mmr_lambda,
            "calibration_lambda": params.calibration_lambda,
            "niche_boost": params.niche_boost,
        }
        return row

    default = ctx.params
    base_row = dict(base[best])
    base_top = candidates[candidates[C.RANK] <= 10].merge(
        pd.DataFrame({C.ITEM_ID: ctx.history.item_ids, C.QUALITY: ctx.stats.quality}), on=C.ITEM_ID
    )
    base_row["mean_list_quality"] = _mean_list_quality(base_top)
    floor_4 = settings.quality_floor_scaled(settings.source.rating_min, settings.source.rating_max)
    results = {
        "default": run(default, "defaults"),
        "before_issue_13": run(
            replace(default, quality_floor=floor_4, quality_weight=0.0, tail_item_floor=-np.inf,
                    mmr_lambda=0.9, calibration_lambda=0.1, niche_boost=0.2),
            "pre-issue-13 rule (list-mean floor 4.0, mmr 0.9 / cal 0.1, niche 0.2) on these candidates",
        ),
    }  # fmt: skip
    # curve 1: the long-tail band at the default quality rule
    bands = [(0.0, 1.0), (0.1, 0.2), (0.2, 0.3), (0.3, 0.35), (0.35, 0.40), (0.5, 0.6)]
    band_curve = [
        run(replace(default, long_tail_min=lo, long_tail_max=hi), f"band {lo:.2f}-{hi:.2f}")
        for lo, hi in bands
    ]
    # curve 2: the quality weight inside the band (the quality rule's price), per 5-point rating step
    span = (settings.source.rating_max - settings.source.rating_min) / 4.0
    quality_curve = [
        run(replace(default, quality_weight=w / span), f"quality weight {w:.2f}")
        for w in (0.0, 0.1, 0.2, 0.3, 0.4, 0.6)
    ]
    quality_curve.append(
        run(replace(default, quality_weight=0.0, quality_floor=floor_4), "list-mean floor 4.0, no weight")
    )
    # the near-tie terms: how much the diversity / niche terms cost at the default rule
    extras = [
        run(replace(default, mmr_lambda=1.0, calibration_lambda=0.0, niche_boost=0.0), "no diversity terms"),
        run(replace(default, mmr_lambda=0.9, calibration_lambda=0.1), "mmr 0.9 / calibration 0.1"),
        run(replace(default, niche_boost=0.2), "niche boost 0.2"),
        run(replace(default, tail_item_floor=-np.inf), "no per-item floor on long-tail items"),
    ]
    return {
        "best_arm": best,
        "pool": pool,
        "arms": base,
        "baseline": base_row,
        "reranked": results,
        "band_curve": band_curve,
        "quality_curve": quality_curve,
        "extras": extras,
    }


def plot_tradeoff(quality: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = quality["baseline"]
    default = quality["reranked"]["default"]
    before = quality["reranked"]["before_issue_13"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, key, curve, xlabel in (
        (left, "long_tail_share", quality["band_curve"], "long-tail share of the top 10"),
        (right, "mean_hit_rating", quality["quality_curve"], "mean rating of hits"),
    ):
        rows = sorted((r for r in curve if "list-mean" not in r["label"]), key=lambda r: r[key])
        ax.plot([r[key] for r in rows], [r["ndcg@10"] for r in rows], marker="o", label="re-ranked")
        for r in rows:
            ax.annotate(r["label"].split(" ")[-1], (r[key], r["ndcg@10"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))  # fmt: skip
        ax.scatter([default[key]], [default["ndcg@10"]], marker="*", s=220, color="red", zorder=6,
                   label="chosen default")  # fmt: skip
        ax.scatter([before[key]], [before["ndcg@10"]], marker="s", color="grey", zorder=5,
                   label="pre-issue-13 rule, same candidates")  # fmt: skip
        ax.scatter([base[key]], [base["ndcg@10"]], color="black", zorder=5,
                   label=f"{quality['best_arm']} un-re-ranked")  # fmt: skip
        ax.axhline(0.8 * base["ndcg@10"], color="grey", linestyle="--", label="0.8 x un-re-ranked")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("nDCG@10")
    left.axvspan(0.35, 0.40, color="green", alpha=0.12, label="target band")
    left.set_title("long-tail band (labels: band max)", fontsize=10)
    right.axvline(4.0, color="green", alpha=0.5, label="target 4.0")
    right.set_title("quality weight inside the band (labels: weight)", fontsize=10)
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.suptitle(f"Deep-cut re-ranker on ML-100k ({quality['best_arm']} candidates with quotas)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def speed_benchmark(
    seed: int = 7, users: int = 6040, items: int = 3706, arms: int = len(bandit_arm_names())
) -> dict[str, Any]:
    """Re-rank ML-1M-sized synthetic candidates: power-law popularity, 1-3 genres per item."""
    rng = np.random.default_rng(seed)
    n_genres, k = 18, 100
    genres = np.zeros((items, n_genres), dtype=np.float32)
    for extra in range(3):
        chosen = rng.random(items) < (1.0 if extra == 0 else 0.35)
        genres[np.flatnonzero(chosen), rng.integers(0, n_genres, chosen.sum())] = 1.0
    popularity = rng.pareto(1.2, items) + 1
    tail = popularity < np.quantile(popularity, 0.7)
    quality = np.clip(rng.normal(3.6, 0.45, items), 1.0, 5.0)
    niche = genres[:, :3].max(axis=1) > 0
    profile = rng.dirichlet(np.ones(n_genres) * 0.5, users).astype(np.float32)
    appetite = rng.random(users).astype(np.float32) * 0.15
    p = popularity / popularity.sum()
    timings: list[float] = []
    cpu: list[float] = []  # CPU seconds of this process: comparable across machine loads
    # the default rule on a 1-5 scale: per-item floor 3.5 on long-tail items, quality weight 0.2
    settings = load_settings()
    params = RerankParams.from_settings(settings, 1.0, 5.0)
    load_before = round(os.getloadavg()[0], 2)
    for _ in range(arms):
        cand = np.argsort(-(np.log(p)[None, :] + rng.gumbel(size=(users, items))), axis=1)[:, :k]
        rel = np.sort(rng.random((users, k)).astype(np.float32), axis=1)[:, ::-1].copy()
        started, cpu_started = time.perf_counter(), time.process_time()
        out = rerank(cand, rel, genres, quality, tail, niche, profile, appetite, params)
        timings.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
        sel = np.take_along_axis(cand, out.positions, axis=1)
    return {
        "load_average_1min_before": load_before,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "users": users,
        "items": items,
        "candidates": k,
        "arms": arms,
        "seconds_per_arm": [round(t, 3) for t in timings],
        "seconds_total": round(sum(timings), 3),
        "cpu_seconds_total": round(sum(cpu), 3),
        "last_arm_long_tail_share": round(float(tail[sel].mean()), 4),
        "last_arm_mean_quality": round(float(quality[sel].mean()), 4),
        "last_arm_genres_per_list": round(float((genres[sel].max(axis=1) > 0).sum(axis=1).mean()), 3),
    }


def step_benchmark(seed: int = 11, users: int = 6040, items: int = 3706, ratings: int = 1_000_000) -> dict:
    """The whole ``score_shard`` (read, score, re-rank, write) on an ML-1M-sized synthetic lake, 1 shard."""
    import tempfile

    from deepcuts.contracts import Dataset
    from deepcuts.pipelines.score import score_shard
    from deepcuts.pipelines.storage import Lake

    rng = np.random.default_rng(seed)
    run_date = datetime(2026, 1, 31, tzinfo=UTC).date()
    names = [f"G{j:02d}" for j in range(17)] + ["Anime"]
    genre_lists = [sorted(set(rng.choice(names, rng.integers(1, 4)).tolist())) for _ in range(items)]
    catalog = pd.DataFrame(
        {C.ITEM_ID: np.arange(1, items + 1), C.TITLE: "t", C.GENRES: genre_lists, C.YEAR: 2000}
    )
    popularity = rng.pareto(1.2, items) + 1
    p = popularity / popularity.sum()
    pairs = np.unique(
        rng.integers(1, users + 1, ratings) * 10_000 + rng.choice(np.arange(1, items + 1), ratings, p=p)
    )
    inter = pd.DataFrame(
        {
            C.USER_ID: pairs // 10_000,
            C.ITEM_ID: pairs % 10_000,
            C.RATING: rng.integers(1, 6, pairs.size).astype(np.float32),
            C.TS: pd.Timestamp("2026-01-15", tz="UTC"),
        }
    )
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=home)
        lake = Lake(home)
        lake.write_table(Dataset.ITEMS, run_date, catalog)
        lake.write_table(Dataset.INTERACTIONS, run_date, inter)
        lake.mark_all_complete()  # as ingest does: score checks it
        all_users = np.arange(1, users + 1)
        for arm in bandit_arm_names():
            cand = np.argsort(-(np.log(p)[None, :] + rng.gumbel(size=(users, items))), axis=1)[:, :100] + 1
            frame = pd.DataFrame(
                {
                    C.USER_ID: np.repeat(all_users, 100),
                    C.ITEM_ID: cand.ravel(),
                    C.RANK: np.tile(np.arange(1, 101), users),
                    C.SCORE: np.tile(np.linspace(1, 0, 100), users),
                    C.ARM: arm,
                    C.RUN_DATE: run_date,
                }
            )
            lake.write_table(Dataset.CANDIDATES, run_date, frame, part=f"{arm}/shard-0000")
        lake.mark_complete(Dataset.CANDIDATES, run_date, "shard-0000", shards=1)
        started = time.perf_counter()
        out = score_shard(settings, run_date, 0, 1)
        seconds = time.perf_counter() - started
    return {
        "users": users,
        "items": items,
        "interactions": int(pairs.size),
        "arms": len(out["arms"]),
        "score_shard_seconds": round(seconds, 2),
        "rerank_seconds": {arm: v["rerank_seconds"] for arm, v in out["arms"].items()},
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", default="svd,item_cf,graph")
    parser.add_argument("--pool", type=int, default=100, help="candidates per user (arms.candidates_n)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--step", action="store_true", help="also time the whole score step (ML-1M size)")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
    }
    if not args.skip_quality:
        if not SPLIT.exists():
            raise SystemExit(f"{SPLIT} not found; the quality benchmark needs the ML-100k split")
        quality = quality_benchmark(args.arms.split(","), args.pool)
        report["quality"] = quality
        base = quality["baseline"]
        print(f"\nbest arm: {quality['best_arm']}")
        print(f"{'list':40s} " + " ".join(f"{k:>16s}" for k in (*KEYS, "mean_list_quality")))
        rows = [("un-re-ranked", base)] + [(r["label"], r) for r in quality["reranked"].values()]
        for curve in ("band_curve", "quality_curve", "extras"):
            rows += [(r["label"], r) for r in quality[curve]]
        for name, row in rows:
            print(
                f"{name:40s} "
                + " ".join(f"{row.get(k, float('nan')):16.4f}" for k in (*KEYS, "mean_list_quality"))
            )
        plot_tradeoff(quality, IMG / "rerank_tradeoff.png")
        print(f"\nplot: {IMG / 'rerank_tradeoff.png'}")
    if not args.skip_speed:
        speed = speed_benchmark()
        report["speed"] = speed
        print(f"\nML-1M size re-ranking: {speed}")
    if args.step:
        step = step_benchmark()
        report["step"] = step
        print(f"\nML-1M size score step: {step}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench_rerank.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    (OUT / "bench_rerank.json").write_text(json.dumps({**previous, **report}, indent=2))


if __name__ == "__main__":
    main()
