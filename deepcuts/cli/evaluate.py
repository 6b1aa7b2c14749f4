"""``deepcuts evaluate``: fit the arms on a split, score top-k lists, print a table, write JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deepcuts.cli._common import settings_from

KINDS = ("ml-100k", "ml-1m", "ml-latest-small", "csv", "synthetic")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="offline evaluation of the arms on a train/test split (accuracy and beyond-accuracy metrics)",
        description=(
            "Fit every arm on the training data, recommend the top k unseen items to every test user "
            "with a training history, and score the lists: every test rating is relevant. "
            "Metric formulas: docs/metrics.md."
        ),
    )
    parser.add_argument("--dataset", required=True, choices=KINDS, help="dataset kind (loader)")
    parser.add_argument("--path", default=None, help="dataset folder (with --train/--test: the items file)")
    parser.add_argument("--train", default=None, help="fixed train file (tab: user, item, rating, time)")
    parser.add_argument("--test", default=None, help="fixed test file (same format as --train)")
    parser.add_argument(
        "--protocol",
        choices=("stratified", "temporal"),
        default="stratified",
        help="split built from --path: stratified 75/25 per item, seed 42 (Microsoft Recommenders), "
        "or temporal (each user's latest 20%% held out); ignored with --train/--test",
    )
    parser.add_argument("--k", type=int, default=None, help="list length (default: evaluate.k, 10)")
    parser.add_argument("--arms", default="all", help="'all' or a comma list, e.g. svd,lightfm,popularity")
    parser.add_argument("--out", required=True, help="JSON results file to write")
    parser.add_argument(
        "--no-rerank",
        dest="rerank",
        action="store_false",
        help='skip the deep-cut re-ranker (no "served" entries next to "arms")',
    )
    # csv loader options (override the [source] section of the settings)
    csv = parser.add_argument_group("csv loader options (see `deepcuts config`, section [source])")
    for flag, dest, help_text in (
        ("--ratings-file", "ratings_file", "ratings file name inside --path"),
        ("--items-file", "items_file", "items file name inside --path"),
        ("--sep", "sep", "ratings separator"),
        ("--user-col", "user_col", "user id column"),
        ("--item-col", "item_col", "item id column"),
        ("--rating-col", "rating_col", "rating column"),
        ("--timestamp-col", "timestamp_col", "timestamp column ('' for none)"),
        ("--items-sep", "items_sep", "items file separator"),
        ("--item-id-col", "item_id_col", "items file id column"),
        ("--title-col", "title_col", "items file title column"),
        ("--genres-col", "genres_col", "items file genres column"),
        ("--genre-sep", "genre_sep", "separator between genres"),
        ("--encoding", "encoding", "text encoding of both files"),
    ):
        csv.add_argument(flag, dest=f"source_{dest}", default=None, help=help_text)
    csv.add_argument("--rating-min", dest="source_rating_min", type=float, default=None)
    csv.add_argument("--rating-max", dest="source_rating_max", type=float, default=None)
    csv.add_argument("--no-header", dest="source_header", action="store_false", default=None)
    parser.set_defaults(handler=run)


def _source_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for key, value in vars(args).items():
        if key.startswith("source_") and value is not None:
            name = key.removeprefix("source_")
            out[name] = None if name == "timestamp_col" and value == "" else value
    return out


def run(args: argparse.Namespace) -> int:
    from deepcuts.metrics import BEYOND_KEYS, accuracy_keys
    from pipelines.evaluate import EvaluationError, evaluate_dataset

    base = settings_from(args)
    overrides = _source_overrides(args)
    settings = (
        base.model_copy(update={"source": base.source.model_copy(update=overrides)}) if overrides else base
    )
    if (args.train is None) != (args.test is None):
        print("deepcuts evaluate: give both --train and --test, or neither", file=sys.stderr)
        return 2
    if args.train is None and args.path is None:
        print("deepcuts evaluate: give --path DIR or --train FILE --test FILE", file=sys.stderr)
        return 2
    try:
        result = evaluate_dataset(
            args.dataset,
            settings,
            path=args.path,
            train_file=args.train,
            test_file=args.test,
            protocol=args.protocol,
            k=args.k,
            arms=args.arms,
            rerank=args.rerank,
        )
    except EvaluationError as exc:
        print(f"deepcuts evaluate: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False))
    tmp.replace(out)
    print(
        format_table(result, (*accuracy_keys(result["k"]), *BEYOND_KEYS, "fit_seconds", "recommend_seconds"))
    )
    targets = result.get("served_targets")
    if targets is not None:
        print(format_targets(targets, result["k"]))
    print(
        f"\n{result['n_users']} users evaluated ({result['n_skipped_users']} test users without train "
        f"history skipped), {result['n_items']} items; protocol {result['protocol']}; wrote {out}"
    )
    return 0


def format_table(result: dict[str, Any], columns: tuple[str, ...]) -> str:
    """A plain fixed-width table: one row per arm (and per served list when present)."""
    rows = [(name, metrics) for name, metrics in result["arms"].items()]
    rows += [(f"{name} (served)", metrics) for name, metrics in result.get("served", {}).items()]
    width = max([len("arm"), *(len(name) for name, _ in rows)])
    header = "arm".ljust(width) + "".join(f" {c:>17}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, metrics in rows:
        cells = []
        for column in columns:
            value = metrics.get(column)
            cells.append(f" {'-':>17}" if value is None else f" {value:>17.4f}")
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)


def format_targets(targets: dict[str, Any], k: int) -> str:
    """The served lists against the product's targets (docs/deep-cuts.md), one line per arm."""
    ratio = targets["ndcg_ratio"]
    lines = [
        f"\nserved vs targets: best served {targets['best_served_arm']} keeps "
        f"{'-' if ratio is None else f'{ratio:.3f}'} x the best raw arm's nDCG@{k} "
        f"({targets['best_raw_arm']}); target >= 0.80"
    ]
    for arm, checks in targets["arms"].items():
        marks = ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in checks.items())
        lines.append(f"  {arm}: {marks}")
    return "\n".join(lines)
