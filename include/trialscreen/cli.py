"""TrialScreen: nightly pre-screening of a hospital's patients for clinical trials.

Every command prints what it did on stdout and says why it stopped in one line on stderr (no
traceback unless -vv). On a terminal, trialscreen run shows its progress on stderr; off a
terminal (cron, Airflow, CI) it prints only its summary. Exit status: 0 done (run: published),
1 error, 2 usage error, 3 quality gate blocked publication (run). The contract of every
command is in docs/specification.md#command-line.
"""

# Thin: this module parses arguments and calls the commands (trialscreen.cli_commands),
# which call the package; it decides nothing itself.

from __future__ import annotations

import argparse
import difflib
import logging
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from trialscreen import logs
from trialscreen.cli_commands import (  # the exit status is part of the command line
    DEFAULT_WAREHOUSE,
    EXIT_ERROR,
    EXIT_GATE_BLOCKED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    WAREHOUSE_ENV,
    EmptyInput,
    cmd_bench,
    cmd_demo,
    cmd_doctor,
    cmd_ingest,
    cmd_manifest,
    cmd_roles,
    cmd_run,
    cmd_synth,
    cmd_trials_list,
)
from trialscreen.errors import summarize

log = logging.getLogger("trialscreen.cli")

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
