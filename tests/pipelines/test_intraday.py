"""Intraday refreshes (pipelines/intraday.py): slots, exact re-draws, warnings, and a day replayed at
several cadences through the real steps."""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from deepcuts.contracts import C, Dataset, EventType, Variant
from deepcuts.pipelines import intraday
from deepcuts.pipelines.storage import Lake
from deepcuts.settings import Settings
from tests.tiny_world import tiny_world_settings

NIGHT = date(2025, 12, 31)  # the synthetic world's first night
DAY = date(2026, 1, 1)  # the day it serves: its feedback is what the refreshes learn from


def _settings(home: Path, refreshes: int = 24, visit_timing: str = "daypart_start") -> Settings:
    """The refresh-mechanics tests reason about which slot holds which visits: with ``daypart_start``
    every visit starts in its daypart's first hour (6, 12, 18, 23 h), so of 4 slots of 6 h slot 0 is
    quiet. The world's default (``hourly``) has its own test below."""
    return tiny_world_settings(
        home,
        world={"daily_signup_rate": 0.1, "visit_timing": visit_timing},
        simulator={"skip_steps": ["report"], "plot": False, "workers": 1},
        intraday={"refreshes_per_day": refreshes},
    )


# ------------------------------------------------------------------------------------------ units
def test_slots_cover_the_day_and_the_dag_run_refreshes_the_slot_that_just_ended(tmp_path: Path) -> None:
    hourly = _settings(tmp_path, 24)
    assert intraday.slot_at(hourly, datetime(2026, 1, 1, 13, 0, tzinfo=UTC)) == (DAY, 12)
    assert intraday.slot_at(hourly, datetime(2026, 1, 2, 0, 0, tzinfo=UTC)) == (DAY, 23)
    assert intraday.slot_end(hourly, DAY, 12) == pd.Timestamp("2026-01-01T13:00", tz="UTC")
    four = _settings(tmp_path, 4)
    assert intraday.slot_at(four, datetime(2026, 1, 1, 18, 0, tzinfo=UTC)) == (DAY, 2)
    assert intraday.slot_end(four, DAY, 3) == pd.Timestamp("2026-01-02T00:00", tz="UTC")
    with pytest.raises(ValueError, match="slot"):
        intraday.slot_end(four, DAY, 4)
    with pytest.raises(ValidationError, match="divide 1440"):
        _settings(tmp_path, 7)


def test_redraw_keeps_control_and_logs_the_exact_probability() -> None:
    n = 40_000
    selection = np.tile([0.7, 0.2, 0.1], (12, 1))
    selection[4] = [0.1, 0.1, 0.8]  # casual/morning: context 4
    users = np.arange(n) // 2
    frame = pd.DataFrame(
        {
            C.USER_ID: users,
            C.DAYPART: np.where(np.arange(n) % 2 == 0, "morning", "evening"),
            C.SEGMENT: "casual",
            C.ARM: "svd",
            C.PROPENSITY: 1.0,
            C.VARIANT: np.where(users % 4 == 0, Variant.CONTROL.value, Variant.TREATMENT.value),
        }
    )
    out = intraday.redraw_arms(frame, selection, ["a", "b", "c"], seed=11)
    control = out[C.VARIANT] == Variant.CONTROL.value
    assert (out.loc[control, C.ARM] == "svd").all() and (out.loc[control, C.PROPENSITY] == 1.0).all()
    treated = out[~control]
    expected = {("morning", "a"): 0.1, ("morning", "c"): 0.8, ("evening", "a"): 0.7, ("evening", "b"): 0.2}
    for (daypart, arm), p in expected.items():
        rows = treated[treated[C.DAYPART] == daypart]
        assert (rows.loc[rows[C.ARM] == arm, C.PROPENSITY] == p).all()
        # 15k draws per daypart: 4 standard errors of a share are at most 0.017
        assert (rows[C.ARM] == arm).mean() == pytest.approx(p, abs=0.017)
    again = intraday.redraw_arms(frame, selection, ["a", "b", "c"], seed=11)
    assert again.equals(out)
    assert not intraday.redraw_arms(frame, selection, ["a", "b", "c"], seed=12).equals(out)


