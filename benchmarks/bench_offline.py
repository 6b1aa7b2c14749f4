"""``deepcuts evaluate`` on the ML-100k Recommenders split, with peers side by side in the same run.

Usage::

    .venv/bin/python benchmarks/bench_offline.py [--recommenders-python PATH] [--no-doc]

1. deepcuts: ``pipelines.evaluate.evaluate_dataset`` (the code behind ``deepcuts evaluate``) on
   ``../shared/data/ml-100k/splits/recommenders-item-stratified-seed42`` (given split), every registered arm.
2. implicit's ALS (installed with deepcuts), two rows: the library defaults (100 factors, regularisation
   0.01, alpha 1, 15 iterations), and the best of a small grid chosen on a validation split carved out of
   train.tsv (never on test.tsv). Binary train matrix, top-10 unseen per test user, same metrics.
3. SAR (Microsoft Recommenders 1.2.1). Recommenders cannot be installed next to our stack: it requires
   ``pandas<3`` (we pin pandas 3.1) and the original ``lightfm`` (unbuildable by modern pip; we use
   lightfm-next). So it runs in its own interpreter in the same benchmark run (``--recommenders-python``,
   default ``$DEEPCUTS_RECOMMENDERS_PYTHON`` or ``/tmp/deepcuts-recommenders/bin/python``; create it with
   ``python3 -m venv /tmp/deepcuts-recommenders && /tmp/deepcuts-recommenders/bin/pip install
   recommenders "numpy<2"``: its SAR still uses ``np.NaN``) with the benchmark notebook's parameters
   (jaccard similarity, 30-day time decay). That process also scores SAR's lists and the best deepcuts
   arm's lists with Recommenders' own ``map``/``ndcg_at_k``/``precision_at_k``/``recall_at_k``: a
   cross-check of ``deepcuts.metrics`` against the reference code. Without that interpreter, SAR is
   compared through its published figures only.

Writes ``benchmarks/out/offline_ml100k.json`` and the "Offline evaluation" section of
docs/benchmarks.md (ratio table, machine, date).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepcuts.arms import deep_cut_arm_names, relevance_arm_names  # noqa: E402
from deepcuts.contracts import C  # noqa: E402
from deepcuts.metrics import ListContext, accuracy_summary, score_lists  # noqa: E402
from deepcuts.settings import load_settings  # noqa: E402
from pipelines.evaluate import (  # noqa: E402
    evaluate_dataset,
    long_tail_ids,
    make_holdout,
    registry_factories,
    stratified_split,
)
from pipelines.loaders import load_dataset, load_split  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "ml-100k"
SPLIT = SHARED / "splits" / "recommenders-item-stratified-seed42"
OUT = ROOT / "benchmarks" / "out"
DOC = ROOT / "docs" / "benchmarks.md"
K = 10
BEGIN, END = "<!-- offline-evaluation:begin -->", "<!-- offline-evaluation:end -->"

#: Published Microsoft Recommenders ML-100k figures (shared/README.md).
PUBLISHED = {
    "BiVAE": {"map": 0.1436, "ndcg@10": 0.4687, "precision@10": 0.4082, "recall@10": 0.2209},
    "BPR (Cornac)": {"map": 0.1340, "ndcg@10": 0.4450, "precision@10": 0.3887, "recall@10": 0.2166},
    "LightGCN": {"map": 0.1209, "ndcg@10": 0.4164, "precision@10": 0.3592, "recall@10": 0.1960},
    "SAR": {"map": 0.1140, "ndcg@10": 0.3938, "precision@10": 0.3406, "recall@10": 0.1854},
}

SAR_RUNNER = textwrap.dedent(
    """
    import json, sys, time
    import pandas as pd
    from recommenders.models.sar import SAR
    from recommenders.evaluation.python_evaluation import map, ndcg_at_k, precision_at_k, recall_at_k

    train_path, test_path, recs_dir, extra_path, k = sys.argv[1:6]
    k = int(k)
    names = ["userID", "itemID", "rating", "timestamp"]
    train = pd.read_csv(train_path, sep="\\t", names=names)
    test = pd.read_csv(test_path, sep="\\t", names=names)
    model = SAR(col_user="userID", col_item="itemID", col_rating="rating", col_timestamp="timestamp",
                similarity_type="jaccard", time_decay_coefficient=30, timedecay_formula=True)
    t0 = time.perf_counter(); model.fit(train); t1 = time.perf_counter()
    top = model.recommend_k_items(test, top_k=k, remove_seen=True)
    t2 = time.perf_counter()
    top.to_csv(recs_dir + "/sar.tsv", sep="\\t", index=False)

    def reference(pred):
        args = dict(col_user="userID", col_item="itemID", col_prediction="prediction", k=k)
        return {"map": map(test, pred, **args), "ndcg@10": ndcg_at_k(test, pred, **args),
                "precision@10": precision_at_k(test, pred, **args),
                "recall@10": recall_at_k(test, pred, **args)}

    extra = pd.read_csv(extra_path, sep="\\t")
    out = {"fit_seconds": t1 - t0, "recommend_seconds": t2 - t1, "reference_metrics": {"SAR": reference(top)}}
    for arm, frame in extra.groupby("arm"):
        out["reference_metrics"][arm] = reference(frame.drop(columns="arm"))
    import recommenders
    out["recommenders_version"] = recommenders.__version__
    print("RESULT " + json.dumps(out))
    """
)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _als_fit_recommend(
    train: pd.DataFrame, users: np.ndarray, factors: int, regularization: float, alpha: float
) -> tuple[pd.DataFrame, float, float]:
    """Fit implicit's ALS on the binary train matrix; top-K unseen items per user."""
    import implicit

    user_ids = np.unique(train[C.USER_ID].to_numpy(np.int64))
    item_ids = np.unique(train[C.ITEM_ID].to_numpy(np.int64))
    rows = np.searchsorted(user_ids, train[C.USER_ID].to_numpy(np.int64))
    cols = np.searchsorted(item_ids, train[C.ITEM_ID].to_numpy(np.int64))
    matrix = sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, cols)), shape=(user_ids.size, item_ids.size)
    )
    matrix.data[:] = 1.0
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=factors,
        regularization=regularization,
        alpha=alpha,
        iterations=15,
        random_state=42,
        num_threads=2,
    )
    t0 = time.perf_counter()
    model.fit(matrix, show_progress=False)
    t1 = time.perf_counter()
    users = users[np.isin(users, user_ids)]
    urows = np.searchsorted(user_ids, users)
    ids, _ = model.recommend(urows, matrix[urows], N=K, filter_already_liked_items=True)
    t2 = time.perf_counter()
    recs = pd.DataFrame(
        {
            C.USER_ID: np.repeat(users, ids.shape[1]),
            C.ITEM_ID: item_ids[np.clip(ids, 0, None)].ravel(),
            C.RANK: np.tile(np.arange(1, ids.shape[1] + 1), users.size),
            "_valid": (ids >= 0).ravel(),
        }
    )
    return recs[recs.pop("_valid")], t1 - t0, t2 - t1


