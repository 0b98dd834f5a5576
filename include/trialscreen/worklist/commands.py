"""``trialscreen worklist ...``: the coordinators' commands (docs/specification.md#command-line).

    export   the latest run's worklist as CSV or XLSX (one audit row per export)
    mark     record a decision on one patient of the latest worklist
    import   record decisions from a CSV (mrn, cohort_id, outcome[, trial_id, reason])

They read the latest worklist snapshot (``$TRIALSCREEN_WORKLIST_DIR``) and write the
decisions store (``$TRIALSCREEN_DECISIONS_STORE``), never the warehouse: they work while the
nightly run holds it. Output names no patient.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from trialscreen.worklist import (
    OUTCOMES,
    Decision,
    DecisionError,
    DecisionStore,
    export,
    latest_snapshot,
    mark,
    worklist_dir,
)
from trialscreen.worklist.decisions import default_location, read_decisions_csv
from trialscreen.worklist.export import FORMATS


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else worklist_dir()


def cmd_export(args: argparse.Namespace) -> int:
    directory = _dir(args)
    with latest_snapshot(directory) as worklist:
        out = (
            args.out
            or directory / worklist.run_id / f"worklist-{args.trial or 'all'}.{args.format}"
        )
        with DecisionStore(default_location(directory)) as store:
            worklist.apply(store.latest())
            try:
                n = export(worklist, store, out, args.format, args.trial)
            except ValueError as exc:
                print(f"trialscreen worklist: {exc}", file=sys.stderr)
                return 1
    print(f"wrote {n} rows (run {worklist.run_id}) to {out}; export recorded in the audit")
    return 0


def _refused(exc: DecisionError) -> int:
    """A refused decision: its text names the field or the line, never the patient."""
    print(f"trialscreen worklist: {exc}", file=sys.stderr)
    return 1


def cmd_mark(args: argparse.Namespace) -> int:
    directory = _dir(args)
    decision = Decision(
        trial_id=args.trial,
        cohort_id=args.cohort,
        mrn=args.mrn,
        outcome=args.outcome,
        reason=args.reason or "",
    )
    try:
        with (
            latest_snapshot(directory) as worklist,
            DecisionStore(default_location(directory)) as store,
        ):
            n = mark(store, worklist, [decision])
    except DecisionError as exc:
        return _refused(exc)
    print(f"recorded {n} decision ({args.outcome}) on the worklist of run {worklist.run_id}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    directory = _dir(args)
    try:
        decisions = read_decisions_csv(args.file, default_trial=args.trial or "")
        with (
            latest_snapshot(directory) as worklist,
            DecisionStore(default_location(directory)) as store,
        ):
            n = mark(store, worklist, decisions)
    except DecisionError as exc:
        return _refused(exc)
    print(f"recorded {n} decisions from {args.file.name} (run {worklist.run_id})")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``worklist export | mark | import`` on the main parser's subparsers."""
    group = sub.add_parser(
        "worklist", help="coordinators: the worklist's exports and decisions (restricted)"
    )
    group.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="worklist directory (default: TRIALSCREEN_WORKLIST_DIR)",
    )
    verbs = group.add_subparsers(dest="worklist_command", required=True)

    exp = verbs.add_parser("export", help="the latest worklist as CSV or XLSX (audited)")
    exp.add_argument("--trial", help="one trial (default: all)")
    exp.add_argument("--format", choices=FORMATS, default="csv")
    exp.add_argument("--out", type=Path, default=None, help="default: beside the worklist page")
    exp.set_defaults(func=cmd_export)

    mk = verbs.add_parser("mark", help="record a decision on one patient of the latest worklist")
    mk.add_argument("--trial", required=True)
    mk.add_argument("--cohort", required=True)
    mk.add_argument("--mrn", required=True)
    mk.add_argument("--outcome", required=True, choices=OUTCOMES)
    mk.add_argument("--reason", help="required for screen_failed")
    mk.set_defaults(func=cmd_mark)

    imp = verbs.add_parser("import", help="record decisions from a CSV")
    imp.add_argument("file", type=Path)
    imp.add_argument("--trial", help="trial of rows without a trial_id column")
    imp.set_defaults(func=cmd_import)