def test_refresh_warnings_no_feedback_and_lag(tmp_path: Path) -> None:
    s = _settings(tmp_path, 24)  # slot 12 ends 13:00; lag limit 180 minutes
    quiet = intraday.refresh_warnings(s, DAY, 12, 50, 50, "2026-01-01T12:30:00+00:00")
    assert [a["check_name"] for a in quiet] == ["intraday_no_feedback"]
    stale = intraday.refresh_warnings(s, DAY, 12, 60, 50, "2026-01-01T09:00:00+00:00")
    assert [a["check_name"] for a in stale] == ["intraday_feedback_lag"]
    assert stale[0]["value"] == 240.0 and stale[0]["severity"] == "warning"
    assert intraday.refresh_warnings(s, DAY, 12, 60, 50, "2026-01-01T10:00:00+00:00") == []


# ------------------------------------------------------------------------------ one replayed day
@pytest.fixture(scope="module")
def one_night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic world after night 1: the lists of NIGHT are live, DAY's feedback has landed."""
    from deepcuts.pipelines.simulate import simulate

    home = tmp_path_factory.mktemp("night") / "lake"
    simulate(_settings(home), "synthetic", 1)
    assert Lake(home).has(Dataset.LANDING_FEEDBACK, DAY)
    return home


def _copy(one_night: Path, tmp_path: Path, name: str) -> Path:
    home = tmp_path / name
    shutil.copytree(one_night, home)
    return home


