"""Sending alerts: always to the log; to a webhook and/or by e-mail when configured.

Plain Python so that pipeline steps (monitor, publish) and the Airflow notifier
(``deepcuts.airflow_support.DeepcutsFailureNotifier``, which wraps :func:`send_alerts`) share one path.
Delivery problems are logged and reported in the return value, never raised: an unreachable webhook must
not turn a healthy night into a failed one (the alerts are also in Parquet and the ``alerts`` table).
"""

from __future__ import annotations

import json
import logging
import smtplib
import urllib.request
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

from deepcuts.progress import get_logger
from deepcuts.settings import Settings

log = get_logger("deepcuts.alerts")


def _name(alert: dict[str, Any]) -> str:
    return str(alert.get("check_name") or alert.get("check") or "alert")


def format_alert(alert: dict[str, Any]) -> str:
    run_date = alert.get("run_date")
    prefix = f"[{str(alert.get('severity', 'warning')).upper()}]"
    where = f" {run_date}" if run_date else ""
    return f"{prefix}{where} {_name(alert)}: {alert.get('message', '')}"


def send_alerts(settings: Settings, alerts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Deliver ``alerts`` (dicts with ``check_name``/``check``, ``severity``, ``message``, ...).

    Logs each one (critical at ERROR level, warnings at WARNING); POSTs one JSON document
    ``{"source": "deepcuts", "alerts": [...]}`` to ``monitor.webhook_url`` and sends one e-mail to
    ``monitor.email_to`` when those are set. Returns what was delivered where.
    """
    out: dict[str, Any] = {"logged": 0, "webhook": None, "email": None}
    if not alerts:
        return out
    for alert in alerts:
        level = logging.ERROR if alert.get("severity") == "critical" else logging.WARNING
        log.log(level, format_alert(alert))
        out["logged"] += 1
    cfg = settings.monitor
    if cfg.webhook_url:
        body = json.dumps({"source": "deepcuts", "alerts": list(alerts)}, default=str).encode()
        request = urllib.request.Request(
            cfg.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=cfg.webhook_timeout_s) as response:
                out["webhook"] = int(response.status)
        except Exception as exc:  # delivery is best effort, see module docstring
            log.error("alert webhook %s failed: %s", cfg.webhook_url, exc)
            out["webhook"] = f"error: {exc}"
    if cfg.email_to:
        recipients = [r.strip() for r in cfg.email_to.split(",") if r.strip()]
        message = EmailMessage()
        worst = "critical" if any(a.get("severity") == "critical" for a in alerts) else "warning"
        message["Subject"] = f"deepcuts: {len(alerts)} {worst} alert(s)"
        message["From"] = cfg.email_from
        message["To"] = ", ".join(recipients)
        message.set_content("\n".join(format_alert(a) for a in alerts))
        try:
            with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.webhook_timeout_s) as smtp:
                smtp.send_message(message)
            out["email"] = recipients
        except Exception as exc:
            log.error(
                "alert e-mail to %s via %s:%s failed: %s", recipients, cfg.smtp_host, cfg.smtp_port, exc
            )
            out["email"] = f"error: {exc}"
    return out
