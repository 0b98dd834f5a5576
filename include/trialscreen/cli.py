"""TrialScreen: nightly pre-screening of a hospital's patients for clinical trials.

Exit status 0 when the command did what it says; otherwise 1 with a one-line reason on
stderr (no traceback unless -vv). The contract of every command is in
docs/specification.md#command-line.
"""

# Thin: this module parses arguments and calls the package; it decides nothing itself.

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from trialscreen import logs
from trialscreen.errors import summarize

log = logging.getLogger("trialscreen.cli")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got '{text}'") from None


@contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal, silent otherwise (CI logs stay readable)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not sys.stderr.isatty(),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def cmd_synth(args: argparse.Namespace) -> int:
    from trialscreen.synth import generate

    with _progress("generating patients", args.patients) as tick:
        summary = generate(
            patients=args.patients,
            seed=args.seed,
            out=args.out,
            screening_date=args.screening_date,
            progress=tick,
        )
    print(
        f"wrote {summary.patients} patients (seed {summary.seed}, screening date "
        f"{summary.screening_date}) to {args.out}: {len(summary.files)} files, "
        f"{summary.bad_records} deliberately bad records; expected outcomes in "
        f"{args.out / 'expected'} ({summary.seconds:.1f} s)"
    )
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from trialscreen.ingest import ingest
    from trialscreen.run_ids import new_run_id
    from trialscreen.warehouse import Warehouse

    run_id = new_run_id()
    with Warehouse.connect(args.warehouse) as wh, _progress("ingesting files", None) as tick:
        counts = ingest(wh, args.input, run_id, progress=lambda _feed, n: tick(n))
    for feed, c in counts.items():
        print(
            f"{feed:5} files new {c.files_new} skipped {c.files_skipped} | records_in "
            f"{c.records_in} = loaded {c.loaded} + duplicates {c.duplicates_skipped} "
            f"+ quarantined {c.quarantined} (ignored {c.ignored})"
        )
    return 0 if all(c.balanced for c in counts.values()) else 1


def cmd_run(args: argparse.Namespace) -> int:
    from trialscreen.pipeline import run_pipeline
    from trialscreen.settings import today_in_hospital_zone

    result = run_pipeline(
        input_dir=args.input,
        screening_date=args.screening_date or today_in_hospital_zone(),
        warehouse=args.warehouse,
        trials=args.trial or ["axiom"],
        reports_dir=args.reports_dir,
        dbt_docs=True,
    )
    print(result.summary())
    for label, path in result.artifacts.items():
        print(f"  {label:10} {path}")
    return 0 if result.published else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from trialscreen.demo import run_demo

    return run_demo(
        patients=args.patients, seed=args.seed, out=args.out, use_airflow=not args.no_airflow
    )


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
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trialscreen", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="configuration file (default: $TRIALSCREEN_CONFIG, else ./trialscreen.toml if "
        "present); the environment overrides it (docs/configuration.md)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the nightly job: ingest, build, validate, publish")
    run.add_argument("--input", type=Path, required=True, help="drop dir with fhir/ hl7/ csv/")
    run.add_argument(
        "--screening-date",
        type=_date,
        default=None,
        help="screen as of this date, YYYY-MM-DD (default: today in TRIALSCREEN_TIMEZONE)",
    )
    run.add_argument(
        "--warehouse",
        default="trialscreen.duckdb",
        help="DuckDB file or duckdb:///path, or a postgresql:// URL (default: %(default)s)",
    )
    run.add_argument("--trial", action="append", help="trial id or YAML path (repeatable)")
    run.add_argument("--reports-dir", type=Path, default=None, help="default: beside the warehouse")
    run.set_defaults(func=cmd_run)

    ing = sub.add_parser("ingest", help="land a feed drop in raw/quarantine only")
    ing.add_argument("--input", type=Path, required=True)
    ing.add_argument("--warehouse", default="trialscreen.duckdb")
    ing.set_defaults(func=cmd_ingest)

    syn = sub.add_parser("synth", help="generate a synthetic population with expected outcomes")
    syn.add_argument("--patients", type=int, default=1000)
    syn.add_argument("--seed", type=int, default=1)
    syn.add_argument("--out", type=Path, required=True)
    syn.add_argument("--screening-date", type=_date, default=date.today())
    syn.set_defaults(func=cmd_synth)

    demo = sub.add_parser("demo", help="synth + run + reports on the embedded warehouse")
    demo.add_argument("--patients", type=int, default=1000)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--out", type=Path, default=Path("demo"))
    demo.add_argument(
        "--no-airflow", action="store_true", help="run the steps without Airflow (faster)"
    )
    demo.set_defaults(func=cmd_demo)

    man = sub.add_parser("manifest", help="precompile the dbt manifest the DAG renders from")
    man.set_defaults(func=cmd_manifest)

    roles = sub.add_parser(
        "roles", help="create/refresh PostgreSQL roles and grants (TRIALSCREEN_ADMIN_URL)"
    )
    roles.set_defaults(func=cmd_roles)

    doctor = sub.add_parser(
        "doctor", help="check configuration, warehouse, roles, keys, Spark; exit 1 on a FAIL"
    )
    doctor.add_argument("--warehouse", help="default: the configured warehouse URL")
    doctor.set_defaults(func=cmd_doctor)

    trials = sub.add_parser("trials", help="the trial definitions")
    trials_sub = trials.add_subparsers(dest="trials_command", required=True)
    trials_list = trials_sub.add_parser("list", help="id, NCT id, title and cohorts of each")
    trials_list.set_defaults(func=cmd_trials_list)

    bench = sub.add_parser("bench", help="benchmark on generated populations")
    bench.add_argument(
        "--sizes", type=int, nargs="+", help="default 1000 10000 (none with --scale alone)"
    )
    bench.add_argument("--out", type=Path, default=Path("out/bench"))
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
    bench.set_defaults(func=cmd_bench)
    from trialscreen.worklist.commands import add_commands as add_worklist_commands

    add_worklist_commands(sub)  # worklist export | mark | import (coordinators)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose)
    if args.command != "doctor":  # doctor reports a bad file as one of its findings
        from trialscreen import config

        try:
            config.setup(args.config)  # env > file > default (docs/configuration.md)
        except config.ConfigError as exc:  # names the file and field, never a value
            print(exc, file=sys.stderr)
            return 1
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the operator; the trace only at -vv
        if args.verbose >= 2:
            raise
        # a database error's text may quote a row: its class and table only (trialscreen.errors)
        print(f"trialscreen {args.command}: {summarize(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
