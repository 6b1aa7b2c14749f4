"""Nightly step ``monitor``: run the check registry, write the findings and alerts, and the publish veto.

``monitor(settings, run_date)`` runs :data:`pipelines.monitor_checks.CHECKS` in order (docs/monitoring.md),
writes every finding to ``monitor/checks`` and the failed ones to ``monitor/alerts`` (Parquet), replaces
the run date's monitor alerts in the serving database's ``alerts`` table, and sends the alerts (log
always; webhook / e-mail when configured, :func:`pipelines.alerting.send_alerts`). A failed check is
``critical`` when its name is in ``monitor.critical_checks`` (validated against the registry when settings
load) and ``warning`` otherwise; an unacknowledged critical alert makes the publish of that run date
refuse to switch, so the app keeps yesterday's version.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pyarrow as pa

from deepcuts.contracts import ALERTS_SCHEMA, MONITOR_CHECKS_SCHEMA, C, Dataset
from deepcuts.progress import get_logger
from deepcuts.settings import Settings
from pipelines import serving
from pipelines.alerting import send_alerts
from pipelines.monitor_checks import Finding, run_checks
from pipelines.storage import Lake, as_run_date

log = get_logger(__name__)

OK, WARNING, CRITICAL, SKIPPED = "ok", "warning", "critical", "skipped"


# --------------------------------------------------------------------------- the step
def _status(check: Finding, critical: set[str]) -> str:
    if check.passed is None:
        return SKIPPED
    if check.passed:
        return OK
    return CRITICAL if check.name in critical else WARNING


def monitor(
    settings: Settings,
    run_date: date | str,
    notify: Callable[[Settings, list[dict[str, Any]]], Any] = send_alerts,
) -> dict[str, Any]:
    """Run every check for ``run_date``; write checks and alerts (Parquet + serving DB); send alerts.

    Idempotent: a re-run replaces the run date's Parquet parts and its monitor alerts in the database
    (acknowledgements are kept). Returns counts and the names of the failed checks.
    """
    run_date = as_run_date(run_date)
    lake = Lake(settings.home)
    checks = run_checks(settings, lake, run_date)
    critical = set(settings.monitor.critical_checks)
    rows = [
        {
            C.CHECK_NAME: c.name,
            C.CATEGORY: c.category,
            C.STATUS: _status(c, critical),
            C.VALUE: c.value,
            C.THRESHOLD: c.threshold,
            C.MESSAGE: c.message,
            C.RUN_DATE: run_date,
        }
        for c in checks
    ]
    alerts = [
        {
            C.CHECK_NAME: r[C.CHECK_NAME],
            C.CATEGORY: r[C.CATEGORY],
            C.SEVERITY: r[C.STATUS],
            C.VALUE: r[C.VALUE],
            C.THRESHOLD: r[C.THRESHOLD],
            C.MESSAGE: r[C.MESSAGE],
            C.RUN_DATE: run_date,
        }
        for r in rows
        if r[C.STATUS] in (WARNING, CRITICAL)
    ]
    lake.write_table(
        Dataset.MONITOR_CHECKS, run_date, pa.Table.from_pylist(rows, schema=MONITOR_CHECKS_SCHEMA)
    )
    lake.write_table(Dataset.ALERTS, run_date, pa.Table.from_pylist(alerts, schema=ALERTS_SCHEMA))

    engine = serving.serving_engine(settings, writer=True)
    try:
        serving.ensure_schema(engine)
        serving.replace_alerts(engine, run_date, "monitor", alerts)
    finally:
        engine.dispose()
    delivery = notify(settings, [{**a, "run_date": run_date.isoformat()} for a in alerts]) if alerts else None

    counts = {s: sum(1 for r in rows if r[C.STATUS] == s) for s in (OK, WARNING, CRITICAL, SKIPPED)}
    log.info("monitor %s: %s", run_date, counts)
    return {
        "run_date": run_date.isoformat(),
        "checks": len(rows),
        **counts,
        "blocks_publish": counts[CRITICAL] > 0,
        "failed": {a[C.CHECK_NAME]: a[C.SEVERITY] for a in alerts},
        "delivery": delivery,
    }
