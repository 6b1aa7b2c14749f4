"""The data lake: the only module that knows paths.

Layout: ``<root>/<dataset>/run_date=YYYY-MM-DD/<part>.parquet`` where ``<part>`` may contain ``/``
(e.g. ``svd/shard-0003``) so sharded tasks write side by side. The root is a local folder or any
URI pyarrow understands (``s3://bucket/prefix``, ``gs://...``), so workers on other machines share it.

Writes are atomic: a file is written under a hidden temporary name (``.tmp-...``) in its final folder
and then moved into place. Readers list only visible ``*.parquet`` files, so they never see a
half-written file. Re-writing a part for the same run date replaces it: every step is idempotent. A
writer killed mid-write leaves its temporary file behind; the next write into that folder removes
temporary files older than ``STALE_TMP_MINUTES``.

Completeness: atomic files do not make a complete partition (a task killed after 5 of its 7 arms
leaves 5 good files). A step that finishes calls :meth:`Lake.mark_complete` (or
:meth:`Lake.mark_all_complete` for every partition it wrote), which writes a manifest
``_manifests/<scope>.json`` listing every part it wrote with its rows and bytes, and every other file
(JSON, model artefacts) with its bytes; a downstream step calls :meth:`Lake.require_complete` (or
:meth:`Lake.require_inputs`), which raises :class:`IncompleteDataError` unless that manifest exists and
everything it lists is there with the same size. A step that runs once per user shard writes the scope
``shard-NNNN`` with the shard count; the scope ``all`` of such a partition means every shard.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from deepcuts.contracts import SCHEMAS, Dataset

PARQUET = ".parquet"
_HIDDEN_PREFIXES = (".", "_")
_TMP_PREFIX = ".tmp-"
#: A temporary file older than this belongs to a writer that died: a live one exists only while its
#: bytes are written (seconds), so an hour leaves a wide margin even on a slow object store.
STALE_TMP_MINUTES = 60
#: Folder (hidden from readers) of a partition's completeness manifests, one JSON file per scope.
MANIFEST_DIR = "_manifests"


class MissingDataError(FileNotFoundError):
    """A step asked for a dataset partition that an upstream step has not written."""


class IncompleteDataError(MissingDataError):
    """A partition exists but the step that writes it did not finish (no manifest, or parts missing)."""


class ContractError(ValueError):
    """A table does not match its dataset's contract."""


def as_run_date(run_date: date | str) -> date:
    """A run date given as a ``date`` or ISO text (Airflow passes ``ds`` as text) as a ``date``."""
    return run_date if isinstance(run_date, date) else date.fromisoformat(str(run_date))


