"""The nightly ingest on a tiny hand-made source and hand-written landing logs, with known answers.

Source: 6 items (ids 1..6), 8 ratings by users 1..3 spread over 2026-03-01..2026-03-12, one with an
unknown item and one from 1980. Nights: D1 = 2026-03-09 (first night), D2 = 03-10, D3 = 03-11.
"""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepcuts.cli import main as cli_main
from deepcuts.contracts import FEEDBACK_SCHEMA, C, Dataset
from deepcuts.pipelines.ingest import SEEN_PART, SUMMARY_FILE, ingest, ingest_source
from deepcuts.pipelines.loaders import SourceData
from deepcuts.pipelines.storage import Lake
from deepcuts.pipelines.validation import ValidationFailed
from deepcuts.settings import Settings, load_settings

D1, D2, D3 = date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)


def source() -> SourceData:
    items = pd.DataFrame(
        {
            C.ITEM_ID: np.arange(1, 7, dtype=np.int64),
            C.TITLE: [f"Film {i} (1999)" for i in range(1, 7)],
            C.GENRES: [["Anime"], ["Drama"], ["Comedy"], ["Anime", "Drama"], [], ["Western"]],
            C.YEAR: pd.array([1999] * 6, dtype="Int32"),
        }
    )
    rows = [
        # user, item, rating, ts
        (1, 1, 4.0, "2026-03-01 10:00"),
        (2, 2, 5.0, "2026-03-08 23:59"),
        (3, 9, 3.0, "2026-03-09 08:00"),  # unknown item -> quarantined on D1
        (1, 3, 2.0, "1980-01-01 00:00"),  # ancient -> quarantined on D1
        (2, 4, 4.5, "2026-03-09 12:00"),
        (3, 5, 1.0, "2026-03-10 07:00"),  # D2 delta
        (1, 6, 3.5, "2026-03-10 22:00"),  # D2 delta
        (2, 1, 4.0, "2026-03-12 09:00"),  # after D3: never ingested in these tests
    ]
    inter = pd.DataFrame(rows, columns=[C.USER_ID, C.ITEM_ID, C.RATING, C.TS])
    inter[C.USER_ID] = inter[C.USER_ID].astype(np.int64)
    inter[C.ITEM_ID] = inter[C.ITEM_ID].astype(np.int64)
    inter[C.RATING] = inter[C.RATING].astype(np.float32)
    inter[C.TS] = pd.to_datetime(inter[C.TS], utc=True).astype("datetime64[us, UTC]")
    return SourceData(items, inter, 1.0, 5.0, "tiny")


def events(day: date, n: int, prefix: str, **overrides: list) -> pd.DataFrame:
    """``n`` valid events on ``day`` (text, as the app logs them): impression, click, rating, ..."""
    kinds = ["impression", "click", "rating"]
    start = pd.Timestamp(day.isoformat(), tz="UTC")
    frame = pd.DataFrame(
        {
            C.EVENT_ID: [f"{prefix}-{i}" for i in range(n)],
            C.EVENT_TS: [(start + pd.Timedelta(minutes=30 * i)).isoformat() for i in range(n)],
            C.USER_ID: [str(1 + i % 3) for i in range(n)],
            C.ITEM_ID: [str(1 + i % 6) for i in range(n)],
            C.EVENT_TYPE: [kinds[i % 3] for i in range(n)],
            C.POSITION: [str(i % 10) for i in range(n)],
            C.RATING: ["5" if kinds[i % 3] == "rating" else "" for i in range(n)],
            C.ARM: ["graph"] * n,
            C.LIST_VERSION: ["v1"] * n,
            C.VARIANT: ["treatment"] * n,
            C.SEGMENT: ["power"] * n,
            C.DAYPART: ["night"] * n,
            C.PROPENSITY: ["0.4"] * n,
        }
    )
    for column, values in overrides.items():
        frame[column] = values
    return frame


def land(settings: Settings, day: date, frame: pd.DataFrame, name: str = "app-0001.csv") -> None:
    Lake(settings.home).write_bytes(Dataset.LANDING_FEEDBACK, day, name, frame.to_csv(index=False).encode())


def written_files(home: Path, day: date) -> dict[str, bytes]:
    """Every file of every dataset partition for ``day`` (reports/ excluded: GX pages carry times)."""
    out = {}
    for path in sorted(home.rglob(f"run_date={day.isoformat()}/*")):
        if path.is_file() and "landing" not in path.parts:
            out[str(path.relative_to(home))] = path.read_bytes()
    return out


