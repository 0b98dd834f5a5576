"""The bodies of the ``trialscreen`` commands (``cli`` parses the arguments and calls
them): each calls the package and prints what it did; the exit status each returns; the
warehouse a command uses; the check that ``--input`` holds feed files; the alerts of
``--notify``."""

# Thin: these call the package; they decide nothing themselves.

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from trialscreen.progress import counter, run_progress

# Exit status (docs/specification.md#command-line). 2 is argparse's usage error; a blocked
# gate has its own code so that a scheduler tells "data refused" from "job broken".
EXIT_OK = 0  # the command did what it says (run: the new tables were published)
EXIT_ERROR = 1  # it could not: a crash, a failed build, an input with no feed files...
EXIT_USAGE = 2  # a wrong option or value (argparse)
EXIT_GATE_BLOCKED = 3  # run: the quality gate blocked publication; yesterday's tables stay
EXIT_INTERRUPTED = 130  # Ctrl-C

DEFAULT_WAREHOUSE = "trialscreen.duckdb"
WAREHOUSE_ENV = "TRIALSCREEN_WAREHOUSE_URL"  # also [warehouse] url of the configuration file


def _warehouse(args: argparse.Namespace) -> str:
    """--warehouse, else the configured warehouse (environment, then configuration file)."""
    return str(args.warehouse or os.environ.get(WAREHOUSE_ENV, "").strip() or DEFAULT_WAREHOUSE)


class EmptyInput(Exception):
    """--input has no feed files: the operator pointed at the wrong folder, or a night
    really is empty (then --allow-empty)."""


def _feed_entries(drop: Path, allow_empty: bool) -> dict[str, int]:
    """The entries of each feed folder of a drop (what ingest will handle); refuses a drop
    with none unless ``allow_empty``. Names folders only, never a file (a file name can
    carry a patient's name)."""
    from trialscreen.ingest import scan
    from trialscreen.schema import FEEDS

    if not drop.is_dir():
        raise EmptyInput(f"--input '{drop}' is not a directory")
    entries = {feed: sum(len(found) for found in scan(drop, feed)) for feed in FEEDS}
    if sum(entries.values()) or allow_empty:
        return entries
    folders = ", ".join(f"{feed}/" for feed in FEEDS)
    hint = ""
    if drop.name in FEEDS:
        hint = f" '{drop}' looks like a feed folder itself: pass its parent '{drop.parent}'."
    else:
        deeper = sorted(
            child
            for child in drop.iterdir()
            if child.is_dir()
            and not child.is_symlink()
            and any((child / feed).is_dir() for feed in FEEDS)
        )
        if deeper:
            shown = ", ".join(f"'{d}'" for d in deeper[:3])
            hint = f" The feed folders are one level down: did you mean {shown}?"
    raise EmptyInput(
        f"--input '{drop}' has no feed files (nothing under {folders}).{hint} "
        "For a night that really has no files, pass --allow-empty."
    )


def _notify(kind: str, run_id: str | None, trials: list[str], summary: str, **counts: int) -> None:
    """Send one alert (trialscreen.notify) and say on stderr where it went."""
    from trialscreen.notify import Alert, send, trial_ids

    ids = trial_ids(trials)
    try:
        alert = Alert(kind, run_id, ids, summary, dict(counts))
    except ValueError:  # a summary the guard refuses: the kind and counts still go out
        alert = Alert(kind, run_id, ids, kind.replace("_", " "), dict(counts))
    delivered = send(alert)
    where = ", ".join(delivered) or "nowhere (no destination configured, or it failed: -v says)"
    print(f"alert '{kind}' sent to {where}", file=sys.stderr)


def _warn_if_no_alert_destination() -> None:
    from trialscreen import notify

    if not (os.environ.get(notify.WEBHOOK_URL_ENV) or os.environ.get(notify.SMTP_HOST_ENV)):
        print(
            f"warning: --notify: no alert destination configured ({notify.WEBHOOK_URL_ENV} "
            f"or {notify.SMTP_HOST_ENV}); alerts will only be logged",
            file=sys.stderr,
        )


# --- commands -------------------------------------------------------------------------


def cmd_synth(args: argparse.Namespace) -> int:
    from trialscreen.synth import generate

    if args.increment_of is not None:
        from trialscreen.synth.increment import increment

        inc = increment(args.increment_of, args.out, args.day, args.share)
        print(
            f"wrote the increment of {args.increment_of} for {inc['day']}: new results for "
            f"{inc['patients']} patients ({sum(inc['results_per_feed'].values())} results) to "
            f"{args.out}; their expected outcomes on that day in {args.out / 'expected'}"
        )
        return EXIT_OK
    with counter("generating patients", args.patients) as tick:
        summary = generate(
            patients=args.patients,
            seed=args.seed,
            out=args.out,
            screening_date=args.screening_date,
            progress=tick,
            workers=args.workers,
        )
    print(
        f"wrote {summary.patients} patients (seed {summary.seed}, screening date "
        f"{summary.screening_date}) to {args.out}: {len(summary.files)} files, "
        f"{summary.bad_records} deliberately bad records; expected outcomes in "
        f"{args.out / 'expected'} ({summary.seconds:.1f} s)"
    )
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    from trialscreen.ingest import ingest
    from trialscreen.run_ids import new_run_id
    from trialscreen.warehouse import Warehouse

    total = sum(_feed_entries(args.input, args.allow_empty).values())
    run_id = new_run_id()
    with Warehouse.connect(_warehouse(args)) as wh, counter("ingesting files", total) as tick:
        counts = ingest(wh, args.input, run_id, progress=lambda _feed, n: tick(n))
    for feed, c in counts.items():
        print(
            f"{feed:5} files new {c.files_new} skipped {c.files_skipped} | records_in "
            f"{c.records_in} = loaded {c.loaded} + duplicates {c.duplicates_skipped} "
            f"+ quarantined {c.quarantined} (ignored {c.ignored})"
        )
    return EXIT_OK if all(c.balanced for c in counts.values()) else EXIT_ERROR


