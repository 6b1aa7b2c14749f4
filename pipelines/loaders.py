"""Dataset loaders: MovieLens files, any delimited ratings file, or a synthetic world -> canonical tables.

Every loader returns a :class:`SourceData` whose two frames follow the canonical contracts
(``ITEMS_SCHEMA`` and ``INTERACTIONS_SCHEMA`` in :mod:`deepcuts.contracts`):

* items: ``item_id`` int64, ``title`` str, ``genres`` Python ``list[str]`` (empty when unknown),
  ``year`` nullable ``Int32`` (from a ``"(1995)"`` suffix of the title, else from a release date);
* interactions: ``user_id`` int64, ``item_id`` int64, ``rating`` float32, ``ts`` ``datetime64[us, UTC]``.

Loaders never drop rows: validation and quarantine are the ingest step's job. A cell that cannot be
parsed becomes a null (``<NA>`` ids -- the id column then has the nullable ``Int64`` dtype --, ``NaN``
ratings) so that ingest can quarantine that row with a reason and conserve counts; a time column with
such cells stays text (ISO 8601 for the good cells, the source text for the bad ones) so the quarantine
shows what the file said. Ids are parsed exactly as 64-bit integers, never through float64.
Unreadable files and missing columns raise :class:`SourceError` saying which file, what was expected and
what to do. Large files are streamed in chunks (``SourceSettings.chunk_rows``) with progress reporting.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from deepcuts.contracts import INTERACTIONS_SCHEMA, ITEMS_SCHEMA, C
from deepcuts.progress import get_logger, progress
from deepcuts.settings import SourceSettings

if TYPE_CHECKING:
    from deepcuts.settings import Settings

log = get_logger(__name__)

#: Kinds accepted by :func:`load_dataset` (same as ``deepcuts.settings.DatasetKind``).
KINDS: tuple[str, ...] = ("ml-100k", "ml-1m", "ml-latest-small", "csv", "synthetic")

TS_DTYPE = "datetime64[us, UTC]"
_YEAR_IN_TITLE = re.compile(r"\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\s*\)\s*$")
_YEAR_ANYWHERE = re.compile(r"(\d{4})")
_MULTI_SEP_STANDIN = "\x1f"  # ASCII unit separator: never present in MovieLens text


class SourceError(ValueError):
    """A source file is missing, unreadable, or lacks a required column."""


@dataclass
class SourceData:
    """A catalog and a rating history in canonical form, plus the rating scale they use."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    rating_min: float
    rating_max: float
    name: str

    def summary(self) -> dict[str, object]:
        """Small JSON-serialisable description (counts, scale, time span)."""
        inter = self.interactions
        return {
            "name": self.name,
            "items": len(self.items),
            "interactions": len(inter),
            "users": int(inter[C.USER_ID].nunique()),
            "rated_items": int(inter[C.ITEM_ID].nunique()),
            "rating_min": self.rating_min,
            "rating_max": self.rating_max,
            "first_ts": None if inter.empty else str(inter[C.TS].min()),
            "last_ts": None if inter.empty else str(inter[C.TS].max()),
        }


# ------------------------------------------------------------------------------------------- entry points
def load_source(settings: Settings) -> SourceData:
    """Load the source configured in ``settings.source`` (kind ``settings.source.dataset``)."""
    return load_dataset(settings.source.dataset, settings.source_path, settings.source)


def load_dataset(kind: str, path: str | Path, options: SourceSettings | None = None) -> SourceData:
    """Load dataset ``kind`` from the folder ``path``.

    ``options`` matter for ``csv`` (file names, separators, column names, rating scale) and give the
    chunk size for every kind; defaults are ``SourceSettings()``.
    """
    options = options or SourceSettings()
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise SourceError(
            f"dataset folder {folder} does not exist or is not a folder (kind {kind!r}); "
            "set source.path (DEEPCUTS_SOURCE__PATH) to the folder holding the files"
        )
    loaders = {
        "ml-100k": _load_ml_100k,
        "ml-1m": _load_ml_1m,
        "ml-latest-small": _load_ml_latest,
        "csv": _load_csv,
        "synthetic": _load_synthetic,
    }
    if kind not in loaders:
        raise SourceError(f"unknown dataset kind {kind!r}; choose one of {list(KINDS)}")
    data = loaders[kind](folder, options)
    log.info(
        "loaded %s from %s: %d items, %d interactions",
        kind,
        folder,
        len(data.items),
        len(data.interactions),
    )
    return data