def test_three_nights(settings: Settings, lake_home: Path) -> None:
    lake = Lake(settings.home)
    src = source()
    # --- D1: first night, no landing logs (allowed), all source ratings before the end of D1.
    r1 = ingest_source(settings, D1, src)
    assert r1["first_night"] and r1["items"] == 6
    assert (r1["new_interactions"], r1["interactions_quarantined"], r1["feedback_in"]) == (3, 2, 0)
    q1 = lake.read_df(Dataset.QUARANTINE_INTERACTIONS, D1)
    assert dict(zip(q1[C.SOURCE_ROW], q1[C.QUARANTINE_REASON], strict=True)) == {
        2: f"unknown:{C.ITEM_ID}",
        3: f"ancient:{C.TS}",
    }
    assert lake.read_df(Dataset.INTERACTIONS, D1)[C.ITEM_ID].tolist() == [1, 2, 4]
    docs = lake_home / "reports" / "gx"
    assert (docs / "index.html").is_file()
    assert {p.parent.name for p in docs.glob("validations/*/*/*")} == {"raw", "typed"}
    assert any(docs.glob("validations/feedback/typed/2026-03-09-landing-2026-03-09/*/*.html"))

    # --- D2: the D2 source delta (2 rows) + 9 events, one of them late (2 days) and one too old.
    fb = events(D2, 9, "d2")
    fb.loc[3, C.EVENT_TS] = "2026-03-08T09:00:00+00:00"  # late, inside the 3-day window: accepted
    fb.loc[4, C.EVENT_TS] = "2026-03-01T09:00:00+00:00"  # older than the window: quarantined
    land(settings, D2, fb)
    r2 = ingest_source(settings, D2, src)
    assert (r2["new_interactions"], r2["feedback_accepted"], r2["feedback_quarantined"]) == (2, 8, 1)
    assert r2["feedback_late_accepted"] == 1
    summary = lake.read_json(Dataset.VALIDATION, D2, SUMMARY_FILE)
    assert summary["interactions"]["rows_in"] == 2  # only the delta was validated
    assert summary["feedback"]["reasons"] == {f"too_old:{C.EVENT_TS}": 1}
    # interactions(D2) = interactions(D1) (3) + delta (2) + rating events (rows 2, 5, 8) = 8
    inter2 = lake.read_df(Dataset.INTERACTIONS, D2)
    assert len(inter2) == r2["interactions_total"] == 8
    assert r2["ratings_from_feedback"] == 3
    feedback2 = lake.read_df(Dataset.FEEDBACK_EVENTS, D2)
    assert sorted(feedback2[C.EVENT_ID]) == sorted(f"d2-{i}" for i in range(9) if i != 4)
    seen = lake.read_df(Dataset.VALIDATION, D2, parts=[SEEN_PART])
    assert len(seen) == 8

    # --- D3: a re-sent D2 event is a duplicate across days; a new user is unknown.
    fb3 = events(D3, 9, "d3")
    fb3.loc[0, C.EVENT_ID] = "d2-1"
    fb3.loc[1, C.USER_ID] = "42"
    land(settings, D3, fb3)
    r3 = ingest_source(settings, D3, src)
    q3 = lake.read_df(Dataset.QUARANTINE_FEEDBACK, D3)
    assert dict(zip(q3[C.SOURCE_ROW], q3[C.QUARANTINE_REASON], strict=True)) == {
        0: f"seen_before:{C.EVENT_ID}",
        1: f"unknown:{C.USER_ID}",
    }
    assert r3["feedback_in"] == r3["feedback_accepted"] + r3["feedback_quarantined"] == 9
    assert r3["new_interactions"] == 0  # the 03-12 rating is not due yet
    # seen(D3) = the 8 ids of D2 (all stamped >= 03-08 = start(D3) - 3 days) + the 7 accepted on D3
    assert len(lake.read_df(Dataset.VALIDATION, D3, parts=[SEEN_PART])) == 15

    # --- idempotence: rerunning D2 after D3 rewrites the same bytes.
    before = written_files(lake_home, D2)
    assert before
    ingest_source(settings, D2, src)
    assert written_files(lake_home, D2) == before


