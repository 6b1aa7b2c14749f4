"""``deepcuts experiment start|status|ramp|stop|ship``: run the A/B experiment (docs/ab-testing.md).

Each decision is appended to the experiment registry (the serving DB's ``experiment_log`` and its lake
copy, which the nightly steps read) and takes effect from the next run date the ``assign`` step has
not run for (``--from`` may name a later one; never an earlier one).
"""

from __future__ import annotations

import argparse
from datetime import date

from deepcuts.cli._common import settings_from


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiment", help="start, ramp, stop or ship the A/B experiment; show its state and history"
    )
    sub = parser.add_subparsers(dest="experiment_command", metavar="ACTION")
    sub.required = True

    start = sub.add_parser(
        "start", help="start a new experiment (the previous one must be shipped or stopped)"
    )
    start.add_argument("name", help="a name never used before (its totals start clean)")
    start.add_argument("--treatment-share", type=float, default=None, help="default: ab.treatment_share")
    start.add_argument("--baseline-arm", default=None, help="control arm (default: ab.baseline_arm)")
    start.add_argument("--salt", default=None, help="hash salt of the split (default: a new random one)")
    _common(start)
    start.set_defaults(handler=run_start)

    status = sub.add_parser("status", help="the experiment in force, the latest verdict and the history")
    status.set_defaults(handler=run_status)

    ramp = sub.add_parser("ramp", help="change the treatment share of the running experiment")
    ramp.add_argument("--treatment-share", type=float, required=True, help="new share, in (0, 1)")
    _common(ramp)
    ramp.set_defaults(handler=run_ramp)

    stop = sub.add_parser("stop", help="end the experiment without a winner: everyone gets control")
    _common(stop)
    stop.set_defaults(handler=run_stop)

    ship = sub.add_parser("ship", help="end the experiment: everyone gets the shipped variant")
    ship.add_argument("variant", choices=["treatment", "control"])
    ship.add_argument(
        "--force", action="store_true", help="ship treatment although the verdict is not 'treatment wins'"
    )
    _common(ship)
    ship.set_defaults(handler=run_ship)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="effective_from",
        type=date.fromisoformat,
        default=None,
        metavar="RUN_DATE",
        help="first run date the decision applies to (default: the next run date not yet assigned)",
    )
    parser.add_argument("--reason", default="", help="why (logged in the registry; required with --force)")


def run_start(args: argparse.Namespace) -> int:
    import secrets

    settings = settings_from(args)
    if args.baseline_arm and args.baseline_arm not in settings.arms.enabled:
        print(f"experiment start failed: baseline arm {args.baseline_arm!r} not in {settings.arms.enabled}")
        return 1
    share = args.treatment_share if args.treatment_share is not None else settings.ab.treatment_share
    return _append(
        args,
        "start",
        experiment=args.name,
        salt=args.salt or secrets.token_hex(8),
        treatment_share=share,
        baseline_arm=args.baseline_arm or settings.ab.baseline_arm,
    )


def run_ramp(args: argparse.Namespace) -> int:
    return _append(args, "ramp", treatment_share=args.treatment_share)


def run_stop(args: argparse.Namespace) -> int:
    return _append(args, "stop")


def run_ship(args: argparse.Namespace) -> int:
    return _append(args, "ship", variant=args.variant, force=args.force)


def _append(args: argparse.Namespace, action: str, **fields: object) -> int:
    import getpass
    from datetime import UTC, datetime

    from deepcuts.experiment import Action, Command, ExperimentError, ExperimentState
    from pipelines.experiment_registry import append, latest_verdict, next_run_date
    from pipelines.storage import Lake

    settings = settings_from(args)
    lake = Lake(settings.home)
    now = datetime.now(UTC)

    def build(current: ExperimentState) -> Command:
        verdict = latest_verdict(lake, current.experiment)
        return Command(
            action=Action(action),
            effective_from=args.effective_from or next_run_date(lake, now.date()),
            created_at=now.isoformat(timespec="seconds"),
            created_by=getpass.getuser(),
            verdict=verdict["verdict"] if verdict else None,
            reason=args.reason,
            **fields,  # type: ignore[arg-type]
        )

    try:
        entry = append(settings, build)
    except ExperimentError as exc:
        print(f"experiment {action} refused: {exc}")
        return 1
    s = entry.state
    forced = f" (FORCED: {entry.reason})" if entry.forced else ""
    print(
        f"#{entry.seq} {entry.action.value} {s.experiment}: {s.status.value}, {s.split_text}, "
        f"from run date {entry.effective_from}{forced}"
    )
    return 0


def run_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from deepcuts.experiment import ExperimentState, state_at
    from pipelines.experiment_registry import lake_entries, latest_verdict, next_run_date, read_registry
    from pipelines.storage import Lake

    settings = settings_from(args)
    lake = Lake(settings.home)
    entries = read_registry(settings)
    default = ExperimentState.from_settings(settings.ab)
    upcoming = next_run_date(lake, datetime.now(UTC).date())
    state = state_at(entries, upcoming, default)
    print(
        f"next run date {upcoming}: {state.experiment} ({state.status.value}, {state.split_text}, "
        f"control arm {state.baseline_arm})"
    )
    verdict = latest_verdict(lake, state.experiment)
    if verdict:
        print(f"latest verdict ({verdict['run_date']}): {verdict['verdict']}: {verdict['message']}")
    if not entries:
        print("registry: no entries yet (the experiment comes from the ab.* settings)")
    for e in entries:
        extra = f" forced: {e.reason}" if e.forced else (f" reason: {e.reason}" if e.reason else "")
        print(
            f"#{e.seq:<3} {e.effective_from}  {e.action.value:5}  {e.state.experiment}  "
            f"{e.state.split_text}  verdict then: {e.verdict or '-'}  "
            f"by {e.created_by} at {e.created_at}{extra}"
        )
    if [x.as_record() for x in lake_entries(lake)] != [x.as_record() for x in entries]:
        print("WARNING: the lake copy differs from the serving DB; the next command rewrites it")
        return 1
    return 0