#: implicit's defaults, and the small grid searched on a validation split carved out of train.
ALS_DEFAULTS = {"factors": 100, "regularization": 0.01, "alpha": 1.0}
ALS_GRID = [{"factors": f, "regularization": 0.05, "alpha": a} for f in (32, 64) for a in (1.0, 5.0, 20.0)]


def tune_als(train: pd.DataFrame) -> dict[str, float]:
    """Pick ALS parameters by nDCG@K on a 80/20 per-item stratified split of the training data only."""
    sub_train, validation = stratified_split(train, 0.8, seed=7)
    holdout = make_holdout(sub_train, validation)
    best, best_ndcg = ALS_GRID[0], -1.0
    for params in ALS_GRID:
        recs, _, _ = _als_fit_recommend(sub_train, holdout.users, **params)
        ndcg = accuracy_summary(recs, holdout.test, K, holdout.users).ndcg
        print(f"ALS validation {params}: ndcg@{K}={ndcg:.4f}")
        if ndcg > best_ndcg:
            best, best_ndcg = params, ndcg
    return best


def run_sar(python: str, extra_recs: pd.DataFrame) -> dict[str, Any] | None:
    """SAR + Recommenders' own metrics in the Recommenders interpreter; None when unavailable."""
    if not Path(python).exists():
        print(f"SAR: no Recommenders interpreter at {python}; comparing with published figures only")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        runner = Path(tmp) / "sar_runner.py"
        runner.write_text(SAR_RUNNER)
        extra = extra_recs.rename(columns={C.USER_ID: "userID", C.ITEM_ID: "itemID"})
        extra["prediction"] = (K + 1 - extra[C.RANK]).astype(float)
        extra[["userID", "itemID", "prediction", "arm"]].to_csv(
            Path(tmp) / "extra.tsv", sep="\t", index=False
        )
        cmd = [python, str(runner), str(SPLIT / "train.tsv"), str(SPLIT / "test.tsv"), tmp]
        cmd += [str(Path(tmp) / "extra.tsv"), str(K)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            print(f"SAR runner failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
            return None
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        out = json.loads(line.removeprefix("RESULT "))
        sar = pd.read_csv(Path(tmp) / "sar.tsv", sep="\t")
    sar = sar.rename(columns={"userID": C.USER_ID, "itemID": C.ITEM_ID})
    sar = sar.sort_values([C.USER_ID, "prediction"], ascending=[True, False], kind="stable")
    sar[C.RANK] = sar.groupby(C.USER_ID).cumcount() + 1
    out["recs"] = sar[[C.USER_ID, C.ITEM_ID, C.RANK]]
    return out


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("n_lists", "n_users")}


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def render(result: dict[str, Any]) -> str:
    """The docs/benchmarks.md section."""
    rows = result["rows"]
    als = rows["implicit ALS (tuned)"]["ndcg@10"]
    sar_measured = rows.get("SAR (measured)", {}).get("ndcg@10")
    sar_published = PUBLISHED["SAR"]["ndcg@10"]
    m = result["machine"]
    lines = [
        BEGIN,
        "## Offline evaluation vs peers (ML-100k, `benchmarks/bench_offline.py`)",
        "",
        f"Run {result['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), Python "
        f"{m['python']}. Split: `shared/data/ml-100k/splits/recommenders-item-stratified-seed42` "
        f"({result['n_users']} users, {result['n_items']} items); top-10, every test rating relevant, seen "
        "items removed; all rows scored by `deepcuts.metrics` in the same run. Ratios are nDCG@10 over "
        "the peer's nDCG@10.",
        "",
        "| system | nDCG@10 | MAP | P@10 | R@10 | long-tail share | coverage | mean hit rating | fit s | "
        "/ ALS tuned | / SAR measured | / SAR published |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lt = r.get("long_tail_share")
        cov = r.get("catalog_coverage")
        fit = r.get("fit_seconds")
        hit_rating = r.get("mean_hit_rating")
        lines.append(
            f"| {name} | {r['ndcg@10']:.4f} | {r['map']:.4f} | {r['precision@10']:.4f} | "
            f"{r['recall@10']:.4f} | {'-' if lt is None else f'{lt:.3f}'} | "
            f"{'-' if cov is None else f'{cov:.3f}'} | "
            f"{'-' if hit_rating is None else f'{hit_rating:.3f}'} | "
            f"{'-' if fit is None else f'{fit:.2f}'} | "
            f"{ratio(r['ndcg@10'], als)} | {ratio(r['ndcg@10'], sar_measured)} | "
            f"{ratio(r['ndcg@10'], sar_published)} |"
        )
    lines.append("")
    tuned = result.get("als_parameters", {}).get("implicit ALS (tuned)")
    if tuned:
        lines.append(
            f"implicit ALS (tuned): {tuned}, 15 iterations, chosen by nDCG@10 on an 80/20 per-item "
            "split of train.tsv (test.tsv unseen). SAR: jaccard similarity, 30-day time decay, as in "
            "the Recommenders benchmark notebook."
        )
        lines.append("")
    lines.append(
        "Published rows are the Microsoft Recommenders benchmark figures (`shared/README.md`), not re-run; "
        "their fit times are from other hardware."
    )
    check = result.get("reference_check")
    if check:
        lines += [
            "",
            f"Metric cross-check with Recommenders {result.get('recommenders_version', '?')}'s own "
            "`map`/`ndcg_at_k`/`precision_at_k`/`recall_at_k` on the same lists (largest absolute "
            f"difference from `deepcuts.metrics`): {check}.",
        ]
    else:
        lines += [
            "",
            "SAR was not run here: Recommenders needs its own interpreter (see the script's docstring); "
            "compare with its published row.",
        ]
    arms = result["arms"]
    total = sum(r.get("fit_seconds", 0) + r.get("recommend_seconds", 0) for r in arms.values())
    lines += ["", f"All {len(arms)} deepcuts arms: {total:.1f} s fit + recommend in total (target <= 15 s)."]
    lines += targets(arms)
    lines.append(END)
    return "\n".join(lines) + "\n"


def targets(arms: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 3's ML-100k targets, checked on this run's numbers."""
    ndcg = {name: m[f"ndcg@{K}"] for name, m in arms.items()}
    out: list[str] = []
    if ndcg:
        best = max(ndcg, key=ndcg.__getitem__)
        out.append(f"Best arm: {best}, nDCG@10 {ndcg[best]:.4f} (target >= 0.47).")
    if "popularity" in ndcg:
        relevance = [a for a in relevance_arm_names() if a in ndcg]
        beaten = [a for a in relevance if ndcg[a] > ndcg["popularity"]]
        out.append(f"Relevance arms above popularity: {len(beaten)} of {len(relevance)}.")
        pop_tail = arms["popularity"]["long_tail_share"]
        for arm in deep_cut_arm_names():
            if arm in arms and ndcg:
                tail = arms[arm]["long_tail_share"]
                times = "popularity's is 0" if pop_tail == 0 else f"{tail / pop_tail:.1f}x popularity's"
                out.append(
                    f"{arm}: long-tail share {tail:.3f} ({times}), "
                    f"nDCG@10 {ndcg[arm] / max(ndcg.values()):.2f} of the best arm's (target >= 0.5)."
                )
    return ["", *(f"- {line}" for line in out)] if out else []


def write_doc(section: str) -> None:
    """Replace (or append) the offline section of docs/benchmarks.md; other sections stay as they are."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n\nFigures measured by `benchmarks/*.py`.\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = DOC.with_name(f".{DOC.name}.tmp")
    tmp.write_text(text)
    tmp.replace(DOC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--recommenders-python",
        default=os.environ.get("DEEPCUTS_RECOMMENDERS_PYTHON", "/tmp/deepcuts-recommenders/bin/python"),
    )
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args()
    if not SPLIT.exists():
        print(f"{SPLIT} not present; nothing to benchmark")
        return 0
    settings = load_settings()
    started = time.perf_counter()
    ours = evaluate_dataset(
        "ml-100k",
        settings,
        train_file=SPLIT / "train.tsv",
        test_file=SPLIT / "test.tsv",
        k=K,
        arms="all",
    )
    print(f"deepcuts arms done in {time.perf_counter() - started:.1f}s")

    train, test = load_split(SPLIT / "train.tsv", SPLIT / "test.tsv")
    items = load_dataset("ml-100k", SHARED).items
    holdout = make_holdout(train, test)
    ctx = ListContext.build(
        k=K,
        train=train,
        items=items,
        head_share=settings.arms.long_tail.head_share,
        truth=holdout.test,
        long_tail_item_ids=long_tail_ids(train, items, settings),
    )
    rows: dict[str, dict[str, Any]] = {f"deepcuts {name}": m for name, m in ours["arms"].items()}
    # the deep-cut re-ranker's lists built from each arm's candidates (what the product serves)
    rows.update({f"deepcuts {name} re-ranked": m for name, m in ours.get("served", {}).items()})

    als_params = {"implicit ALS (defaults)": ALS_DEFAULTS, "implicit ALS (tuned)": tune_als(train)}
    for name, params in als_params.items():
        als_recs, als_fit, als_rec = _als_fit_recommend(train, holdout.users, **params)
        rows[name] = {
            **score_lists(als_recs, ctx, users=holdout.users),
            "fit_seconds": als_fit,
            "recommend_seconds": als_rec,
        }

    best_arm = max(ours["arms"], key=lambda a: ours["arms"][a][f"ndcg@{K}"])
    model = registry_factories([best_arm], settings)[best_arm]().fit(train, items)
    best_recs = model.recommend(holdout.users, K).assign(arm=best_arm)
    sar = run_sar(args.recommenders_python, best_recs)
    reference_check = None
    if sar is not None:
        rows["SAR (measured)"] = {
            **score_lists(sar["recs"], ctx, users=holdout.users),
            "fit_seconds": sar["fit_seconds"],
            "recommend_seconds": sar["recommend_seconds"],
        }
        ours_again = {"SAR": rows["SAR (measured)"], best_arm: score_lists(best_recs, ctx, holdout.users)}
        diffs = [
            abs(ours_again[name][key] - value)
            for name, ref in sar["reference_metrics"].items()
            for key, value in ref.items()
        ]
        reference_check = f"{max(diffs):.1e} over {len(diffs)} numbers (SAR and deepcuts {best_arm})"
    for name, figures in PUBLISHED.items():
        rows[f"{name} (published)"] = dict(figures)

    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "n_users": ours["n_users"],
        "n_items": ours["n_items"],
        "arms": ours["arms"],
        "rows": {
            name: {k: v for k, v in r.items() if k not in ("n_lists", "n_users")} for name, r in rows.items()
        },
        "reference_check": reference_check,
        "recommenders_version": sar.get("recommenders_version") if sar else None,
        "als_parameters": als_params,
        "sar_reference_metrics": sar.get("reference_metrics") if sar else None,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "offline_ml100k.json").write_text(json.dumps(result, indent=2, default=float))
    section = render(result)
    print(section)
    if not args.no_doc:
        write_doc(section)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