def test_seen_ids_are_pruned_to_the_late_window(lake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    settings = load_settings(home=str(lake_home), ingest={"late_window_days": 0})
    lake = Lake(settings.home)
    ingest_source(settings, D1, source())
    land(settings, D2, events(D2, 6, "d2"))
    ingest_source(settings, D2, source())
    land(settings, D3, events(D3, 6, "d3"))
    ingest_source(settings, D3, source())
    seen = lake.read_df(Dataset.VALIDATION, D3, parts=[SEEN_PART])
    assert sorted(seen[C.EVENT_ID]) == sorted(f"d3-{i}" for i in range(6))


def test_missing_landing_after_first_night_fails_and_writes_nothing(settings: Settings) -> None:
    lake = Lake(settings.home)
    ingest_source(settings, D1, source())
    with pytest.raises(ValidationFailed, match="no feedback landed"):
        ingest_source(settings, D2, source())
    for dataset in (Dataset.ITEMS, Dataset.INTERACTIONS, Dataset.FEEDBACK_EVENTS, Dataset.VALIDATION):
        assert not lake.has(dataset, D2) and not lake.exists(Dataset.VALIDATION, D2, SUMMARY_FILE)


def test_volume_collapse(settings: Settings) -> None:
    lake = Lake(settings.home)
    ingest_source(settings, D1, source())
    land(settings, D2, events(D2, 30, "d2"))
    ingest_source(settings, D2, source())
    # 20% of the trailing median 30 is 6: five events are a collapse.
    land(settings, D3, events(D3, 5, "d3"))
    with pytest.raises(ValidationFailed, match=r"volume collapse: 5 rows, fewer than the floor 6"):
        ingest_source(settings, D3, source())
    assert not lake.has(Dataset.INTERACTIONS, D3) and not lake.has(Dataset.FEEDBACK_EVENTS, D3)
    # Six events pass the floor.
    land(settings, D3, events(D3, 6, "d3"))
    assert ingest_source(settings, D3, source())["feedback_accepted"] == 6


def test_wrong_schema_in_landing_fails(settings: Settings) -> None:
    ingest_source(settings, D1, source())
    land(settings, D2, events(D2, 6, "d2").drop(columns=[C.SEGMENT]))
    with pytest.raises(ValidationFailed, match=r"missing columns \['segment'\]"):
        ingest_source(settings, D2, source())
    assert not Lake(settings.home).has(Dataset.INTERACTIONS, D2)


def test_zero_byte_landing_is_an_empty_day(settings: Settings) -> None:
    lake = Lake(settings.home)
    lake.write_bytes(Dataset.LANDING_FEEDBACK, D1, "app.csv", b"")
    assert ingest_source(settings, D1, source())["feedback_in"] == 0  # allowed on the first night
    lake.write_bytes(Dataset.LANDING_FEEDBACK, D2, "app.csv", b"")
    with pytest.raises(ValidationFailed, match="no rows"):
        ingest_source(settings, D2, source())


def test_landing_files_must_agree_on_columns(settings: Settings) -> None:
    ingest_source(settings, D1, source())
    land(settings, D2, events(D2, 3, "a"), "a.csv")
    land(settings, D2, events(D2, 3, "b").drop(columns=[C.ARM]), "b.csv")
    with pytest.raises(ValidationFailed, match=r"b\.csv") as info:
        ingest_source(settings, D2, source())
    assert "every landing file of a day must have the same columns" in str(info.value)


def test_landing_files_of_a_day_are_concatenated(settings: Settings) -> None:
    import pyarrow as pa

    lake = Lake(settings.home)
    ingest_source(settings, D1, source())
    land(settings, D2, events(D2, 4, "a"), "a.csv")
    typed = events(D2, 3, "b")
    typed[C.EVENT_TS] = pd.to_datetime(typed[C.EVENT_TS], utc=True)
    typed[C.RATING] = pd.to_numeric(typed[C.RATING])
    lake.write_table(Dataset.LANDING_FEEDBACK, D2, pa.Table.from_pandas(typed, preserve_index=False))
    result = ingest_source(settings, D2, source())
    assert (result["feedback_in"], result["feedback_accepted"]) == (7, 7)
    assert lake.read_json(Dataset.VALIDATION, D2, SUMMARY_FILE)["feedback"]["landing_files"] == [
        "a.csv",
        "part-0.parquet",
    ]


def test_ingest_with_the_csv_loader(tmp_path: Path, lake_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real entry point: ``ingest(settings, D)`` loads the configured source itself."""
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    data = tmp_path / "src"
    data.mkdir()
    (data / "ratings.csv").write_text(
        "user_id,item_id,rating,timestamp\n1,1,8,1773014400\n2,2,11,1773018000\n2,1,6,1773021600\n"
    )
    (data / "items.csv").write_text(
        "item_id,title,genres\n1,Alpha (1990),Anime|Drama\n2,Beta (2001),Comedy\n"
    )
    settings = load_settings(
        home=str(lake_home),
        source={"dataset": "csv", "path": str(data), "rating_min": 1, "rating_max": 10},
    )
    result = ingest(settings, "2026-03-09")
    assert (result["new_interactions"], result["interactions_quarantined"]) == (2, 1)
    q = Lake(settings.home).read_df(Dataset.QUARANTINE_INTERACTIONS, D1)
    assert q[C.QUARANTINE_REASON].tolist() == [f"out_of_range:{C.RATING}"] and q[C.RATING].tolist() == [
        "11.0"
    ]


def test_cli_validate(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ingest_source(settings, D1, source())
    good = tmp_path / "good.csv"
    # user 3's only rating on D1 was quarantined, so users 1 and 2 are the known ones.
    known = {C.USER_ID: ["1", "2"] * 3}
    events(D2, 6, "g", **known).to_csv(good, index=False)
    assert cli_main(["validate", str(good), "--kind", "feedback", "--run-date", D2.isoformat()]) == 0
    assert "rows in 6 = accepted 6 + quarantined 0" in capsys.readouterr().out

    bad = tmp_path / "bad.csv"
    events(D2, 6, "b", **known, **{C.DAYPART: ["night", "brunch", *["night"] * 4]}).to_csv(bad, index=False)
    assert cli_main(["validate", str(bad), "--kind", "feedback", "--run-date", D2.isoformat()]) == 1
    out = capsys.readouterr().out
    assert f"bad_value:{C.DAYPART}" in out and "row 1: daypart='brunch'" in out
    q = Lake(settings.home).read_df(Dataset.QUARANTINE_FEEDBACK, D2, parts=["validate-bad"])
    assert q[C.SOURCE_ROW].tolist() == [1]

    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"PAR1" + bytes(range(256)))
    assert cli_main(["validate", str(garbage), "--kind", "feedback"]) == 2
    assert "not a readable Parquet" in capsys.readouterr().out


@pytest.mark.slow
def test_cli_entry_point(tmp_path: Path) -> None:
    """The installed console script runs the command (exit code 2 on an empty file)."""
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    exe = Path(sys.executable).with_name("deepcuts")
    proc = subprocess.run(
        [str(exe), "validate", str(empty), "--kind", "items"],
        capture_output=True,
        text=True,
        env={"DEEPCUTS_HOME": str(tmp_path / "lake"), "PATH": ""},
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "missing columns" in proc.stdout


def test_feedback_schema_matches_contract() -> None:
    assert events(D2, 3, "x").columns.tolist() == FEEDBACK_SCHEMA.names


def test_a_stray_quote_in_landing_loses_no_event(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14, finding 2: 1,343 events with a stray quote at row 1000 (was: 1000 in = 1000 + 0)."""
    ingest_source(settings, D1, source())
    start = pd.Timestamp(D2.isoformat(), tz="UTC")
    fb = events(D2, 1343, "q", **{C.USER_ID: ["1", "2", "1"] * 447 + ["2", "1"]})
    fb[C.EVENT_TS] = [(start + pd.Timedelta(minutes=i)).isoformat() for i in range(1343)]
    lines = fb.to_csv(index=False).splitlines()
    lines[1001] = lines[1001].replace(",night,", ',"night,')
    payload = ("\n".join(lines) + "\n").encode()
    Lake(settings.home).write_bytes(Dataset.LANDING_FEEDBACK, D2, "app.csv", payload)
    result = ingest_source(settings, D2, source())
    assert (result["feedback_in"], result["feedback_accepted"], result["feedback_quarantined"]) == (
        1343,
        1342,
        1,
    )
    q = Lake(settings.home).read_df(Dataset.QUARANTINE_FEEDBACK, D2)
    assert q[[C.SOURCE_ROW, C.QUARANTINE_REASON, C.SOURCE_LINE, C.RAW_LINE]].values.tolist() == [
        [1000, "malformed_line", "1002", lines[1001]]
    ]
    path = tmp_path / "stray.csv"
    path.write_bytes(payload)
    assert cli_main(["validate", str(path), "--kind", "feedback", "--run-date", D2.isoformat()]) == 1
    out = capsys.readouterr().out
    assert "rows in 1343 = accepted 1342 + quarantined 1" in out and "malformed_line" in out


# --- one rule set for ingest and `deepcuts validate` (issue 14, finding 4) ------------------------------
HOSTILE = {
    1: ({C.LIST_VERSION: "v\x001"}, f"bad_encoding:{C.LIST_VERSION}"),
    2: ({C.EVENT_ID: "h-\x002"}, f"bad_encoding:{C.EVENT_ID}"),
    3: ({C.EVENT_ID: "h-3\u00ff"}, f"bad_encoding:{C.EVENT_ID}"),  # written as the lone byte 0xff
    5: ({C.EVENT_TS: "2026-03-12T10:00:00+00:00"}, f"future:{C.EVENT_TS}"),
    6: ({C.EVENT_TS: "1773100800000"}, f"epoch_unit:{C.EVENT_TS}"),  # 2026-03-10 in milliseconds
    7: ({C.USER_ID: str(2**62)}, f"unknown:{C.USER_ID}"),  # a valid id, just not a known user
    8: ({C.USER_ID: str(2**63)}, f"bad_type:{C.USER_ID}"),  # outside int64
    9: ({C.ITEM_ID: "3.5"}, f"bad_type:{C.ITEM_ID}"),
}


LATIN_Y = "\u00ff".encode()


def hostile_file(fmt: str) -> bytes:
    """14 events of D2 by known users, rows 1-9 broken as in HOSTILE (row 4: a stray quote, CSV only)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = events(D2, 14, "h", **{C.USER_ID: ["1", "2"] * 7})
    for row, (values, _) in HOSTILE.items():
        for column, value in values.items():
            frame.loc[row, column] = value
    if fmt == "csv":
        text = frame.to_csv(index=False).replace(",night,", ',"night,', 5)  # row 4 is the 5th data line
        lines = text.splitlines()
        lines[1:5] = [line.replace(',"night,', ",night,") for line in lines[1:5]]
        return ("\n".join(lines) + "\n").encode().replace(LATIN_Y, b"\xff")
    columns = {
        c: pa.array([v.encode().replace(LATIN_Y, b"\xff") if v else None for v in frame[c]]).view(pa.string())
        for c in frame.columns
    }
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ingest_and_validate_give_the_same_verdict_per_row(
    fmt: str,
    lake_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    monkeypatch.setenv("DEEPCUTS_HOME", str(lake_home))
    monkeypatch.setenv("DEEPCUTS_INGEST__MAX_QUARANTINE_SHARE", "1")
    settings = load_settings()
    lake = Lake(settings.home)
    payload = hostile_file(fmt)
    ingest_source(settings, D1, source())
    lake.write_bytes(Dataset.LANDING_FEEDBACK, D2, f"app.{fmt}", payload)
    result = ingest_source(settings, D2, source())
    path = tmp_path / f"hostile.{fmt}"
    path.write_bytes(payload)
    assert cli_main(["validate", str(path), "--kind", "feedback", "--run-date", D2.isoformat()]) == 1
    capsys.readouterr()

    expected = {row: reason for row, (_, reason) in HOSTILE.items()}
    if fmt == "csv":
        expected[4] = "malformed_line"
    nightly = lake.read_df(Dataset.QUARANTINE_FEEDBACK, D2, parts=["part-0"])
    checked = lake.read_df(Dataset.QUARANTINE_FEEDBACK, D2, parts=["validate-hostile"])
    for q in (nightly, checked):
        assert dict(zip(q[C.SOURCE_ROW], q[C.QUARANTINE_REASON], strict=True)) == expected
    assert (result["feedback_in"], result["feedback_accepted"]) == (14, 14 - len(expected))
    # nothing with a NUL reached the canonical table; the quarantine kept the text as it came
    accepted = lake.read_df(Dataset.FEEDBACK_EVENTS, D2)
    assert not accepted.map(lambda v: isinstance(v, str) and "\x00" in v).any().any()
    assert nightly.set_index(C.SOURCE_ROW).loc[6, C.EVENT_TS] == "1773100800000"


def test_nul_in_the_catalog_is_quarantined(settings: Settings) -> None:
    """Issue 14, finding 5: a NUL in a genre or a title would make every PostgreSQL COPY fail at publish."""
    src = source()
    src.items.at[4, C.GENRES] = ["Dra\x00ma"]
    src.items.at[5, C.TITLE] = "Film\x00 6"
    result = ingest_source(settings, D1, src)
    assert (result["items"], result["items_quarantined"]) == (4, 2)
    lake = Lake(settings.home)
    q = lake.read_df(Dataset.QUARANTINE_ITEMS, D1)
    assert dict(zip(q[C.SOURCE_ROW], q[C.QUARANTINE_REASON], strict=True)) == {
        4: f"bad_encoding:{C.GENRES}",
        5: f"bad_encoding:{C.TITLE}",
    }
    items = lake.read_df(Dataset.ITEMS, D1)
    assert items[C.ITEM_ID].tolist() == [1, 2, 3, 4]


def test_future_and_millisecond_source_ratings_are_quarantined_and_counted(
    tmp_path: Path, lake_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rating dated after the wall clock is quarantined every night it is in the source (it was never
    counted); an epoch in ms keeps its source text (it became ``ancient:ts`` 1970-08-04)."""
    import deepcuts.pipelines.ingest as ingest_module

    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    monkeypatch.setattr(ingest_module, "now", lambda: pd.Timestamp("2026-03-20", tz="UTC"))
    data = tmp_path / "src"
    data.mkdir()
    day1 = int(pd.Timestamp("2026-03-09T08:00", tz="UTC").timestamp())
    (data / "ratings.csv").write_text(
        "user_id,item_id,rating,timestamp\n"
        f"1,1,4,{day1}\n"  # accepted on D1
        "2,1,3,4102444800\n"  # 2100-01-01: future
        f"3,1,3,{day1 * 1000}\n"  # milliseconds
        f"4,1,5,{day1 + 86400}\n"  # 2026-03-10: pending on D1, accepted on D2
    )
    (data / "items.csv").write_text("item_id,title,genres\n1,Alpha (1990),Drama\n")
    settings = load_settings(
        home=str(lake_home), source={"dataset": "csv", "path": str(data)}, ingest={"max_quarantine_share": 1}
    )
    result = ingest(settings, D1)
    lake = Lake(settings.home)
    q = lake.read_df(Dataset.QUARANTINE_INTERACTIONS, D1)
    assert q[[C.SOURCE_ROW, C.QUARANTINE_REASON, C.TS]].values.tolist() == [
        [1, f"future:{C.TS}", "2100-01-01T00:00:00+00:00"],
        [2, f"epoch_unit:{C.TS}", str(day1 * 1000)],
    ]
    summary = lake.read_json(Dataset.VALIDATION, D1, SUMMARY_FILE)["interactions"]
    assert (summary["rows_in"], summary["accepted"], summary["quarantined"], summary["pending_rows"]) == (
        3,
        1,
        2,
        1,
    )
    assert result["new_interactions"] == 1
    # the next night the pending rating is due and the future one is still quarantined (and counted)
    land(settings, D2, events(D2, 3, "d2", **{C.USER_ID: ["1"] * 3, C.ITEM_ID: ["1"] * 3}))
    result2 = ingest(settings, D2)
    assert (result2["new_interactions"], result2["interactions_quarantined"]) == (1, 1)


def test_ingest_marks_its_canonical_partitions_complete(settings: Settings) -> None:
    ingest_source(settings, D1, source())
    lake = Lake(settings.home)
    for dataset in (Dataset.ITEMS, Dataset.INTERACTIONS, Dataset.FEEDBACK_EVENTS):
        assert lake.require_complete(dataset, D1) == ["part-0"]


def test_validating_the_source_in_slices_writes_the_same_night(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ingest.validate_chunk_rows`` bounds memory only: 2-row slices of the first night's 5 source
    ratings (2 quarantined) write the same bytes and the same summary as one batch."""
    monkeypatch.delenv("DEEPCUTS_CONFIG", raising=False)
    homes = {}
    for rows in (1_000, 2):
        home = tmp_path / f"lake-{rows}"
        home.mkdir()
        result = ingest_source(
            load_settings(home=str(home), ingest={"validate_chunk_rows": rows}), D1, source()
        )
        assert (result["new_interactions"], result["interactions_quarantined"]) == (3, 2)
        homes[rows] = home
    assert written_files(homes[2], D1) == written_files(homes[1_000], D1)
