"""The names of the monitor's health checks, in the order of the check registry
(``deepcuts.pipelines.monitor_checks.CHECKS``), in a module that imports nothing.

The settings validate ``monitor.critical_checks`` against these names when they load, and loading the
settings must stay cheap (every DAG file builds them at parse time: no pandas, no numpy). The registry
stays the one list: ``monitor_checks`` refuses to import while its checks and this tuple disagree, so a
check added, renamed or removed there without being named here fails at once, naming the difference.
"""

from __future__ import annotations

CHECK_NAMES: tuple[str, ...] = (
    "served_lists_present",
    "items_present",
    "policy_present",
    "feedback_present",
    "validation_present",
    "long_tail_share",
    "genres_per_list",
    "coverage",
    "gini",
    "mean_predicted_quality",
    "mean_observed_rating",
    "ctr_drop",
    "arm_floor",
    "arm_ceiling",
    "feedback_volume",
    "feedback_freshness",
    "quarantine_share",
    "intraday_no_feedback",
    "intraday_feedback_lag",
    "ope_sanity",
    "ope_support",
    "target_long_tail_share",
    "target_mean_rating",
)
