"""TrialScreen: nightly pre-screening of a hospital's patients for clinical trials.

Every command prints what it did on stdout and says why it stopped in one line on stderr (no
traceback unless -vv). On a terminal, trialscreen run shows its progress on stderr; off a
terminal (cron, Airflow, CI) it prints only its summary. Exit status: 0 done (run: published),
1 error, 2 usage error, 3 quality gate blocked publication (run). The contract of every
command is in docs/specification.md#command-line.
"""

# Thin: this module parses arguments and calls the package; it decides nothing itself.

from __future__ import annotations

import argparse
import difflib
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from datetime import date
from pathlib import Path
from typing import Any

from trialscreen import logs
from trialscreen.errors import summarize
from trialscreen.progress import counter, run_progress

log = logging.getLogger("trialscreen.cli")

# Exit status (docs/specification.md#command-line). 2 is argparse's usage error; a blocked
# gate has its own code so that a scheduler tells "data refused" from "job broken".
EXIT_OK = 0  # the command did what it says (run: the new tables were published)
EXIT_ERROR = 1  # it could not: a crash, a failed build, an input with no feed files...
EXIT_USAGE = 2  # a wrong option or value (argparse)
EXIT_GATE_BLOCKED = 3  # run: the quality gate blocked publication; yesterday's tables stay
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_STATUS_HELP = f"""\
exit status:
  {EXIT_OK}    done (run: published)
  {EXIT_ERROR}    error: the reason in one line on stderr (a crash, a failed build, an
       --input with no feed files, a failed publish)
  {EXIT_USAGE}    usage error: a wrong option or value
  {EXIT_GATE_BLOCKED}    run: the quality gate blocked publication; yesterday's published
       tables stay in place (the Data Docs say which expectations failed)
  {EXIT_INTERRUPTED}  interrupted

global options (-v, --config) go before or after the command:
  trialscreen -v run ...  or  trialscreen run ... -v
"""

DEFAULT_WAREHOUSE = "trialscreen.duckdb"
WAREHOUSE_ENV = "TRIALSCREEN_WAREHOUSE_URL"  # also [warehouse] url of the configuration file
WAREHOUSE_HELP = (
    "DuckDB file or duckdb:///path, a postgresql:// URL or spark:///dir "
    f"(default: ${WAREHOUSE_ENV}, else ./{DEFAULT_WAREHOUSE})"
)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default after its help (unless there is none to show). Paragraphs of a
    description are wrapped; a paragraph whose first line ends with ':' (exit status:,
    example:) is printed as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = textwrap.dedent(text).strip().split("\n\n")
        return "\n\n".join(
            textwrap.indent(p, indent)
            if p.splitlines()[0].rstrip().endswith(":")
            else textwrap.fill(
                " ".join(p.split()), width, initial_indent=indent, subsequent_indent=indent
            )
            for p in paragraphs
        )

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default:" in text
            or action.required
            or default is None
            or default is False
            or default == []
            or default == argparse.SUPPRESS
            or isinstance(action, argparse._CountAction)
        ):
            return text
        return super()._get_help_string(action)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got '{text}'") from None


def _check_trials(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each --trial is a trial id of the trials folder or a path to a trial YAML file; a
    wrong one is a usage error (exit 2) that lists the valid ids, before anything runs.
    Checked after the configuration is applied: it may name the trials folder."""
    from trialscreen.trial import TRIALS_DIR, trial_ids

    given = getattr(args, "trial", None) or []
    for text in [given] if isinstance(given, str) else given:  # run: a list; worklist: one
        known = trial_ids()
        if text in known or Path(text).is_file():
            continue
        close = difflib.get_close_matches(text, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        command = [p for p in _subparsers(parser) if p.prog == f"{parser.prog} {args.command}"]
        (command or [parser])[0].error(
            f"argument --trial: no trial '{text[:80]}': {hint}trial ids: "
            f"{', '.join(known) or 'none'} (the YAML files of {TRIALS_DIR}), or the path of a "
            "trial YAML file"
        )


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


# --- the parser -----------------------------------------------------------------------


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after its name (``trialscreen -v run``
    and ``trialscreen run -v``). A new global option is added here, once: ``build_parser``
    gives it to the top-level parser (``top``, where it has its default) and to every
    command (default ``SUPPRESS``, so a value given before the command is kept)."""
    keep = argparse.SUPPRESS
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose" if top else "verbose_after",  # counted together in main()
        default=0 if top else keep,
        help="log lines (JSON) on stderr: -v info, -vv debug and tracebacks (default: warnings)",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=None if top else keep,
        help="configuration file (default: $TRIALSCREEN_CONFIG, else ./trialscreen.toml if "
        "present); the environment overrides it (docs/configuration.md)",
    )