class Lake:
    """Parquet datasets partitioned by run date, under one root."""

    def __init__(self, root: str | Path) -> None:
        root = str(root)
        if "://" in root:
            self.fs, path = pafs.FileSystem.from_uri(root)
            self.root = path.rstrip("/")
        else:
            self.fs = pafs.LocalFileSystem()
            self.root = str(Path(root).expanduser().resolve())
        self.uri = root
        # Parts (and, with their extension, other files) written through this instance, per partition,
        # with their rows (None for a file that is not a table): what mark_complete lists.
        self._written: dict[tuple[Dataset, date], dict[str, int | None]] = {}
        self._swept: set[str] = set()

    def __repr__(self) -> str:
        return f"Lake({self.uri!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    # ---------------------------------------------------------------- paths
    def dataset_dir(self, dataset: Dataset | str) -> str:
        return f"{self.root}/{Dataset(dataset).value}"

    def partition_dir(self, dataset: Dataset | str, run_date: date | str) -> str:
        return f"{self.dataset_dir(dataset)}/run_date={as_run_date(run_date).isoformat()}"

    def file_path(self, dataset: Dataset | str, run_date: date | str | None, name: str) -> str:
        """Path of a file inside a partition, or at the dataset's top level when ``run_date`` is None
        (for the few files that span run dates, such as the report index)."""
        if ".." in Path(name).parts or name.startswith("/"):
            raise ValueError(f"part name {name!r} must be a relative path inside the partition")
        folder = self.dataset_dir(dataset) if run_date is None else self.partition_dir(dataset, run_date)
        return f"{folder}/{name}"

    def local_dir(self, dataset: Dataset | str, run_date: date | str | None = None) -> Path:
        """A local folder for libraries that insist on a filesystem path (GX Data Docs, reports)."""
        if not self.is_local:
            raise ValueError(f"{self} is not on the local filesystem; use the byte/table API instead")
        path = Path(self.partition_dir(dataset, run_date) if run_date else self.dataset_dir(dataset))
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---------------------------------------------------------------- writes
    def _sweep_stale_tmp(self, folder: str) -> None:
        """Delete temp files older than ``STALE_TMP_MINUTES`` in ``folder`` (once per Lake and folder)."""
        if folder in self._swept:
            return
        self._swept.add(folder)
        cutoff = time.time() - 60 * STALE_TMP_MINUTES
        for info in self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            stale = info.mtime is not None and info.mtime.timestamp() < cutoff
            if info.type == pafs.FileType.File and info.base_name.startswith(_TMP_PREFIX) and stale:
                with contextlib.suppress(FileNotFoundError):  # another writer swept it first
                    self.fs.delete_file(info.path)

    def _atomic_write(self, final: str, payload: bytes | Callable[[pa.NativeFile], None]) -> str:
        """Write ``payload`` (bytes, or a function writing into the open stream) to ``final`` atomically."""
        parent, _, base = final.rpartition("/")
        self.fs.create_dir(parent, recursive=True)
        self._sweep_stale_tmp(parent)
        tmp = f"{parent}/{_TMP_PREFIX}{uuid.uuid4().hex}-{base}"
        with self.fs.open_output_stream(tmp) as out:
            if callable(payload):
                payload(out)
            else:
                out.write(payload)
        # A rename within one folder is atomic on POSIX; on object stores the upload itself is atomic.
        self.fs.move(tmp, final)
        return final

    def write_table(
        self,
        dataset: Dataset | str,
        run_date: date | str,
        data: pd.DataFrame | pa.Table,
        part: str = "part-0",
    ) -> str:
        """Atomically write one part of a partition, enforcing the dataset's schema if it has one."""
        dataset = Dataset(dataset)
        table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        schema = SCHEMAS.get(dataset)
        if schema is not None:
            table = conform(table, schema, where=f"{dataset.value} ({run_date})")
        # straight into the temporary file: no copy of the file's bytes in memory (big tables)
        path = self._atomic_write(
            self.file_path(dataset, run_date, part + PARQUET),
            lambda out: pq.write_table(
                table, out, compression="zstd", use_dictionary=_dictionary_columns(table.schema)
            ),
        )
        self._written.setdefault((dataset, as_run_date(run_date)), {})[part] = table.num_rows
        return path

    # ---------------------------------------------------------------- completeness
    def mark_complete(
        self,
        dataset: Dataset | str,
        run_date: date | str,
        scope: str = "all",
        parts: Iterable[str] | None = None,
        *,
        shards: int | None = None,
    ) -> str:
        """Write the manifest of ``scope`` (e.g. ``shard-0003``): the parts written, with rows and bytes.

        ``parts`` defaults to every part this Lake wrote into the partition (and ``files``, the other
        files it wrote there, e.g. ``summary.json``); call it last, when the step has written everything
        (a step killed before never gets a manifest). ``shards``: the partition is written by that many
        per-shard tasks, each with its own scope ``shard-NNNN`` (what ``require_complete(scope="all")``
        then checks).
        """
        dataset, day = Dataset(dataset), as_run_date(run_date)
        written = self._written.get((dataset, day), {})
        names = sorted(n for n in written if not n.startswith(f"{MANIFEST_DIR}/")) if parts is None else parts
        listing: dict[str, dict[str, Any]] = {}
        files: dict[str, dict[str, Any]] = {}
        for name in sorted(names):
            table = parts is not None or written.get(name) is not None
            info = self.fs.get_file_info(self.file_path(dataset, day, name + PARQUET if table else name))
            if info.type != pafs.FileType.File:
                raise MissingDataError(f"cannot mark {dataset.value} ({day}) complete: {name} is missing")
            if table:
                listing[name] = {"rows": written.get(name), "bytes": info.size}
            else:
                files[name] = {"bytes": info.size}
        manifest: dict[str, Any] = {
            "dataset": dataset.value,
            "run_date": day.isoformat(),
            "scope": scope,
            "parts": listing,
        }
        if files:
            manifest["files"] = files
        if shards is not None:
            manifest["shards"] = int(shards)
        return self.write_json(dataset, day, f"{MANIFEST_DIR}/{scope}.json", manifest)

    def mark_all_complete(self, scope: str = "all", *, shards: int | None = None) -> list[str]:
        """:meth:`mark_complete` for every partition this Lake wrote into (a step's last call)."""
        return [self.mark_complete(ds, day, scope, shards=shards) for ds, day in sorted(self._written)]

    def require_complete(self, dataset: Dataset | str, run_date: date | str, scope: str = "all") -> list[str]:
        """The parts of ``scope``'s manifest; raises :class:`IncompleteDataError` when the step that writes
        them did not finish: no manifest, or a listed part or file missing or of another size (rewritten
        by a run that did not finish). ``all`` on a partition written per shard means every shard's
        manifest (the shard count is in each)."""
        dataset, day = Dataset(dataset), as_run_date(run_date)
        name = f"{MANIFEST_DIR}/{scope}.json"
        where = f"{dataset.value} ({day}, {scope})"
        step = _STEP_OF.get(dataset, "upstream")
        if scope == "all" and not self.exists(dataset, day, name):
            shards = self._shard_count(dataset, day)
            if shards is not None:
                scopes = [f"shard-{k:04d}" for k in range(shards)]
                return sorted(p for s in scopes for p in self.require_complete(dataset, day, s))
        folder = self.partition_dir(dataset, day)
        if self.fs.get_file_info(folder).type == pafs.FileType.NotFound:
            raise MissingDataError(
                f"no data in {dataset.value} for run date {day} (looked in {folder}); run the step that "
                f"produces it first ({step})"
            )
        if not self.exists(dataset, day, name):
            raise IncompleteDataError(
                f"{where} is incomplete: no manifest {self.file_path(dataset, day, name)}, so the step that "
                f"writes it did not finish; rerun the {step} step for it"
            )
        manifest = self.read_json(dataset, day, name)
        listing = manifest["parts"]
        expected = [(part, part + PARQUET, entry) for part, entry in listing.items()]
        expected += [(file, file, entry) for file, entry in manifest.get("files", {}).items()]
        problems = []
        for label, file, entry in sorted(expected):
            info = self.fs.get_file_info(self.file_path(dataset, day, file))
            if info.type != pafs.FileType.File:
                problems.append(f"{label} is missing")
            elif info.size != entry["bytes"]:
                problems.append(
                    f"{label} changed since the manifest ({info.size} bytes, listed {entry['bytes']})"
                )
        if problems:
            raise IncompleteDataError(
                f"{where} is incomplete: {'; '.join(problems)}; rerun the {step} step for it"
            )
        return sorted(listing)

    def require_inputs(self, run_date: date | str, *datasets: Dataset, missing_ok: bool = False) -> None:
        """:meth:`require_complete` (scope ``all``) for each of a step's input partitions of ``run_date``.

        ``missing_ok``: a partition with no parts and no manifest passes (an optional input the step
        handles when absent); one with parts must still be complete.
        """
        for dataset in datasets:
            absent = not self.parts(dataset, run_date) and not self.exists(
                dataset, run_date, f"{MANIFEST_DIR}/all.json"
            )
            if not (missing_ok and absent):
                self.require_complete(dataset, run_date)

    def _shard_count(self, dataset: Dataset, day: date) -> int | None:
        """The shard count recorded in the partition's shard manifests (None: not written per shard).

        Manifests that disagree (a rerun with another shard count, not finished) make it incomplete.
        """
        folder = self.file_path(dataset, day, MANIFEST_DIR)
        counts = set()
        for info in self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
            if info.base_name.startswith("shard-") and info.base_name.endswith(".json"):
                shards = self.read_json(dataset, day, f"{MANIFEST_DIR}/{info.base_name}").get("shards")
                if shards is not None:
                    counts.add(int(shards))
        if len(counts) > 1:
            raise IncompleteDataError(
                f"{dataset.value} ({day}) is incomplete: its shard manifests disagree on the shard count "
                f"{sorted(counts)} (a rerun with another count did not finish); rerun the "
                f"{_STEP_OF.get(dataset, 'upstream')} step for every shard"
            )
        return counts.pop() if counts else None

    def write_bytes(
        self, dataset: Dataset | str, run_date: date | str | None, name: str, payload: bytes
    ) -> str:
        path = self._atomic_write(self.file_path(dataset, run_date, name), payload)
        if run_date is not None:
            self._written.setdefault((Dataset(dataset), as_run_date(run_date)), {})[name] = None
        return path

    def write_json(self, dataset: Dataset | str, run_date: date | str | None, name: str, obj: Any) -> str:
        text = json.dumps(obj, indent=2, sort_keys=True, default=str)
        return self.write_bytes(dataset, run_date, name, text.encode())

    def delete_partition(self, dataset: Dataset | str, run_date: date | str) -> None:
        path = self.partition_dir(dataset, run_date)
        if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
            self.fs.delete_dir(path)

    # ---------------------------------------------------------------- reads
    def _visible_files(self, folder: str) -> list[str]:
        if self.fs.get_file_info(folder).type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(folder, recursive=True))
        files = []
        for info in infos:
            rel = info.path[len(folder) + 1 :]
            if info.type != pafs.FileType.File or not rel.endswith(PARQUET):
                continue
            if any(piece.startswith(_HIDDEN_PREFIXES) for piece in rel.split("/")):
                continue
            files.append(info.path)
        return sorted(files)

    def parts(self, dataset: Dataset | str, run_date: date | str, subdir: str = "") -> list[str]:
        """Visible part names (without ``.parquet``) of one partition, optionally under a sub-folder."""
        folder = self.partition_dir(dataset, run_date)
        base = f"{folder}/{subdir}".rstrip("/")
        return [p[len(folder) + 1 : -len(PARQUET)] for p in self._visible_files(base)]

    def has(self, dataset: Dataset | str, run_date: date | str, part: str | None = None) -> bool:
        if part is None:
            return bool(self.parts(dataset, run_date))
        path = self.file_path(dataset, run_date, part + PARQUET)
        return self.fs.get_file_info(path).type == pafs.FileType.File

    def read_table(
        self,
        dataset: Dataset | str,
        run_date: date | str,
        *,
        subdir: str = "",
        parts: Iterable[str] | None = None,
        columns: list[str] | None = None,
        filter: pads.Expression | None = None,
    ) -> pa.Table:
        """Read a partition (or some of its parts) as one Arrow table.

        Raises MissingDataError with the path and the step to run when nothing is there.
        """
        dataset = Dataset(dataset)
        folder = self.partition_dir(dataset, run_date)
        if parts is not None:
            files = [self.file_path(dataset, run_date, p + PARQUET) for p in parts]
            missing = [f for f in files if self.fs.get_file_info(f).type != pafs.FileType.File]
            if missing:
                raise MissingDataError(f"missing parts of {dataset.value} for {run_date}: {missing}")
        else:
            files = self._visible_files(f"{folder}/{subdir}".rstrip("/"))
        if not files:
            raise MissingDataError(
                f"no data in {dataset.value} for run date {as_run_date(run_date)} (looked in {folder}"
                f"{'/' + subdir if subdir else ''}); run the step that produces it first"
            )
        schema = SCHEMAS.get(dataset)
        ds = pads.dataset(files, filesystem=self.fs, format="parquet", schema=schema)
        return ds.to_table(columns=columns, filter=filter)

    def constant_in_part(self, dataset: Dataset | str, run_date: date | str, part: str, column: str) -> Any:
        """The one non-null value of ``column`` in a part when its Parquet footer says so (every row
        group with values has statistics with min == max), read without the column itself; ``None``
        when the footer cannot tell (several values, no statistics, only nulls): read the column then.

        A writer that truncates long min/max statistics rounds the max up, so min == max is never a
        truncated pair."""
        path = self.file_path(dataset, run_date, part + PARQUET)
        with self.fs.open_input_file(path) as source:
            meta = pq.ParquetFile(source).metadata
        if column not in meta.schema.names:
            return None
        j = meta.schema.names.index(column)
        values = set()
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(j).statistics
            if stats is None or not stats.has_min_max or stats.min != stats.max:
                return None
            values.add(stats.min)
        return values.pop() if len(values) == 1 else None

    def read_df(self, dataset: Dataset | str, run_date: date | str, **kwargs: Any) -> pd.DataFrame:
        return self.read_table(dataset, run_date, **kwargs).to_pandas()

    def read_bytes(self, dataset: Dataset | str, run_date: date | str | None, name: str) -> bytes:
        path = self.file_path(dataset, run_date, name)
        try:
            with self.fs.open_input_stream(path) as stream:
                return stream.read()
        except FileNotFoundError as exc:
            raise MissingDataError(f"missing {path}; run the step that produces it first") from exc

    def read_buffer(self, dataset: Dataset | str, run_date: date | str | None, name: str) -> memoryview:
        """The bytes of a file without copying them into a ``bytes`` object: a memory map of a local
        file, else the file read into one buffer. For large artefacts parsed once (``model.pkl``, whose
        reader copies what it keeps): at ML-1M a candidates shard reads ~230 MB of models, and the
        chunked stream of :meth:`read_bytes` cost ~2x a read into one buffer plus a copy."""
        path = self.file_path(dataset, run_date, name)
        try:
            if self.is_local:
                return memoryview(pa.memory_map(path, "r").read_buffer())
            with self.fs.open_input_file(path) as source:
                return memoryview(source.read_buffer())
        except FileNotFoundError as exc:
            raise MissingDataError(f"missing {path}; run the step that produces it first") from exc

    def read_json(self, dataset: Dataset | str, run_date: date | str | None, name: str) -> Any:
        return json.loads(self.read_bytes(dataset, run_date, name))

    def exists(self, dataset: Dataset | str, run_date: date | str | None, name: str) -> bool:
        return self.fs.get_file_info(self.file_path(dataset, run_date, name)).type == pafs.FileType.File

    def run_dates(self, dataset: Dataset | str) -> list[date]:
        """Run dates that have a partition of ``dataset``, oldest first."""
        folder = self.dataset_dir(dataset)
        if self.fs.get_file_info(folder).type != pafs.FileType.Directory:
            return []
        out = []
        for info in self.fs.get_file_info(pafs.FileSelector(folder)):
            name = info.base_name
            if info.type == pafs.FileType.Directory and name.startswith("run_date="):
                out.append(date.fromisoformat(name.removeprefix("run_date=")))
        return sorted(out)

    def latest_before(self, dataset: Dataset | str, run_date: date | str) -> date | None:
        """The newest run date strictly before ``run_date`` that has data, if any."""
        earlier = [d for d in self.run_dates(dataset) if d < as_run_date(run_date)]
        return earlier[-1] if earlier else None


