"""Great Expectations plumbing: one process-wide context, running a suite on a batch, Data Docs."""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from deepcuts.contracts import C
from deepcuts.startup import start_up

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

# GX logs its start-up at INFO (functions it skips, temporary folders): noise in task logs.
for _name in ("great_expectations", "great_expectations.data_context.types.base"):
    logging.getLogger(_name).setLevel(logging.WARNING)

_GX_LOCK = threading.RLock()
_GX: dict[str, Any] = {}


def _import_gx() -> None:
    """Import GX as a start-up (deepcuts/startup.py): its import builds several hundred thousand
    long-lived objects (pydantic v1 models, expectation and metric registries, scipy.stats, altair
    schemas) that the collector would otherwise walk during the import and again during every suite run
    (GX allocates heavily)."""
    if "great_expectations" in sys.modules:
        return
    with start_up():
        import great_expectations  # noqa: F401


def gx_context() -> AbstractDataContext:
    """The process-wide ephemeral GX context (created once: GX is slow to start)."""
    with _GX_LOCK:
        if "ctx" not in _GX:
            _import_gx()
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = gx.get_context(mode="ephemeral")
            logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
            # Airflow logs are not a terminal: no metric progress bars.
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
            source = ctx.data_sources.add_pandas("deepcuts")
            _GX["ctx"] = ctx
            _GX["batch"] = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
            _GX["sites"] = set()
        return _GX["ctx"]


def _docs_site(docs_dir: Path) -> str:
    """Name of the GX Data Docs site writing to ``docs_dir`` (added on first use)."""
    ctx = gx_context()
    name = "deepcuts-" + hashlib.sha1(str(docs_dir.resolve()).encode()).hexdigest()[:10]
    if name not in _GX["sites"]:
        ctx.add_data_docs_site(
            name,
            {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        _GX["sites"].add(name)
    return name


def expectation(cls_name: str, reason: str, level: str = "row", **kwargs: Any) -> Any:
    _import_gx()
    import great_expectations as gx

    cls = getattr(gx.expectations, cls_name)
    return cls(meta={"reason": reason, "level": level}, **kwargs)


def run_suite(
    name: str,
    frame: pd.DataFrame,
    expectations: list[Any],
    run_name: str,
    run_time: datetime,
) -> list[Any]:
    """Run one suite on one dataframe batch; returns GX's per-expectation results."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.validator.v1_validator import Validator

    ctx = gx_context()
    with _GX_LOCK:
        # Validating on the batch definition directly skips saving the suite in the context (the
        # costliest part of a run: suites are rebuilt per batch because their value sets depend on the
        # batch). The validator loads the batch once; ``Batch.validate`` would load (and fingerprint,
        # a hash of every value) a second copy of the one ``get_batch`` already built.
        validator = Validator(
            batch_definition=_GX["batch"],
            batch_parameters={"dataframe": frame},
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [C.SOURCE_ROW],
                "return_unexpected_index_query": False,
            },
        )
        result = validator.validate_expectation_suite(
            gx.ExpectationSuite(name=name, expectations=expectations)
        )
        run_id = RunIdentifier(run_name=run_name, run_time=run_time)
        result.meta["run_id"] = run_id
        result.meta["validation_time"] = run_time
        # Kept (in memory) until build_data_docs renders it.
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=name),
            run_id=run_id,
            batch_identifier=result.batch_id,
        )
        ctx.validation_results_store.set(key, result)
    for res in result.results:
        info = res.exception_info or {}
        if info.get("raised_exception"):
            raise RuntimeError(
                f"GX expectation {res.expectation_config.type} on {name} raised: "
                f"{info.get('exception_message')}"
            )
    return list(result.results)


def build_data_docs(docs_dir: Path) -> Path:
    """Render GX Data Docs for the validations run since the last call into ``docs_dir``.

    The in-memory results are then dropped, so a long process (the simulator) does not accumulate them.
    Values from data are HTML-escaped before GX renders them, and the pages are left without script or
    CDN assets, with a static index (``deepcuts.pipelines.data_docs``). Returns the site's ``index.html``.
    """
    from deepcuts.pipelines.data_docs import escape_results, secure_site

    ctx = gx_context()
    with _GX_LOCK:
        store = ctx.validation_results_store
        keys = list(store.list_keys())
        if keys:
            escape_results(store)
            ctx.build_data_docs(site_names=[_docs_site(docs_dir)], resource_identifiers=keys)
        for key in keys:
            store.remove_key(key)
    if keys:
        return secure_site(docs_dir)
    return docs_dir / "index.html"


def discard_results() -> None:
    """Drop GX's in-memory validation results without rendering them."""
    ctx = gx_context()
    with _GX_LOCK:
        store = ctx.validation_results_store
        for key in list(store.list_keys()):
            store.remove_key(key)