def _nightly(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The nightly ingest + bandit_update of DAY; (posterior, the OPE step's attributed trials)."""
    from deepcuts.pipelines.bandit_update import bandit_update
    from deepcuts.pipelines.ingest import ingest
    from deepcuts.pipelines.ope import _logged_trials

    ingest(settings, DAY)
    bandit_update(settings, DAY)
    lake = Lake(settings.home)
    trials, _ = _logged_trials(lake, DAY, tuple(settings.bandit.arms), settings.bandit.daypart_starts[0])
    inputs = pd.DataFrame({f.name: getattr(trials, f.name) for f in dataclasses.fields(trials)})
    return lake.read_df(Dataset.BANDIT_POSTERIOR, DAY), inputs


def test_a_day_replayed_at_1_4_24_refreshes_counts_the_same(one_night: Path, tmp_path: Path) -> None:
    landing = Lake(one_night).read_df(Dataset.LANDING_FEEDBACK, DAY)
    shown = landing[
        (landing[C.EVENT_TYPE] == EventType.IMPRESSION.value)
        & (landing[C.VARIANT] == Variant.TREATMENT.value)
    ]
    lists = shown.drop_duplicates([C.USER_ID, C.DAYPART])  # one list version, one visit per daypart
    clicked = landing[
        (landing[C.EVENT_TYPE] == EventType.CLICK.value) & (landing[C.VARIANT] == Variant.TREATMENT.value)
    ].drop_duplicates([C.USER_ID, C.DAYPART])

    base_post, base_ope = _nightly(_settings(_copy(one_night, tmp_path, "none")))
    assert base_post[C.TRIALS].sum() == len(lists) > 0
    assert base_post[C.SUCCESSES].sum() == len(clicked)

    for n in (1, 4, 24):
        settings = _settings(_copy(one_night, tmp_path, f"n{n}"), n)
        lake = Lake(settings.home)
        versions = []
        for slot in range(n):
            out = intraday.refresh(settings, DAY, slot)
            if out["publish"]["status"] == "published":
                versions.append(out["publish"]["list_version"])
        last = lake.read_df(Dataset.INTRADAY_POSTERIOR, DAY, parts=[intraday.slot_part(n - 1)])
        # cumulative evidence within the day: the final slot has seen every event
        assert out["update"]["trials"] == len(lists)
        assert len(versions) == len(set(versions)) >= 1
        posterior, ope_inputs = _nightly(settings)
        # the nightly run ignores the refreshes (no double counting) and the last refresh equals it
        pd.testing.assert_frame_equal(posterior, base_post)
        pd.testing.assert_frame_equal(ope_inputs, base_ope)
        pd.testing.assert_frame_equal(last.drop(columns=C.RUN_DATE), posterior.drop(columns=C.RUN_DATE))
        # the trial counts grow slot by slot as the day's visits are stamped
        counts = [
            lake.read_df(Dataset.INTRADAY_POSTERIOR, DAY, parts=[intraday.slot_part(s)])[C.TRIALS].sum()
            for s in range(n)
        ]
        assert counts == sorted(counts)


def test_rerun_is_idempotent_missed_slot_caught_up_and_stale_slot_not_republished(
    one_night: Path, tmp_path: Path
) -> None:
    from deepcuts.pipelines import serving

    full = _settings(_copy(one_night, tmp_path, "full"), 4)
    for slot in range(4):
        intraday.refresh(full, DAY, slot)
    gappy = _settings(_copy(one_night, tmp_path, "gappy"), 4)
    intraday.refresh(gappy, DAY, 0)
    out = intraday.refresh(gappy, DAY, 3)  # slots 1 and 2 were missed
    part = intraday.slot_part(3)
    for dataset in (Dataset.INTRADAY_POSTERIOR, Dataset.INTRADAY_POLICY, Dataset.INTRADAY_ASSIGNMENTS):
        a = Path(Lake(full.home).file_path(dataset, DAY, part + ".parquet")).read_bytes()
        b = Path(Lake(gappy.home).file_path(dataset, DAY, part + ".parquet")).read_bytes()
        assert a == b, dataset
    assert out["publish"]["status"] == "published"
    # the published assignments carry the refreshed policy's exact probabilities
    lake = Lake(gappy.home)
    policy = lake.read_df(Dataset.INTRADAY_POLICY, DAY, parts=[part])
    engine = serving.serving_engine(gappy)
    with engine.connect() as conn:
        live = serving.live_version(conn)
        published = pd.read_sql("SELECT * FROM current_assignments", conn)
    engine.dispose()
    assert live.list_version == out["publish"]["list_version"]
    treated = published[published[C.VARIANT] == Variant.TREATMENT.value]
    joined = treated.merge(policy, on=[C.SEGMENT, C.DAYPART, C.ARM], how="left")
    assert len(joined) == len(treated)
    np.testing.assert_allclose(joined[C.PROPENSITY], joined[C.SELECTION_PROBABILITY])
    # a rerun rewrites the same bytes and publishes nothing new
    path = Path(lake.file_path(Dataset.INTRADAY_ASSIGNMENTS, DAY, part + ".parquet"))
    before = path.read_bytes()
    again = intraday.refresh(gappy, DAY, 3)
    assert path.read_bytes() == before
    assert again["publish"]["status"] == "unchanged"
    # a rerun of an older slot after a later one went live does not switch back
    assert intraday.refresh(gappy, DAY, 0)["publish"]["status"] in ("no_change", "superseded")
    intraday.refresh(gappy, DAY, 2)
    assert intraday.publish_refresh(gappy, DAY, 2)["status"] == "superseded"
    # the report's trajectory: one row per refresh, the live version among them, the quiet slot flagged
    from deepcuts.pipelines.report import _intraday_section

    body = _intraday_section(lake, DAY).body
    refreshes, trajectory = body.split("</table>")[:2]
    assert refreshes.count("<tr>") == 1 + 3  # header + slots 0, 2, 3
    assert trajectory.count("<tr>") == 1 + 12  # header + every context, refresh by refresh
    assert out["publish"]["list_version"] in body and "intraday_no_feedback" in body
    assert "No intraday refresh" in _intraday_section(lake, NIGHT).body


def test_intraday_dag_wiring(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dags = Path(__file__).resolve().parents[2] / "dags"
    bag = DagBag(dag_folder=str(dags / "deepcuts_intraday.py"))
    assert bag.import_errors == {}
    dag = bag.get_dag("deepcuts_intraday")
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert set(dag.params.keys()) == {"day", "slot"}
    chain = ["ingest", "update", "assign", "publish"]
    assert dag.get_task("plan").downstream_task_ids == set(chain)
    for up, down in itertools.pairwise(chain):
        assert dag.get_task(up).downstream_task_ids == {down}
    assert dag.get_task("publish").pool == "deepcuts_publish"
    assert all(t.on_failure_callback for t in dag.tasks)


def test_simulator_serves_the_day_in_slots_with_a_refresh_after_each(tmp_path: Path) -> None:
    from deepcuts.pipelines.simulate import simulate

    home = tmp_path / "lake"
    settings = _settings(home).model_copy(
        update={"simulator": _settings(home).simulator.model_copy(update={"refreshes_per_day": 4})}
    )
    record = simulate(settings, "synthetic", 2)
    first = record["nights"][0]
    lake = Lake(home)
    # dayparts start at 6, 12, 18, 23 h: slots of 6 h -> 1, 2, 3, 3 (nothing lands in slot 0)
    assert lake.parts(Dataset.LANDING_FEEDBACK, DAY) == ["slot-0001", "slot-0002", "slot-0003"]
    steps = {step["slot"]: step for step in first["intraday"]}
    assert sorted(steps) == [1, 2]  # no refresh after the last slot: the night runs next
    assert steps[1]["status"] == "published" and steps[1]["list_version"] != first["list_version"]
    assert first["list_version_end"] == steps[2]["list_version"]
    # the afternoon's visits saw the version published after the morning, with its exact propensities
    afternoon = lake.read_df(Dataset.LANDING_FEEDBACK, DAY, parts=["slot-0002"])
    assert set(afternoon[C.LIST_VERSION]) == {steps[1]["list_version"]}
    policy = lake.read_df(Dataset.INTRADAY_POLICY, DAY, parts=["slot-0001"])
    treated = afternoon[afternoon[C.VARIANT] == Variant.TREATMENT.value]
    joined = treated.merge(policy, on=[C.SEGMENT, C.DAYPART, C.ARM], how="left")
    np.testing.assert_allclose(joined[C.PROPENSITY], joined[C.SELECTION_PROBABILITY])
    # the second night ingested every slot's file and the day's live version was the refreshed one
    ingested = lake.read_df(Dataset.FEEDBACK_EVENTS, DAY)
    landed = lake.read_df(Dataset.LANDING_FEEDBACK, DAY)
    assert len(ingested) == len(landed) == first["events"]
    assert record["nights"][1]["list_version"] != first["list_version_end"]  # night 2 published anew


def test_hourly_visits_spread_over_the_slots_and_change_only_the_times(tmp_path: Path) -> None:
    """The default world timing: visits start in any hour of their daypart (night: 23 h and 0-5 h of the
    served day), each visit's events in one hourly slot, the refreshes learn from every slot with visits.
    In the nightly-only loop the timing changes the timestamps and nothing else."""
    from deepcuts.pipelines.simulate import simulate

    hourly = _settings(tmp_path / "hourly", visit_timing="hourly")
    record = simulate(
        hourly.model_copy(
            update={"simulator": hourly.simulator.model_copy(update={"refreshes_per_day": 24})}
        ),
        "synthetic",
        1,
    )
    lake = Lake(hourly.home)
    parts = lake.parts(Dataset.LANDING_FEEDBACK, DAY)
    landed = pd.concat(
        [lake.read_df(Dataset.LANDING_FEEDBACK, DAY, parts=[p]).assign(_part=p) for p in parts],
        ignore_index=True,
    )
    hour = pd.to_datetime(landed[C.EVENT_TS], utc=True).dt.hour
    assert (
        landed["_part"] == [intraday.slot_part(h) for h in hour]
    ).all()  # events land in their hour's slot
    assert landed.groupby([C.USER_ID, C.DAYPART])["_part"].nunique().max() == 1  # a visit in one slot
    night_hours = set(hour[landed[C.DAYPART] == "night"])
    assert night_hours <= {23, 0, 1, 2, 3, 4, 5} and night_hours & {0, 1, 2, 3, 4, 5}
    assert len({h for h in hour[landed[C.DAYPART] == "morning"]}) > 1  # not all in the first hour
    refreshed = [step["slot"] for step in record["nights"][0]["intraday"]]
    with_visits = sorted(int(p.removeprefix("slot-")) for p in parts)
    assert refreshed == [s for s in with_visits if s < 23]

    def nightly_events(timing: str) -> pd.DataFrame:
        settings = _settings(tmp_path / f"nightly-{timing}", 1, visit_timing=timing)
        simulate(settings, "synthetic", 1)
        events = Lake(settings.home).read_df(Dataset.LANDING_FEEDBACK, DAY)
        return events.sort_values(C.EVENT_ID, ignore_index=True)

    spread, start = nightly_events("hourly"), nightly_events("daypart_start")
    cols = [c for c in spread.columns if c != C.EVENT_TS]
    pd.testing.assert_frame_equal(spread[cols], start[cols])
    assert not spread[C.EVENT_TS].equals(start[C.EVENT_TS])


def test_cli_refreshes_per_day_reaches_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from deepcuts.cli.simulate import register, settings_from_args

    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["simulate", "--home", str(tmp_path), "--refreshes-per-day", "24"])
    assert settings_from_args(args).simulator.refreshes_per_day == 24
    defaults = settings_from_args(parser.parse_args(["simulate", "--home", str(tmp_path)]))
    assert defaults.simulator.refreshes_per_day == 1
    with pytest.raises(ValidationError, match="divide 24"):
        settings_from_args(
            parser.parse_args(["simulate", "--home", str(tmp_path), "--refreshes-per-day", "5"])
        )


def test_a_refresh_pools_only_the_nights_snapshot_not_the_days_evidence(
    one_night: Path, tmp_path: Path
) -> None:
    """Day 1: the night's snapshot holds no evidence yet. One segment's other dayparts see a day that
    favours one arm; its morning context sees nothing. With ``refresh_pooling = snapshot`` the morning
    borrows nothing (the snapshot has nothing to lend) and stays uniform, however loud the neighbours'
    day; ``live`` pooling (the refresh before) would pull it onto the neighbours' arm."""
    from deepcuts.models.policy.bandit import BanditConfig
    from deepcuts.models.policy.context import CONTEXTS
    from deepcuts.pipelines.bandit_update import day_prior, posterior_frame

    selected = {}
    for mode in ("snapshot", "live"):
        settings = _settings(_copy(one_night, tmp_path, mode), 4)
        settings = settings.model_copy(
            update={"intraday": settings.intraday.model_copy(update={"refresh_pooling": mode})}
        )
        lake = Lake(settings.home)
        config = BanditConfig.from_settings(settings.bandit)
        arms = tuple(settings.bandit.arms)
        base_a, base_b, previous = day_prior(lake, DAY, arms, config)
        assert previous == NIGHT
        # the first night learnt from no feedback: its snapshot is the prior
        assert (base_a == config.prior_alpha).all() and (base_b == config.prior_beta).all()
        segment = CONTEXTS[0][0]
        target = CONTEXTS.index((segment, CONTEXTS[0][1]))
        neighbours = [i for i, (s, _) in enumerate(CONTEXTS) if s == segment and i != target]
        served = intraday._served_arms(settings, lake.read_df(Dataset.BANDIT_POLICY, NIGHT, columns=[C.ARM]))
        favoured = arms.index(served[-1])
        trials, successes = np.zeros_like(base_a), np.zeros_like(base_a)
        trials[neighbours] = 40.0
        successes[neighbours] = 4.0
        successes[neighbours, favoured] = 36.0
        frame = posterior_frame(base_a + successes, base_b + trials - successes, arms, DAY, trials, successes)
        lake.write_table(Dataset.INTRADAY_POSTERIOR, DAY, frame, part=intraday.slot_part(0))
        assert intraday.assign_refresh(settings, DAY, 0)["status"] == "assigned"
        policy = lake.read_df(Dataset.INTRADAY_POLICY, DAY, parts=[intraday.slot_part(0)])
        row = policy[(policy[C.SEGMENT] == segment) & (policy[C.DAYPART] == CONTEXTS[target][1])]
        selected[mode] = dict(zip(row[C.ARM], row[C.SELECTION_PROBABILITY], strict=True))
        # the neighbours' own day counts in full either way: they put most traffic on the favoured arm
        mine = policy[(policy[C.SEGMENT] == segment) & (policy[C.DAYPART] == CONTEXTS[neighbours[0]][1])]
        assert mine.set_index(C.ARM)[C.SELECTION_PROBABILITY][served[-1]] > 0.8

    uniform = 1.0 / len(served)
    np.testing.assert_allclose(list(selected["snapshot"].values()), uniform, atol=1e-3)
    assert selected["live"][served[-1]] > 0.8  # what the old refresh did: the neighbours' arm