def cmd_run(args: argparse.Namespace) -> int:
    from trialscreen.pipeline import run_pipeline
    from trialscreen.settings import today_in_hospital_zone

    trials = args.trial or ["axiom"]
    if args.notify:
        _warn_if_no_alert_destination()
    try:
        files = _feed_entries(args.input, args.allow_empty)
        progress = run_progress(files)
        with progress or nullcontext():
            result = run_pipeline(
                input_dir=args.input,
                screening_date=args.screening_date or today_in_hospital_zone(),
                warehouse=_warehouse(args),
                trials=trials,
                reports_dir=args.reports_dir,
                dbt_docs=True,
                progress=progress,
                full_refresh=args.full_refresh,
            )
    except Exception as exc:  # nothing ran, or a step outside the run's own record failed
        if args.notify:
            name = type(exc).__name__
            _notify("failed", None, trials, f"trialscreen run stopped: {name}")
        raise
    print(result.summary())
    for label, path in result.artifacts.items():
        print(f"  {label:10} {path}")
    if result.published:
        return EXIT_OK
    loaded = sum(c.loaded for c in result.feed_counts.values())
    quarantined = sum(c.quarantined for c in result.feed_counts.values())
    if result.gate_blocked:
        print(
            f"trialscreen run: the quality gate blocked publication (exit {EXIT_GATE_BLOCKED}); "
            "yesterday's published tables stay in place. Which expectations failed: "
            f"{result.artifacts.get('data docs', 'the Data Docs')}",
            file=sys.stderr,
        )
        if args.notify:
            summary = "quality gate blocked publication; published tables unchanged"
            _notify(
                "gate_blocked",
                result.run_id,
                trials,
                summary,
                loaded=loaded,
                quarantined=quarantined,
            )
        return EXIT_GATE_BLOCKED
    print(f"trialscreen run: failed: {result.message}", file=sys.stderr)
    if args.notify:
        name = (result.message.split(":", 1)[0].split() or ["error"])[0]  # the error's class
        _notify(
            "failed",
            result.run_id,
            trials,
            f"run failed: {name}; nothing published",
            loaded=loaded,
            quarantined=quarantined,
        )
    return EXIT_ERROR


def cmd_demo(args: argparse.Namespace) -> int:
    from trialscreen.demo import run_demo

    if args.notify:
        _warn_if_no_alert_destination()
    try:
        status = run_demo(
            patients=args.patients, seed=args.seed, out=args.out, use_airflow=not args.no_airflow
        )
    except Exception as exc:
        if args.notify:
            _notify("failed", None, ["axiom"], f"trialscreen demo stopped: {type(exc).__name__}")
        raise
    if status == EXIT_GATE_BLOCKED and args.notify:
        _notify("gate_blocked", None, ["axiom"], "trialscreen demo: quality gate blocked it")
    elif status != EXIT_OK and args.notify:
        _notify("failed", None, ["axiom"], "trialscreen demo: the run did not publish")
    return status


def cmd_bench(args: argparse.Namespace) -> int:
    from trialscreen.bench import run_bench

    default_sizes = [] if args.scale else [1000, 10000]
    return run_bench(
        sizes=args.sizes if args.sizes is not None else default_sizes,
        out=args.out,
        seed=args.seed,
        postgres=args.postgres,
        repeat=args.repeat,
        dbt_select=args.dbt_select,
        scale=args.scale,
    )


def cmd_manifest(args: argparse.Namespace) -> int:
    from trialscreen.transform import compile_manifest

    print(f"dbt manifest written to {compile_manifest()}")
    return EXIT_OK


def cmd_roles(args: argparse.Namespace) -> int:
    from trialscreen.roles import main as roles_main

    return roles_main([])


def cmd_doctor(args: argparse.Namespace) -> int:
    from trialscreen import doctor

    checks = doctor.run_checks(config_path=args.config, warehouse=args.warehouse)
    print(doctor.render(checks))
    return doctor.exit_status(checks)


def cmd_trials_list(args: argparse.Namespace) -> int:
    from trialscreen import doctor

    summaries, errors = doctor.trial_summaries(doctor.trials_dir())
    rows = [("id", "NCT id", "title", "cohorts")] + [
        (s.trial_id, s.nct_id or "-", s.title, ", ".join(s.cohorts)) for s in summaries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]))
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0