def load_split(train: str | Path, test: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a fixed train/test split: tab-separated ``user, item, rating, unix time`` without header.

    Used for the Microsoft Recommenders ML-100k split in ``shared/data/ml-100k/splits/``.
    """
    opts = SourceSettings(sep="\t", header=False)
    names = ("user", "item", "rating", "timestamp")
    frames = []
    for path in (Path(train), Path(test)):
        raw = _read_delimited(
            path,
            opts.sep,
            header=False,
            names=names,
            encoding="latin-1",
            options=opts,
            text_columns=names[:2],
        )
        frames.append(_interactions_from(raw, "user", "item", "rating", "timestamp", opts, where=path))
    return frames[0], frames[1]


# --------------------------------------------------------------------------------------- MovieLens kinds
def _load_ml_100k(folder: Path, options: SourceSettings) -> SourceData:
    genre_names = _ml100k_genres(folder / "u.genre")
    raw = _read_delimited(
        folder / "u.data",
        "\t",
        header=False,
        names=("user", "item", "rating", "timestamp"),
        encoding="latin-1",
        options=options,
        text_columns=("user", "item"),
    )
    inter = _interactions_from(raw, "user", "item", "rating", "timestamp", options, where=folder / "u.data")
    names = ("item", "title", "release", "video_release", "url", *genre_names)
    items_raw = _read_delimited(
        folder / "u.item", "|", header=False, names=names, encoding="latin-1", options=options, as_text=True
    )
    flags = items_raw[list(genre_names)].to_numpy(dtype=str) == "1"
    # "unknown" is MovieLens' placeholder for "no genre": it becomes an empty list, as in latest-small.
    real = np.array([g != "unknown" for g in genre_names])
    genres = [[g for g, on in zip(genre_names, row, strict=True) if on] for row in flags & real]
    items = _items_frame(
        items_raw["item"],
        items_raw["title"],
        genres,
        fallback_dates=items_raw["release"],
        where=folder / "u.item",
    )
    return SourceData(items, inter, 1.0, 5.0, "ml-100k")


def _ml100k_genres(path: Path) -> list[str]:
    text = _read_text(path, "latin-1")
    pairs = [line.split("|") for line in text.splitlines() if line.strip()]
    try:
        ordered = sorted(((int(idx), name) for name, idx in pairs), key=lambda p: p[0])
    except ValueError as exc:
        raise SourceError(f"{path}: expected lines 'name|index', got {pairs[:3]!r}") from exc
    names = [name for _, name in ordered]
    if len(names) != 19:
        log.warning("%s lists %d genres (MovieLens 100K has 19)", path, len(names))
    return names


def _load_ml_1m(folder: Path, options: SourceSettings) -> SourceData:
    raw = _read_delimited(
        folder / "ratings.dat",
        "::",
        header=False,
        names=("user", "item", "rating", "timestamp"),
        encoding="latin-1",
        options=options,
        text_columns=("user", "item"),
    )
    inter = _interactions_from(
        raw, "user", "item", "rating", "timestamp", options, where=folder / "ratings.dat"
    )
    movies = _read_delimited(
        folder / "movies.dat",
        "::",
        header=False,
        names=("item", "title", "genres"),
        encoding="latin-1",
        options=options,
        as_text=True,
    )
    genres = _split_genres(movies["genres"], "|")
    items = _items_frame(movies["item"], movies["title"], genres, where=folder / "movies.dat")
    return SourceData(items, inter, 1.0, 5.0, "ml-1m")


def _load_ml_latest(folder: Path, options: SourceSettings) -> SourceData:
    raw = _read_delimited(
        folder / "ratings.csv",
        ",",
        header=True,
        encoding="utf-8",
        options=options,
        text_columns=("userId", "movieId"),
    )
    inter = _interactions_from(
        raw, "userId", "movieId", "rating", "timestamp", options, where=folder / "ratings.csv"
    )
    movies = _read_delimited(
        folder / "movies.csv", ",", header=True, encoding="utf-8", options=options, as_text=True
    )
    _require(movies, ("movieId", "title", "genres"), folder / "movies.csv")
    genres = _split_genres(movies["genres"], "|")
    items = _items_frame(movies["movieId"], movies["title"], genres, where=folder / "movies.csv")
    return SourceData(items, inter, 0.5, 5.0, "ml-latest-small")


# ------------------------------------------------------------------------------------------------ csv
def _load_csv(folder: Path, options: SourceSettings) -> SourceData:
    if options.rating_min >= options.rating_max:
        raise SourceError(
            f"source.rating_min ({options.rating_min}) must be below source.rating_max "
            f"({options.rating_max}); set the rating scale of the csv file"
        )
    ratings_path = folder / options.ratings_file
    raw = _read_delimited(
        ratings_path,
        options.sep,
        header=options.header,
        names=options.ratings_names,
        encoding=options.encoding,
        options=options,
        text_columns=(options.user_col, options.item_col),
    )
    inter = _interactions_from(
        raw,
        options.user_col,
        options.item_col,
        options.rating_col,
        options.timestamp_col or None,
        options,
        where=ratings_path,
    )
    if options.items_file:
        items_path = folder / options.items_file
        items_raw = _read_delimited(
            items_path,
            options.items_sep,
            header=options.items_header,
            names=options.items_names,
            encoding=options.encoding,
            options=options,
            as_text=True,
        )
        wanted = [options.item_id_col, options.title_col]
        if options.genres_col:
            wanted.append(options.genres_col)
        _require(items_raw, wanted, items_path)
        genres = (
            _split_genres(items_raw[options.genres_col], options.genre_sep)
            if options.genres_col
            else [[] for _ in range(len(items_raw))]
        )
        items = _items_frame(
            items_raw[options.item_id_col], items_raw[options.title_col], genres, where=items_path
        )
    else:
        log.info("source.items_file is empty: the catalog is the %s rated item ids", ratings_path.name)
        ids = pd.Series(np.sort(inter[C.ITEM_ID].dropna().unique()))
        items = _items_frame(ids, ids.astype(str).radd("item "), [[] for _ in range(len(ids))])
    name = f"csv:{ratings_path.name}"
    return SourceData(items, inter, float(options.rating_min), float(options.rating_max), name)


# ------------------------------------------------------------------------------------------ synthetic
def _load_synthetic(folder: Path, options: SourceSettings) -> SourceData:
    meta_path = folder / "world.json"
    if not meta_path.exists():
        raise SourceError(
            f"{folder} is not a synthetic world (no world.json); build one with "
            f"`deepcuts generate --out {folder}`"
        )
    meta = json.loads(meta_path.read_text())
    frames = {}
    for name, schema in (("items", ITEMS_SCHEMA), ("interactions", INTERACTIONS_SCHEMA)):
        path = folder / f"{name}.parquet"
        if not path.exists():
            raise SourceError(f"{path} is missing; regenerate the world with `deepcuts generate`")
        try:
            table = pq.read_table(path, schema=schema)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise SourceError(f"{path} is not readable as {name} Parquet: {exc}") from exc
        frames[name] = table
    items = frames["items"].to_pandas()
    items[C.GENRES] = [list(g) if g is not None else [] for g in items[C.GENRES]]
    items[C.YEAR] = items[C.YEAR].astype("Int32")
    items[C.TITLE] = items[C.TITLE].astype("str")
    inter = frames["interactions"].to_pandas()
    inter[C.TS] = inter[C.TS].astype(TS_DTYPE)
    scale = meta.get("rating_scale", {})
    return SourceData(
        items,
        inter,
        float(scale.get("min", 1.0)),
        float(scale.get("max", 5.0)),
        f"synthetic:{meta.get('seed')}",
    )


# ------------------------------------------------------------------------------------------ helpers
def _read_text(path: Path, encoding: str) -> str:
    if not path.is_file():
        raise SourceError(f"missing file {path}; check source.path and the file names")
    try:
        return path.read_text(encoding=encoding)
    except (UnicodeDecodeError, OSError) as exc:
        raise SourceError(f"{path}: cannot read as {encoding} text ({exc}); set source.encoding") from exc


class _SeparatorTranslator(io.TextIOBase):
    """A text stream that replaces a multi-character separator (``::``) by one character on the fly.

    pandas' fast C parser only splits on one character; this keeps ML-1M on the fast path while
    streaming. A read that ends inside a partial separator keeps the tail for the next read.
    """

    def __init__(self, raw: io.TextIOBase, sep: str, standin: str) -> None:
        self._raw, self._sep, self._standin, self._tail = raw, sep, standin, ""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        while True:
            fresh = self._raw.read(size if size and size > 0 else -1)
            data = (self._tail + fresh).replace(self._sep, self._standin)
            self._tail = ""
            if not fresh:  # end of the stream: whatever is left is plain text
                return data
            # Hold back the longest suffix that could be the start of a separator split by this read.
            for k in range(len(self._sep) - 1, 0, -1):
                if data.endswith(self._sep[:k]):
                    data, self._tail = data[:-k], data[-k:]
                    break
            if data:
                return data

    def close(self) -> None:
        self._raw.close()
        super().close()


def _read_delimited(
    path: Path,
    sep: str,
    *,
    header: bool,
    names: tuple[str, ...] | list[str] | None = None,
    encoding: str,
    options: SourceSettings,
    as_text: bool = False,
    text_columns: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Stream a delimited file in chunks of ``options.chunk_rows`` rows and concatenate them.

    ``as_text`` reads every column as text (catalogs: titles with digits, genre flags); otherwise pandas
    infers numbers and the callers coerce. A headerless file without ``names`` gets columns "0", "1", ...
    """
    if not path.is_file():
        raise SourceError(f"missing file {path}; check source.path and the file names")
    if path.stat().st_size == 0:
        raise SourceError(f"{path} is empty; expected a delimited file with data rows")
    handle: io.TextIOBase = path.open("r", encoding=encoding, errors="strict", newline="")
    shown_sep = sep
    if len(sep) > 1:
        handle = _SeparatorTranslator(handle, sep, _MULTI_SEP_STANDIN)
        sep = _MULTI_SEP_STANDIN
    kwargs: dict = {
        "sep": sep,
        "header": 0 if header else None,
        "chunksize": options.chunk_rows,
        "engine": "c",
        "quotechar": '"',
        "skipinitialspace": False,
        "keep_default_na": False,
        "na_values": [""],
    }
    if names is not None:
        kwargs["names"] = list(names)
        if header:
            kwargs["header"] = 0
    if as_text:
        kwargs["dtype"] = str
    elif text_columns:
        # Ids are read as text and parsed exactly by _ids: inferred, a column with one "1.5" or "abc"
        # cell would be float64 and lose every id above 2^53.
        positional = names is None and not header
        kwargs["dtype"] = {(int(c) if positional and c.isdigit() else c): str for c in text_columns}
    if sep == "|":
        kwargs["quoting"] = 3  # csv.QUOTE_NONE: u.item titles hold bare quotes
    chunks: list[pd.DataFrame] = []
    try:
        with handle:
            reader = pd.read_csv(handle, **kwargs)
            chunks.extend(progress(reader, desc=f"reading {path.name}"))
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{path}: not valid {encoding} text ({exc}); set source.encoding (MovieLens uses latin-1)"
        ) from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise SourceError(
            f"{path}: cannot parse with separator {shown_sep!r}: {exc}; check source.sep / source.header"
        ) from exc
    frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()
    if names is None and not header:
        frame.columns = [str(c) for c in frame.columns]
    if frame.empty and not len(frame.columns):
        raise SourceError(f"{path} has no rows")
    return frame


