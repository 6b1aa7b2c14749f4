"""Offline evaluation: splits, hold-out rules, evaluate_offline with a tiny real recommender, the CLI and
the nightly step on a small lake."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepcuts.cli import main as cli_main
from deepcuts.contracts import C, Dataset
from deepcuts.models.recommenders.base import FloatArray, IntArray, InteractionMatrix, Recommender
from deepcuts.pipelines.evaluate import (
    EvaluationError,
    evaluate_night,
    evaluate_offline,
    make_holdout,
    new_ratings,
    resolve_arms,
    stratified_split,
    temporal_split,
)
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings
from tests.conftest import shared_dataset


class LowestIdFirst(Recommender):
    """Scores every item by minus its id: lists are the lowest unseen ids. Known answers by hand."""

    name = "lowest_id"

    def _fit(self, data: InteractionMatrix, items: pd.DataFrame) -> None:
        self._scores = -data.item_ids.astype(np.float32)

    def _score(self, user_rows: IntArray) -> FloatArray:
        return np.broadcast_to(self._scores, (user_rows.size, self._scores.size)).copy()


def ratings(rows: list[tuple[int, int, float]], day: str = "2026-01-01") -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING])
    frame[C.TS] = pd.Timestamp(day, tz="UTC")
    return frame


ITEMS = pd.DataFrame(
    {
        C.ITEM_ID: [1, 2, 3, 4, 5],
        C.TITLE: ["a", "b", "c", "d", "e"],
        C.GENRES: [["Drama"], ["Drama", "Anime"], ["Comedy"], ["Anime"], []],
        C.YEAR: [2000, 2001, 2002, 2003, 2004],
    }
)


# ------------------------------------------------------------------------------------------- splits
def test_stratified_split_keeps_round_three_quarters_of_each_item() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({C.USER_ID: np.arange(60), C.ITEM_ID: rng.integers(0, 6, 60), C.RATING: np.ones(60)})
    train, test = stratified_split(frame, 0.75, seed=42)
    assert len(train) + len(test) == 60
    sizes = frame.groupby(C.ITEM_ID).size()
    # half to even: an item with 2 ratings keeps 2 (1.5 -> 2), one with 6 keeps 4 (4.5 -> 4)
    np.testing.assert_array_equal(
        train.groupby(C.ITEM_ID).size().reindex(sizes.index, fill_value=0), np.round(0.75 * sizes)
    )
    again, _ = stratified_split(frame, 0.75, seed=42)
    pd.testing.assert_frame_equal(train, again)
    other, _ = stratified_split(frame, 0.75, seed=7)
    assert not other.equals(train)


@pytest.mark.movielens
def test_stratified_split_reproduces_the_published_ml100k_split() -> None:
    from deepcuts.pipelines.loaders import load_dataset, load_split

    folder = shared_dataset("ml-100k")
    split = folder / "splits" / "recommenders-item-stratified-seed42"
    data = load_dataset("ml-100k", folder)
    train, test = stratified_split(data.interactions, 0.75, 42)
    ref_train, ref_test = load_split(split / "train.tsv", split / "test.tsv")
    key = [C.USER_ID, C.ITEM_ID]
    assert (len(train), len(test)) == (75_066, 24_934)
    assert set(map(tuple, train[key].to_numpy())) == set(map(tuple, ref_train[key].to_numpy()))
    assert set(map(tuple, test[key].to_numpy())) == set(map(tuple, ref_test[key].to_numpy()))


def test_temporal_split_holds_out_latest_fifth_per_user() -> None:
    rows = [(1, i, 4.0, i) for i in range(10)] + [(2, i, 3.0, 10 - i) for i in range(5)] + [(3, 1, 5.0, 0)]
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING, "day"])
    frame[C.TS] = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(frame.pop("day"), unit="D")
    train, test = temporal_split(frame, 0.2)
    held = {u: sorted(g[C.ITEM_ID]) for u, g in test.groupby(C.USER_ID)}
    # user 1: latest 2 of 10; user 2 rated backwards in time: item 0 is the latest; user 3: its only rating
    assert held == {1: [8, 9], 2: [0], 3: [1]}
    assert len(train) == 8 + 4


def test_holdout_skips_users_without_history_and_seen_pairs() -> None:
    train = ratings([(1, 1, 4), (1, 2, 4), (2, 3, 5)])
    test = ratings([(1, 2, 5), (1, 3, 3), (2, 4, 4), (9, 1, 4)])
    holdout = make_holdout(train, test)
    assert holdout.n_skipped_users == 1  # user 9
    assert holdout.n_seen_test_pairs == 1  # (1, 2) is in train
    assert holdout.users.tolist() == [1, 2]
    assert sorted(map(tuple, holdout.test[[C.USER_ID, C.ITEM_ID]].to_numpy())) == [(1, 3), (2, 4)]


def test_resolve_arms() -> None:
    assert resolve_arms("all")[-1] == "popularity"
    assert resolve_arms("svd, popularity,svd") == ["svd", "popularity"]
    with pytest.raises(EvaluationError, match="unknown arms"):
        resolve_arms("svd,nope")


# ---------------------------------------------------------------------------------- evaluate_offline
def test_evaluate_offline_by_hand_and_served_hook() -> None:
    train = ratings([(1, 1, 4), (2, 2, 4), (2, 3, 4)])
    test = ratings([(1, 3, 5.0), (1, 5, 2.0), (2, 1, 4.0), (7, 1, 3.0)])
    # lowest unseen ids, k = 2: user 1 gets [2, 3] (hit 3 at position 2), user 2 gets [1, 4] (hit 1 at 1)
    calls: list[str] = []

    def reverse(arm: str, candidates: pd.DataFrame) -> pd.DataFrame:
        calls.append(arm)
        # served list: the candidates in reverse order, cut to 2
        out = candidates.sort_values([C.USER_ID, C.RANK], ascending=[True, False]).copy()
        out[C.RANK] = out.groupby(C.USER_ID).cumcount() + 1
        return out[out[C.RANK] <= 2]

    result = evaluate_offline(
        train,
        test,
        ITEMS,
        {"lowest": LowestIdFirst},
        k=2,
        list_transform=reverse,
        n_candidates=3,
    )
    assert (result["n_users"], result["n_skipped_users"], result["n_items"]) == (2, 1, 5)
    arm = result["arms"]["lowest"]
    assert arm["precision@2"] == pytest.approx(0.5)
    assert arm["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert arm["ndcg@2"] == pytest.approx(((1 / math.log2(3)) / (1 + 1 / math.log2(3)) + 1) / 2)
    assert arm["map"] == pytest.approx(((1 / 2) / 2 + 1) / 2)
    assert arm["mean_hit_rating"] == pytest.approx(4.5)
    assert arm["catalog_coverage"] == pytest.approx(4 / 5)
    assert arm["genres_per_list"] == pytest.approx((3 + 2) / 2)  # {Drama, Anime, Comedy}, {Drama, Anime}
    assert arm["fit_seconds"] >= 0 and arm["recommend_seconds"] >= 0
    assert calls == ["lowest"]
    # candidates (top 3): user 1 [2, 3, 4] -> served [4, 3]; user 2 [1, 4, 5] -> served [5, 4]
    served = result["served"]["lowest"]
    assert served["precision@2"] == pytest.approx(0.25)
    assert served["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)) / 2)


def test_served_candidates_hold_the_quotas_and_raw_lists_do_not_change() -> None:
    train = ratings([(1, 1, 4), (2, 2, 4), (2, 3, 4)])
    test = ratings([(1, 3, 5.0), (1, 5, 2.0), (2, 1, 4.0)])
    seen: dict[int, list[int]] = {}

    def record(arm: str, candidates: pd.DataFrame) -> pd.DataFrame:
        for user, rows in candidates.groupby(C.USER_ID):
            seen[int(user)] = rows.sort_values(C.RANK)[C.ITEM_ID].tolist()
        return candidates[candidates[C.RANK] <= 2]

    def run(quotas: list) -> dict:
        return evaluate_offline(
            train, test, ITEMS, {"lowest": LowestIdFirst}, k=2, list_transform=record, n_candidates=3,
            quotas=quotas,
        )  # fmt: skip

    plain = run([])
    # item 5 must be among the 3 candidates: user 1's unseen [2, 3, 4, 5] -> [2, 3, 5], user 2's
    # [1, 4, 5] already holds it; ranks stay in score order
    with_quota = run([(np.array([5]), 1)])
    assert seen == {1: [2, 3, 5], 2: [1, 4, 5]}
    assert with_quota["arms"]["lowest"] == {**plain["arms"]["lowest"], **{
        key: with_quota["arms"]["lowest"][key] for key in ("fit_seconds", "recommend_seconds")
    }}  # fmt: skip


def test_served_targets_by_hand(settings: Settings) -> None:
    from deepcuts.pipelines.evaluate import served_targets

    def m(ndcg: float, share: float, genres: float, rating: float | None) -> dict:
        return {
            "ndcg@10": ndcg,
            "long_tail_share": share,
            "genres_per_list": genres,
            "mean_hit_rating": rating,
        }

    result = {
        "k": 10,
        "arms": {
            "item_cf": m(0.50, 0.0, 10, 3.9),
            "svd": m(0.45, 0.0, 10, 3.9),
            "popularity": m(0.3, 0, 9, 3.8),
        },
        "served": {
            "item_cf": m(0.41, 0.40, 11, 4.05),
            "svd": m(0.42, 0.41, 6, 4.2),  # just above the band
            "popularity": m(0.45, 0.0, 3, 3.0),  # not a treatment arm: neither checked nor "best"
        },
    }
    out = served_targets(result, settings)
    assert out is not None
    assert (out["best_raw_arm"], out["best_served_arm"]) == ("item_cf", "svd")
    assert out["ndcg_ratio"] == pytest.approx(0.42 / 0.50)
    assert out["arms"]["item_cf"] == {
        "long_tail_in_band": True,
        "genres_ok": True,
        "mean_hit_rating_ok": True,
    }
    assert out["arms"]["svd"] == {"long_tail_in_band": False, "genres_ok": True, "mean_hit_rating_ok": True}
    assert set(out["arms"]) == {"item_cf", "svd"} and out["all_arms_met"] is False
    assert served_targets({"k": 10, "arms": result["arms"]}, settings) is None


def test_evaluate_offline_refuses_empty_evaluation() -> None:
    with pytest.raises(EvaluationError, match="no test user"):
        evaluate_offline(ratings([(1, 1, 4)]), ratings([(2, 1, 4)]), ITEMS, {"x": LowestIdFirst}, k=2)


# ---------------------------------------------------------------------------------------------- CLI
def _write_csv_dataset(folder: Path) -> None:
    folder.mkdir()
    rows = []
    rng = np.random.default_rng(5)
    for user in range(1, 31):
        for item in rng.choice(np.arange(1, 21), size=8, replace=False):
            rows.append(f"{user},{item},{rng.integers(1, 6)},{1_700_000_000 + user * 100 + int(item)}")
    (folder / "ratings.csv").write_text("user_id,item_id,rating,timestamp\n" + "\n".join(rows) + "\n")
    genres = ["Drama|Anime", "Comedy", "Western", "Drama"]
    items = [f"{i},Title {i} (2001),{genres[i % 4]}" for i in range(1, 21)]
    (folder / "items.csv").write_text("item_id,title,genres\n" + "\n".join(items) + "\n")


def test_cli_evaluate_writes_json_and_table(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("deepcuts.models.recommenders.registry")
    data = tmp_path / "data"
    _write_csv_dataset(data)
    out = tmp_path / "out" / "results.json"
    args = ["evaluate", "--dataset", "csv", "--path", str(data), "--protocol", "temporal", "--k", "5"]
    code = cli_main([*args, "--arms", "popularity", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert (result["dataset"], result["protocol"], result["k"]) == ("csv", "temporal", 5)
    assert result["n_users"] == 30 and result["n_items"] == 20
    metrics = result["arms"]["popularity"]
    for key in (
        "precision@5",
        "recall@5",
        "ndcg@5",
        "map",
        "catalog_coverage",
        "novelty",
        "ild",
        "genres_per_list",
        "long_tail_share",
        "mean_hit_rating",
        "gini",
        "serendipity",
        "fit_seconds",
        "recommend_seconds",
    ):
        assert key in metrics
    # the deep-cut re-ranker's lists are scored next to the raw arm
    assert set(result["served"]) == {"popularity"}
    assert "ndcg@5" in result["served"]["popularity"]
    printed = capsys.readouterr().out
    assert "popularity (served)" in printed and "ndcg@5" in printed and "30 users evaluated" in printed
    # the quality users experience: the mean rating of hits, for the arm and for its served list
    assert "mean_hit_rating" in printed and "mean_hit_rating" in result["served"]["popularity"]
    # popularity is not a deep-cut treatment arm: nothing to check against the targets
    assert result["served_targets"]["arms"] == {} and "served vs targets" in printed
    assert cli_main([*args, "--arms", "popularity", "--no-rerank", "--out", str(out)]) == 0
    assert "served" not in json.loads(out.read_text())


def test_cli_evaluate_explains_missing_inputs(tmp_path: Path, settings: Settings) -> None:
    out = str(tmp_path / "r.json")
    assert cli_main(["evaluate", "--dataset", "ml-100k", "--out", out]) == 2
    assert cli_main(["evaluate", "--dataset", "ml-100k", "--train", "x.tsv", "--out", out]) == 2


# -------------------------------------------------------------------------------------------- nightly
D1, D2 = date(2026, 3, 1), date(2026, 3, 2)


def _candidates(lists: dict[int, list[int]], arm: str, run_date: date) -> pd.DataFrame:
    rows = [
        (u, i, r, 1.0 / r, arm, run_date) for u, items in lists.items() for r, i in enumerate(items, start=1)
    ]
    return pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RANK, C.SCORE, C.ARM, C.RUN_DATE])


def _interactions(rows: list[tuple[int, int, float, date]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING, "day"])
    frame[C.TS] = [datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for d in frame.pop("day")]
    return frame


def test_evaluate_night_first_night_then_accuracy(settings: Settings) -> None:
    lake = Lake(settings.home)
    history = [(1, 1, 4.0, D1), (2, 1, 5.0, D1), (2, 2, 3.0, D1)]
    arrived = [(1, 3, 5.0, D2), (2, 4, 3.0, D2), (3, 1, 4.0, D2)]
    for day, rows in ((D1, history), (D2, history + arrived)):
        lake.write_table(Dataset.ITEMS, day, ITEMS)
        lake.write_table(Dataset.INTERACTIONS, day, _interactions(rows))
    lake.write_table(Dataset.CANDIDATES, D1, _candidates({1: [2, 3], 2: [3, 4]}, "svd", D1), "svd/shard-0000")
    lake.write_table(Dataset.CANDIDATES, D1, _candidates({1: [5, 4], 2: [5, 3]}, "popularity", D1), "pop")
    lake.write_table(Dataset.CANDIDATES, D2, _candidates({1: [2, 4], 2: [3, 5]}, "svd", D2), "svd/shard-0000")

    reranked = _candidates({1: [3, 2]}, "svd", D1).assign(
        **{C.NOVELTY: 1.0, C.IS_LONG_TAIL: False, C.QUALITY: 4.0, C.REASON: "because"}
    )
    lake.write_table(Dataset.RERANKED, D1, reranked, "shard-0000")
    lake.mark_all_complete()  # as the steps that write them do when they finish

    first = evaluate_night(settings, D1)
    assert first["previous_run_date"] is None and "first night" in first["note"]
    table = lake.read_df(Dataset.EVAL_OFFLINE, D1)
    assert set(table[C.LIST_SOURCE]) == {"candidates", "reranked"}  # no "previous_*" on night one

    out = evaluate_night(settings, D2.isoformat())
    assert out["previous_run_date"] == D1.isoformat() and out["new_ratings"] == 3
    table = lake.read_df(Dataset.EVAL_OFFLINE, D2)
    prev = table[table[C.LIST_SOURCE] == "previous_candidates"].set_index([C.ARM, C.METRIC])[C.VALUE]
    # svd on D1: user 1 [2, 3] hits 3 at 2; user 2 [3, 4] hits 4 at 2; user 3 had no list
    assert prev[("svd", "precision@10")] == pytest.approx(1 / 10)
    assert prev[("svd", "recall@10")] == pytest.approx(1.0)
    assert prev[("svd", "ndcg@10")] == pytest.approx(1 / math.log2(3))
    assert prev[("popularity", "recall@10")] == pytest.approx(0.0)
    assert math.isnan(prev[("popularity", "mean_hit_rating")])
    served = table[table[C.LIST_SOURCE] == "previous_reranked"].set_index(C.METRIC)[C.VALUE]
    # re-ranked svd list on D1: user 1 [3, 2] hits 3 at position 1; user 2 had no re-ranked list
    assert served["ndcg@10"] == pytest.approx(1.0)
    assert (table.loc[table[C.LIST_SOURCE] == "previous_reranked", C.N_USERS] == 1).all()
    today = table[table[C.LIST_SOURCE] == "candidates"].set_index(C.METRIC)[C.VALUE]
    assert today["catalog_coverage"] == pytest.approx(4 / 5)
    summary = lake.read_json(Dataset.EVAL_OFFLINE, D2, "summary.json")
    assert summary["accuracy"]["previous_candidates"]["svd"]["map"] == pytest.approx(0.5)
    # idempotent: a rerun writes the same table
    evaluate_night(settings, D2)
    pd.testing.assert_frame_equal(lake.read_df(Dataset.EVAL_OFFLINE, D2), table)


def test_new_ratings_without_previous_snapshot_uses_the_day() -> None:
    frame = _interactions([(1, 1, 4.0, D1), (1, 2, 4.0, D2)])
    assert new_ratings(frame, None, D2)[C.ITEM_ID].tolist() == [2]
    assert new_ratings(frame, frame.iloc[:1], D2)[C.ITEM_ID].tolist() == [2]


def _reference_night(lake: Lake, settings: Settings, day: date, previous: date) -> dict[str, dict]:
    """The nightly metrics as the step computed them before issue 18: every arm's top-k read at once,
    then grouped by arm (the streaming step must give exactly these values)."""
    from deepcuts.metrics import ListContext, score_lists
    from deepcuts.pipelines.evaluate import clean_interactions, long_tail_ids

    k = settings.evaluate.k
    inter = clean_interactions(lake.read_df(Dataset.INTERACTIONS, day), "interactions")
    items = lake.read_df(Dataset.ITEMS, day)
    tail = long_tail_ids(inter, items, settings)
    prev = lake.read_df(Dataset.INTERACTIONS, previous)
    arrived = new_ratings(inter, prev, day)
    head = settings.arms.long_tail.head_share
    ctx = ListContext.build(
        k=k, train=prev, items=items, head_share=head, truth=arrived, long_tail_item_ids=tail
    )
    today_ctx = ListContext.build(k=k, train=inter, items=items, head_share=head, long_tail_item_ids=tail)
    out: dict[str, dict] = {"accuracy": {}, "beyond": {}}
    columns = [C.USER_ID, C.ITEM_ID, C.RANK, C.ARM]
    everything = lake.read_df(Dataset.CANDIDATES, previous, columns=columns)
    for arm, lists in everything[everything[C.RANK] <= k].groupby(C.ARM, sort=True):
        users = np.intersect1d(lists[C.USER_ID].unique(), arrived[C.USER_ID].unique())
        scored = score_lists(lists, ctx, users=users)
        out["accuracy"][arm] = {m: v for m, v in scored.items() if m not in ("n_lists", "n_users")}
    tonight = lake.read_df(Dataset.CANDIDATES, day, columns=columns)
    tonight = tonight[(tonight[C.RANK] <= k) & tonight[C.ARM].isin(settings.arms.enabled)]
    for arm, lists in tonight.groupby(C.ARM, sort=True):
        scored = score_lists(lists, today_ctx)
        out["beyond"][arm] = {m: v for m, v in scored.items() if m not in ("n_lists", "n_users")}
    return out


def test_evaluate_night_streams_arm_by_arm_with_the_values_of_one_pass(settings: Settings) -> None:
    """Three arms over three user shards (users interleaved across parts, ranks up to 30 of which the
    top 10 count) plus a part of an arm tonight's plan does not run: the step, reading one arm at a
    time, writes exactly (==) the metrics of reading everything at once and grouping by arm."""
    rng = np.random.default_rng(7)
    lake = Lake(settings.home)
    items = pd.DataFrame(
        {
            C.ITEM_ID: np.arange(1, 41),
            C.TITLE: [f"t{i}" for i in range(1, 41)],
            C.GENRES: [["Drama", "Anime", "Comedy"][: 1 + i % 3] for i in range(40)],
            C.YEAR: 2000,
        }
    )
    history = [
        (u, int(i), float(rng.integers(1, 6)), D1) for u in range(1, 31) for i in rng.choice(40, 6) + 1
    ]
    arrived = [
        (u, int(i), float(rng.integers(1, 6)), D2) for u in range(1, 31) for i in rng.choice(40, 4) + 1
    ]
    for day, rows in ((D1, history), (D2, history + arrived)):
        lake.write_table(Dataset.ITEMS, day, items)
        lake.write_table(Dataset.INTERACTIONS, day, _interactions(rows))
    for day in (D1, D2):
        for arm in ("svd", "graph", "item_cf", "stale"):
            for shard in range(3):
                lists = {u: list(rng.permutation(40)[:30] + 1) for u in range(1 + shard, 31, 3)}
                lake.write_table(
                    Dataset.CANDIDATES, day, _candidates(lists, arm, day), f"{arm}/shard-000{shard}"
                )
    lake.mark_all_complete()
    settings = settings.model_copy(
        update={"arms": settings.arms.model_copy(update={"enabled": ("svd", "graph", "item_cf")})}
    )
    evaluate_night(settings, D2)
    summary = lake.read_json(Dataset.EVAL_OFFLINE, D2, "summary.json")
    expected = json.loads(json.dumps(_reference_night(lake, settings, D2, D1)))  # as the JSON holds it
    assert summary["accuracy"]["previous_candidates"] == expected["accuracy"]  # the stale arm included
    assert summary["beyond"]["candidates"] == expected["beyond"]
    assert sorted(expected["beyond"]) == ["graph", "item_cf", "svd"]
    assert summary["accuracy"]["previous_candidates"]["svd"]["ndcg@10"] > 0  # the world has hits