#: The step to rerun when a dataset's partition is incomplete (for the error message).
_STEP_OF = {
    Dataset.ITEMS: "ingest",
    Dataset.INTERACTIONS: "ingest",
    Dataset.FEEDBACK_EVENTS: "ingest",
    Dataset.QUARANTINE_ITEMS: "ingest",
    Dataset.QUARANTINE_INTERACTIONS: "ingest",
    Dataset.QUARANTINE_FEEDBACK: "ingest",
    Dataset.VALIDATION: "ingest",
    Dataset.MODELS: "train",
    Dataset.CANDIDATES: "candidates",
    Dataset.SCORED: "score",
    Dataset.RERANKED: "score",
    Dataset.LIST_METRICS: "score",
    Dataset.BANDIT_POSTERIOR: "bandit_update",
    Dataset.ASSIGNMENTS: "assign",
    Dataset.BANDIT_POLICY: "assign",
    Dataset.SERVED_LISTS: "assign",
    Dataset.EVAL_OFFLINE: "evaluate",
    Dataset.AB_RESULTS: "ab_analysis",
    Dataset.OPE: "ope",
    Dataset.ALERTS: "monitor",
    Dataset.MONITOR_CHECKS: "monitor",
    Dataset.REPORTS: "report",
}


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth dictionary-encoding in Parquet: all but the floating-point ones.

    Scores and metrics rarely repeat, so Parquet would build a dictionary and then fall back to plain
    encoding; skipping it writes the scored lists 2.5x faster and smaller (docs/benchmarks.md).
    """
    return [field.name for field in schema if not pa.types.is_floating(field.type)]


def conform(table: pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    """Select and cast ``table`` to ``schema``; missing columns or impossible casts are errors."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ContractError(f"{where}: missing columns {missing}; expected {schema.names}")
    try:
        out = table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ContractError(f"{where}: cannot cast to the contract schema: {exc}") from exc
    for field in schema:
        if not field.nullable and out.column(field.name).null_count:
            raise ContractError(f"{where}: column {field.name!r} must not contain nulls")
    return out