def _require(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], where: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SourceError(
            f"{where}: missing columns {missing}; found {list(frame.columns)}. "
            "Set the column names in [source] (user_col, item_col, rating_col, timestamp_col, "
            "item_id_col, title_col, genres_col) or ratings_names/items_names for headerless files"
        )


def _ids(values: pd.Series, where: Path, column: str) -> pd.Series:
    """Integer ids: int64 when every value parses, else nullable Int64 with <NA> for the bad cells.

    Parsed exactly as 64-bit integers (``pipelines.validation.exact_int64``, the rule ingest applies),
    never through float64: one bad cell must not round ``9007199254740993`` or merge ``2**62`` and
    ``2**62 + 1``. Files are read with their id columns as text for the same reason.
    """
    from pipelines.validation import exact_int64

    if pd.api.types.is_integer_dtype(values.dtype):
        return values.astype("int64") if not values.isna().any() else values.astype("Int64")
    text = values.astype(object).map(lambda v: v if v is None or isinstance(v, str) else str(v))
    numeric = exact_int64(text.where(values.notna(), None))
    bad = numeric.isna()
    if bad.any():
        log.warning(
            "%s: %d value(s) of %r are not integer ids (first: %r); kept as nulls for ingest to quarantine",
            where,
            int(bad.sum()),
            column,
            values[bad].iloc[0],
        )
        return numeric
    return numeric.astype("int64")


