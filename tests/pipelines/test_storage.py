from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from deepcuts.contracts import FEEDBACK_SCHEMA, C, Dataset
from deepcuts.pipelines.storage import (
    STALE_TMP_MINUTES,
    ContractError,
    IncompleteDataError,
    Lake,
    MissingDataError,
)
from deepcuts.settings import Settings

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)


def _interactions(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            C.USER_ID: range(n),
            C.ITEM_ID: range(10, 10 + n),
            C.RATING: [4.0] * n,
            C.TS: pd.to_datetime(["2026-03-01T10:00:00Z"] * n),
        }
    )


def test_round_trip_enforces_the_contract_schema(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write_table(Dataset.INTERACTIONS, D1, _interactions().astype({C.RATING: "int64"}))
    table = lake.read_table(Dataset.INTERACTIONS, D1)
    assert table.schema.field(C.RATING).type == pa.float32()
    assert table.num_rows == 3
    assert lake.run_dates(Dataset.INTERACTIONS) == [D1]


def test_contract_violations_are_clear_errors(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with pytest.raises(ContractError, match=r"missing columns \['ts'\]"):
        lake.write_table(Dataset.INTERACTIONS, D1, _interactions().drop(columns=[C.TS]))
    bad = _interactions()
    bad[C.USER_ID] = ["a", "b", "c"]
    with pytest.raises(ContractError, match="cannot cast"):
        lake.write_table(Dataset.INTERACTIONS, D1, bad)
    assert not lake.has(Dataset.INTERACTIONS, D1)


def test_float_columns_are_written_without_a_dictionary(tmp_path: Path) -> None:
    # scores rarely repeat: a dictionary would be built and abandoned; ids and text keep theirs
    import pyarrow.parquet as pq

    lake = Lake(tmp_path)
    path = lake.write_table(Dataset.INTERACTIONS, D1, _interactions(50))
    meta = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert not any("DICTIONARY" in e for e in encodings[C.RATING])
    assert any("DICTIONARY" in e for e in encodings[C.USER_ID])
    pd.testing.assert_frame_equal(
        lake.read_df(Dataset.INTERACTIONS, D1)[[C.USER_ID, C.RATING]],
        _interactions(50)[[C.USER_ID, C.RATING]].astype({C.RATING: "float32"}),
    )


def test_rewrite_is_idempotent_and_parts_are_separate(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    for _ in range(2):
        lake.write_table(Dataset.INTERACTIONS, D1, _interactions(3), part="svd/shard-0000")
        lake.write_table(Dataset.INTERACTIONS, D1, _interactions(2), part="svd/shard-0001")
    assert lake.parts(Dataset.INTERACTIONS, D1) == ["svd/shard-0000", "svd/shard-0001"]
    assert lake.read_table(Dataset.INTERACTIONS, D1).num_rows == 5
    assert lake.read_table(Dataset.INTERACTIONS, D1, parts=["svd/shard-0001"]).num_rows == 2


def test_readers_never_see_temporary_files(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write_table(Dataset.INTERACTIONS, D1, _interactions(3))
    folder = Path(lake.partition_dir(Dataset.INTERACTIONS, D1))
    # a writer that crashed mid-write leaves only a hidden temp file behind
    (folder / ".tmp-deadbeef-part-1.parquet").write_bytes(b"PAR1 half written")
    assert lake.read_table(Dataset.INTERACTIONS, D1).num_rows == 3
    assert lake.parts(Dataset.INTERACTIONS, D1) == ["part-0"]


def test_missing_partition_names_the_path_and_what_to_do(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    with pytest.raises(MissingDataError, match="run the step that produces it"):
        lake.read_table(Dataset.CANDIDATES, D1)


def test_read_buffer_holds_the_file_bytes_and_names_a_missing_file(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    payload = bytes(range(256)) * 1000
    lake.write_bytes(Dataset.MODELS, D1, "svd/model.pkl", payload)
    buffer = lake.read_buffer(Dataset.MODELS, D1, "svd/model.pkl")
    assert bytes(buffer) == payload == lake.read_bytes(Dataset.MODELS, D1, "svd/model.pkl")
    with pytest.raises(MissingDataError, match="run the step that produces it"):
        lake.read_buffer(Dataset.MODELS, D1, "item_cf/model.pkl")


def test_latest_before_and_json(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write_json(Dataset.VALIDATION, D1, "summary.json", {"ok": True})
    lake.write_json(Dataset.VALIDATION, D2, "summary.json", {"ok": False})
    assert lake.latest_before(Dataset.VALIDATION, D2) == D1
    assert lake.latest_before(Dataset.VALIDATION, D1) is None
    assert lake.read_json(Dataset.VALIDATION, D2, "summary.json") == {"ok": False}


def test_works_through_a_pyarrow_filesystem_uri(tmp_path: Path) -> None:
    # file:// goes through pyarrow's URI resolution, the same code path as s3:// or gs://
    lake = Lake(f"file://{tmp_path}/remote")
    assert not isinstance(lake.fs, pafs.LocalFileSystem) or lake.root.endswith("/remote")
    lake.write_table(Dataset.INTERACTIONS, D1, _interactions())
    assert Lake(f"file://{tmp_path}/remote").read_table(Dataset.INTERACTIONS, D1).num_rows == 3
    assert (tmp_path / "remote" / "canonical" / "interactions" / "run_date=2026-03-01").is_dir()


def test_part_names_cannot_escape_the_partition(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="relative path"):
        Lake(tmp_path).write_table(Dataset.INTERACTIONS, D1, _interactions(), part="../../etc/x")


# --- stale temp files and completeness manifests (issue 14, finding 7) ------------------------------------
def _age(path: Path, minutes: float) -> None:
    then = time.time() - 60 * minutes
    os.utime(path, (then, then))


def test_a_killed_writers_temp_file_is_removed_by_the_next_write_to_its_folder(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.write_table(Dataset.INTERACTIONS, D1, _interactions(3))
    folder = Path(lake.partition_dir(Dataset.INTERACTIONS, D1))
    stale, live = folder / ".tmp-dead-part-1.parquet", folder / ".tmp-busy-part-2.parquet"
    stale.write_bytes(b"PAR1 half written")
    live.write_bytes(b"PAR1 being written right now")
    _age(stale, STALE_TMP_MINUTES + 1)
    _age(live, STALE_TMP_MINUTES - 1)
    Lake(tmp_path).write_table(Dataset.INTERACTIONS, D1, _interactions(2), part="part-3")
    assert not stale.exists() and live.exists()  # a writer may still own a young one


def _candidates(arm: str) -> pa.Table:
    from deepcuts.contracts import CANDIDATES_SCHEMA

    return pa.table(
        {C.USER_ID: [1], C.ITEM_ID: [7], C.RANK: [1], C.SCORE: [0.5], C.ARM: [arm], C.RUN_DATE: [D1]},
        schema=CANDIDATES_SCHEMA,
    )


def test_a_manifest_lists_the_parts_written_and_readers_refuse_an_incomplete_partition(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path)
    for arm in ("svd", "pop"):
        lake.write_table(Dataset.CANDIDATES, D1, _candidates(arm), part=f"{arm}/shard-0000")
    other_task = Lake(tmp_path)
    other_task.write_table(Dataset.CANDIDATES, D1, _candidates("svd"), part="svd/shard-0001")
    with pytest.raises(IncompleteDataError, match=r"no manifest .*shard-0000.*did not finish"):
        lake.require_complete(Dataset.CANDIDATES, D1, "shard-0000")
    lake.mark_complete(Dataset.CANDIDATES, D1, "shard-0000")  # what this Lake wrote there
    # a fresh Lake (another process) sees the same: the parts of the scope, with their rows
    assert Lake(tmp_path).require_complete(Dataset.CANDIDATES, D1, "shard-0000") == [
        "pop/shard-0000",
        "svd/shard-0000",
    ]
    assert lake.parts(Dataset.CANDIDATES, D1) == ["pop/shard-0000", "svd/shard-0000", "svd/shard-0001"]
    # a listed part that vanished, or was rewritten by a run that did not finish, is incomplete
    Path(lake.file_path(Dataset.CANDIDATES, D1, "pop/shard-0000.parquet")).unlink()
    with pytest.raises(IncompleteDataError, match=r"pop/shard-0000.*missing"):
        lake.require_complete(Dataset.CANDIDATES, D1, "shard-0000")
    lake.write_table(Dataset.CANDIDATES, D1, _candidates("pop"), part="pop/shard-0000")
    lake.write_table(
        Dataset.CANDIDATES, D1, pa.concat_tables([_candidates("svd")] * 3), part="svd/shard-0000"
    )
    with pytest.raises(IncompleteDataError, match=r"svd/shard-0000.*changed"):
        lake.require_complete(Dataset.CANDIDATES, D1, "shard-0000")


def test_score_refuses_a_candidates_shard_without_its_manifest(settings: Settings) -> None:
    """5 of 7 arms written, then the candidates task was killed: score used to run on the 5."""
    from deepcuts.pipelines.score import score_shard

    lake = Lake(settings.home)
    for arm in settings.arms.enabled[:5]:
        lake.write_table(Dataset.CANDIDATES, D1, _candidates(arm), part=f"{arm}/shard-0000")
    with pytest.raises(IncompleteDataError, match="rerun the candidates step"):
        score_shard(settings, D1, 0, 1)


def test_candidates_writes_the_manifest_of_its_shard(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    import deepcuts.pipelines.candidates as candidates

    def fake_arm(lake: Lake, day: date, arm: str, users: object, shard: int, *sizes: object) -> int:
        lake.write_table(Dataset.CANDIDATES, day, _candidates(arm), part=candidates.shard_part(arm, shard))
        return 1

    lake = Lake(settings.home)
    lake.write_table(Dataset.INTERACTIONS, D1, _interactions())
    lake.mark_all_complete()  # ingest finished
    monkeypatch.setattr(candidates, "shard_users", lambda *a: np.array([1], dtype=np.int64))
    monkeypatch.setattr(candidates, "_arm_candidates", fake_arm)
    candidates.candidates_shard(settings, D1, 2, 4)
    parts = Lake(settings.home).require_complete(Dataset.CANDIDATES, D1, "shard-0002")
    assert parts == sorted(f"{arm}/shard-0002" for arm in settings.arms.enabled)


def test_all_of_a_partition_written_per_shard_means_every_shard(tmp_path: Path) -> None:
    """Shard tasks mark their own scope with the shard count; a reader of the whole partition (assign,
    evaluate) needs every shard's manifest, and manifests of two runs with other counts are refused."""
    for shard in (0, 2):
        task = Lake(tmp_path)  # one process per mapped task
        task.write_table(Dataset.CANDIDATES, D1, _candidates("svd"), part=f"svd/shard-{shard:04d}")
        task.write_json(Dataset.CANDIDATES, D1, f"notes/shard-{shard}.json", {"shard": shard})
        task.mark_all_complete(f"shard-{shard:04d}", shards=3)
    reader = Lake(tmp_path)
    with pytest.raises(IncompleteDataError, match=r"candidates \(2026-03-01, shard-0001\).*no manifest"):
        reader.require_inputs(D1, Dataset.CANDIDATES)
    last = Lake(tmp_path)
    last.write_table(Dataset.CANDIDATES, D1, _candidates("svd"), part="svd/shard-0001")
    last.mark_all_complete("shard-0001", shards=3)
    assert reader.require_complete(Dataset.CANDIDATES, D1) == [f"svd/shard-{k:04d}" for k in range(3)]
    # files that are not tables are listed with their bytes and checked too
    Path(reader.file_path(Dataset.CANDIDATES, D1, "notes/shard-2.json")).write_text("{}")
    with pytest.raises(IncompleteDataError, match=r"notes/shard-2.json changed since the manifest"):
        reader.require_complete(Dataset.CANDIDATES, D1)
    reader.write_json(Dataset.CANDIDATES, D1, "notes/shard-2.json", {"shard": 2})
    reader.require_complete(Dataset.CANDIDATES, D1)
    stale = Lake(tmp_path)
    stale.write_table(Dataset.CANDIDATES, D1, _candidates("svd"), part="svd/shard-0000")
    stale.mark_all_complete("shard-0000", shards=2)  # a rerun with 2 shards, killed after shard 0
    with pytest.raises(IncompleteDataError, match=r"disagree on the shard count \[2, 3\]"):
        reader.require_complete(Dataset.CANDIDATES, D1)


def test_an_optional_input_may_be_absent_but_not_incomplete(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    lake.require_inputs(D1, Dataset.FEEDBACK_EVENTS, missing_ok=True)  # nothing there: the step copes
    with pytest.raises(MissingDataError, match=r"no data in canonical/feedback_events.*first \(ingest\)"):
        lake.require_inputs(D1, Dataset.FEEDBACK_EVENTS)
    lake.write_table(Dataset.FEEDBACK_EVENTS, D1, FEEDBACK_SCHEMA.empty_table())  # ingest killed here
    with pytest.raises(IncompleteDataError, match=r"no manifest.*rerun the ingest step"):
        lake.require_inputs(D1, Dataset.FEEDBACK_EVENTS, missing_ok=True)
    lake.write_table(Dataset.INTERACTIONS, D1, _interactions())
    with pytest.raises(IncompleteDataError, match=r"canonical/interactions \(2026-03-01, all\)"):
        lake.require_inputs(D1, Dataset.INTERACTIONS, missing_ok=True)
    lake.mark_all_complete()
    lake.require_inputs(D1, Dataset.INTERACTIONS, missing_ok=True)


def test_constant_in_part_reads_the_footer_and_says_none_when_it_cannot_tell(tmp_path: Path) -> None:
    from deepcuts.pipelines.evaluate import _arms_of

    lake = Lake(tmp_path)

    def lists(arms: list[str]) -> pa.Table:
        n = len(arms)
        return pa.table(
            {
                C.USER_ID: pa.array([1] * n, pa.int64()),
                C.ITEM_ID: pa.array(range(n), pa.int64()),
                C.RANK: pa.array(range(1, n + 1), pa.int32()),
                C.SCORE: pa.array([0.5] * n, pa.float32()),
                C.ARM: pa.array(arms, pa.string()),
                C.RUN_DATE: pa.array([D1] * n, pa.date32()),
            }
        )

    lists_of = Dataset.CANDIDATES
    lake.write_table(lists_of, D1, lists(["svd"] * 3), part="a")
    lake.write_table(lists_of, D1, lists(["item_cf", "svd"]), part="b")
    lake.write_table(lists_of, D1, lists([]), part="c")
    lake.write_table(lists_of, D1, lists(["graph"]), part="d")
    got = {p: lake.constant_in_part(lists_of, D1, p, C.ARM) for p in "abcd"}
    assert got == {"a": "svd", "b": None, "c": None, "d": "graph"}
    assert lake.constant_in_part(lists_of, D1, "a", "no_such_column") is None
    # the arms of a partition: from the footer where it tells, from the column where it does not
    assert _arms_of(lake, lists_of, D1) == ["graph", "item_cf", "svd"]