def _command(
    sub: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
    example: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Register one command: its help, an example in its epilog, the global options."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=_HelpFormatter,
    )
    _global_options(parser, top=False)
    parser.set_defaults(func=func)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *_subparsers(child)]
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trialscreen",
        description=__doc__,
        epilog=EXIT_STATUS_HELP,
        formatter_class=_HelpFormatter,
    )
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(
        sub,
        "run",
        cmd_run,
        "the nightly job: ingest, build, validate, publish, reports",
        "trialscreen run --input /data/drops/2026-11-24 --screening-date 2026-11-24 \\\n"
        "      --warehouse trialscreen.duckdb --notify",
        description="The nightly job outside Airflow: land the drop's new files, build the "
        "candidate tables with dbt, check them with the quality gate, publish them and write "
        f"the reports. Exit {EXIT_OK} published, {EXIT_GATE_BLOCKED} quality gate blocked "
        f"publication (yesterday's tables kept), {EXIT_ERROR} error.",
    )
    run.add_argument(
        "--input",
        type=Path,
        required=True,
        metavar="DIR",
        help="the night's drop: a folder holding fhir/, hl7/ and csv/ (any may be missing)",
    )
    run.add_argument(
        "--screening-date",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="screen as of this date (default: today in $TRIALSCREEN_TIMEZONE)",
    )
    run.add_argument("--warehouse", metavar="URL", default=None, help=WAREHOUSE_HELP)
    run.add_argument(
        "--trial",
        action="append",
        metavar="ID|YAML",
        help="trial id (trialscreen trials list) or path of a trial YAML; repeat for several "
        "trials (default: axiom)",
    )
    run.add_argument(
        "--reports-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the reports go (default: reports/ beside the warehouse file)",
    )
    run.add_argument(
        "--allow-empty",
        action="store_true",
        help="run even when --input has no feed files (a night with nothing delivered; "
        "without it such an --input is an error: usually the wrong folder)",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the derived tables from all of raw instead of only the patients the "
        "new loads changed (done by itself when the code, seeds or trial definitions "
        "changed); the published history (first eligible, new) is kept",
    )
    run.add_argument(
        "--notify",
        action="store_true",
        help="send an alert when the run fails or the quality gate blocks it "
        "(to $TRIALSCREEN_ALERT_WEBHOOK_URL and/or by mail via $TRIALSCREEN_ALERT_SMTP_HOST)",
    )

    ing = _command(
        sub,
        "ingest",
        cmd_ingest,
        "land a feed drop in raw/quarantine only (no build, nothing published)",
        "trialscreen ingest --input /data/drops/2026-11-24 --warehouse trialscreen.duckdb",
    )
    ing.add_argument(
        "--input", type=Path, required=True, metavar="DIR", help="a drop: fhir/, hl7/, csv/"
    )
    ing.add_argument("--warehouse", metavar="URL", default=None, help=WAREHOUSE_HELP)
    ing.add_argument(
        "--allow-empty", action="store_true", help="accept an --input with no feed files"
    )

    syn = _command(
        sub,
        "synth",
        cmd_synth,
        "generate a synthetic population with expected outcomes",
        "trialscreen synth --patients 200 --seed 7 --out drops/synthetic",
    )
    syn.add_argument("--patients", type=int, default=1000, help="how many patients")
    syn.add_argument("--seed", type=int, default=1, help="the same seed gives the same files")
    syn.add_argument("--out", type=Path, required=True, metavar="DIR", help="the drop to write")
    syn.add_argument(
        "--screening-date",
        type=_date,
        default=date.today(),
        metavar="YYYY-MM-DD",
        help="the date the expected outcomes hold for",
    )
    syn.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes drawing the population's 20 parts (the files are the same for any N); "
        "an interrupted run of the same arguments resumes from the parts already written",
    )
    syn.add_argument(
        "--increment-of",
        type=Path,
        metavar="DIR",
        help="instead of a population: the next night's drop for the population in DIR, one "
        "day of new lab results for --share of its patients (--patients/--seed come from DIR)",
    )
    syn.add_argument(
        "--day",
        type=_date,
        metavar="YYYY-MM-DD",
        help="with --increment-of: the day of the new results (default: the day after DIR's "
        "screening date)",
    )
    syn.add_argument(
        "--share",
        type=float,
        default=0.02,
        help="with --increment-of: the share of patients with new results (default 0.02)",
    )

    demo = _command(
        sub,
        "demo",
        cmd_demo,
        "synth + run + reports on the embedded warehouse",
        "trialscreen demo --patients 300 --out demo --no-airflow",
    )
    demo.add_argument("--patients", type=int, default=1000, help="how many synthetic patients")
    demo.add_argument("--seed", type=int, default=42, help="population seed")
    demo.add_argument(
        "--out", type=Path, default=Path("demo"), metavar="DIR", help="where everything lands"
    )
    demo.add_argument(
        "--no-airflow", action="store_true", help="run the steps without Airflow (faster)"
    )
    demo.add_argument(
        "--notify", action="store_true", help="send an alert when the demo run does not publish"
    )

    _command(
        sub,
        "manifest",
        cmd_manifest,
        "precompile the dbt manifest the DAG renders from",
        "trialscreen manifest",
    )

    _command(
        sub,
        "roles",
        cmd_roles,
        "create/refresh PostgreSQL roles and grants ($TRIALSCREEN_ADMIN_URL)",
        "TRIALSCREEN_ADMIN_URL=postgresql://admin@db/trialscreen trialscreen roles",
    )

    doctor = _command(
        sub,
        "doctor",
        cmd_doctor,
        "check configuration, warehouse, roles, keys, Spark; exit 1 on a FAIL",
        "trialscreen doctor --config /etc/trialscreen/trialscreen.toml",
    )
    doctor.add_argument("--warehouse", metavar="URL", help="default: the configured warehouse URL")

    trials = sub.add_parser(
        "trials",
        help="the trial definitions",
        epilog="example:\n  trialscreen trials list",
        formatter_class=_HelpFormatter,
    )
    _global_options(trials, top=False)
    trials_sub = trials.add_subparsers(dest="trials_command", required=True)
    _command(
        trials_sub,
        "list",
        cmd_trials_list,
        "id, NCT id, title and cohorts of each",
        "trialscreen trials list",
    )

    bench = _command(
        sub,
        "bench",
        cmd_bench,
        "benchmark on generated populations",
        "trialscreen bench --sizes 1000 --repeat 1",
    )
    bench.add_argument(
        "--sizes", type=int, nargs="+", help="default 1000 10000 (none with --scale alone)"
    )
    bench.add_argument("--out", type=Path, default=Path("out/bench"), help="results folder")
    bench.add_argument("--seed", type=int, default=1, help="population seed (cached per size)")
    bench.add_argument(
        "--postgres",
        metavar="URL",
        help="also run ingest + dbt on this PostgreSQL server, in a database "
        "'trialscreen_bench' that the bench drops and recreates",
    )
    bench.add_argument("--repeat", type=int, default=3, help="best of N for parse and query")
    bench.add_argument(
        "--dbt-select", help="dbt selection (default: the whole project, as the nightly run)"
    )
    bench.add_argument(
        "--scale",
        type=int,
        nargs="+",
        default=[],
        metavar="PATIENTS",
        help="scale step: the nightly ingest + dbt build (write-audit-publish on) of a cached "
        "population of this size; wall time and peak RSS per step; exit 1 if the build fails",
    )

    from trialscreen.worklist.commands import add_commands as add_worklist_commands

    add_worklist_commands(sub)  # worklist export | mark | import (coordinators)

    # a command registered without _command still takes the global options after its name
    for child in _subparsers(parser):
        if "--verbose" not in child._option_string_actions:
            _global_options(child, top=False)
            child.formatter_class = _HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose += getattr(args, "verbose_after", 0)
    logs.configure(args.verbose)
    if args.command != "doctor":  # doctor reports a bad file as one of its findings
        from trialscreen import config

        try:
            config.setup(args.config)  # env > file > default (docs/configuration.md)
        except config.ConfigError as exc:  # names the file and field, never a value
            print(exc, file=sys.stderr)
            return EXIT_ERROR
    _check_trials(parser, args)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EmptyInput as exc:  # the operator's own path, no data: said as it is
        print(f"trialscreen {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # one line for the operator; the trace only at -vv
        if args.verbose >= 2:
            raise
        # a database error's text may quote a row: its class and table only (trialscreen.errors)
        print(f"trialscreen {args.command}: {summarize(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