def _interactions_from(
    raw: pd.DataFrame,
    user: str,
    item: str,
    rating: str,
    timestamp: str | None,
    options: SourceSettings,
    where: Path,
) -> pd.DataFrame:
    """Canonical interactions from raw columns; unparseable cells become nulls, no row is dropped."""
    _require(raw, [user, item, rating] + ([timestamp] if timestamp else []), where)
    ratings = pd.to_numeric(raw[rating], errors="coerce").astype("float32")
    if timestamp:
        ts = _parse_times(raw[timestamp], options.timestamp_unit, where)
    else:
        fixed = pd.Timestamp(options.missing_timestamp)
        fixed = fixed.tz_localize("UTC") if fixed.tzinfo is None else fixed.tz_convert("UTC")
        log.info(
            "%s has no timestamp column: every rating is stamped %s (source.missing_timestamp)",
            where,
            fixed.isoformat(),
        )
        ts = pd.Series(np.full(len(raw), fixed.as_unit("us")), dtype=TS_DTYPE)
    frame = pd.DataFrame(
        {
            C.USER_ID: _ids(raw[user], where, user),
            C.ITEM_ID: _ids(raw[item], where, item),
            C.RATING: ratings,
            # text stays text (an object array of strings would be inferred as times and overflow)
            C.TS: pd.Series(ts.to_numpy(), dtype=object) if ts.dtype == object else ts.to_numpy(),
        }
    )
    if frame[C.TS].dtype != object:  # text when some cells did not parse (see _parse_times)
        frame[C.TS] = frame[C.TS].astype(TS_DTYPE)
    return frame


#: Largest epoch per unit that pandas can represent: a bigger one would silently wrap around (an epoch
#: in ms read as seconds became 1970-08-04) instead of failing.
_EPOCH_LIMIT = {u: pd.Timestamp.max.value // pd.Timedelta(1, unit=u).value for u in ("s", "ms", "us", "ns")}


def _parse_times(values: pd.Series, unit: str, where: Path) -> pd.Series:
    """Unix epochs (in ``unit``) when the column is numeric, ISO 8601 text otherwise.

    When every cell parses: ``datetime64[us, UTC]``. Otherwise the column is text, ISO 8601 for the
    cells that parsed and the source text for the others, so ingest quarantines those rows with what the
    file said (``epoch_unit:ts`` for an epoch in the wrong unit, ``bad_type:ts`` otherwise).
    """
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() >= max(1, len(values) // 2):
        numeric = numeric.where(numeric.abs() <= _EPOCH_LIMIT[unit])
        out = pd.to_datetime(numeric, unit=unit, utc=True, errors="coerce")
    else:
        out = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = (out.isna() & values.notna()).to_numpy()
    if not bad.any():
        return out.astype(TS_DTYPE)
    log.warning(
        "%s: %d timestamp(s) could not be parsed (first: %r); kept as text for ingest to quarantine",
        where,
        int(bad.sum()),
        values[bad].iloc[0],
    )
    text = out.map(lambda t: None if pd.isna(t) else t.isoformat()).astype(object)
    text[bad] = values[bad].astype(str).to_numpy()
    return text


def _split_genres(values: pd.Series, sep: str) -> list[list[str]]:
    """Genre lists; ``"(no genres listed)"`` and empty cells give ``[]``; names are stripped."""
    out: list[list[str]] = []
    stripped_sep = sep.strip() or sep
    for value in values:
        if not isinstance(value, str) or not value.strip() or value.strip() == "(no genres listed)":
            out.append([])
            continue
        parts = value.split(stripped_sep) if stripped_sep != sep else value.split(sep)
        out.append([p.strip() for p in parts if p.strip()])
    return out


def year_from_title(title: object) -> int | None:
    """The release year in a MovieLens-style title suffix: ``"Heat (1995)"`` -> 1995, else ``None``.

    Ranges such as ``"Babylon 5 (1994-1998)"`` give the first year.
    """
    if not isinstance(title, str):
        return None
    match = _YEAR_IN_TITLE.search(title.strip())
    return int(match.group(1)) if match else None


def _year_from_date(value: object) -> int | None:
    if not isinstance(value, str):
        return None
    match = _YEAR_ANYWHERE.search(value)
    return int(match.group(1)) if match else None


def _items_frame(
    ids: pd.Series,
    titles: pd.Series,
    genres: list[list[str]],
    fallback_dates: pd.Series | None = None,
    where: Path | None = None,
) -> pd.DataFrame:
    """Canonical items: the year comes from the title, else from ``fallback_dates`` (e.g. 01-Jan-1995)."""
    years = [year_from_title(t) for t in titles]
    if fallback_dates is not None:
        years = [
            y if y is not None else _year_from_date(d) for y, d in zip(years, fallback_dates, strict=True)
        ]
    frame = pd.DataFrame(
        {
            C.ITEM_ID: _ids(ids.reset_index(drop=True), where or Path("<items>"), C.ITEM_ID),
            C.TITLE: pd.Series(list(titles), dtype="str"),
            C.GENRES: pd.Series(genres, dtype=object),
            C.YEAR: pd.array(years, dtype="Int32"),
        }
    )
    return frame
