"""The nightly DAG against `trialscreen run` on the same drop (docs/benchmarks.md, "The nightly
DAG against `trialscreen run`"; issue 13 item 6).

    .venv/bin/python scripts/bench_dag.py DROP OUT [--screening-date 2026-11-20] [--trial axiom]

Under OUT (new): a fresh Airflow home, migrated first (`airflow db migrate`, not timed: a
deployment's one-time cost), then `trialscreen run` into its own warehouse and a process that
loads the DAG and runs one `dag.test()` into another, each under `/usr/bin/time`. Prints the
wall and CPU of both and the ratio. The pseudonym key comes from the environment
(TRIALSCREEN_PSEUDONYM_KEY), as for every run; a drop comes from `trialscreen synth`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIME = re.compile(r"^TIME wall (?P<wall>[\d.]+) user (?P<user>[\d.]+) sys (?P<sys>[\d.]+)$", re.M)


def _timed(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Run ``argv`` under /usr/bin/time; (wall, CPU) seconds and its output."""
    command = ["/usr/bin/time", "-f", "TIME wall %e user %U sys %S", *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    log.write_text(done.stdout + done.stderr)
    found = TIME.search(done.stderr)
    if done.returncode != 0 or found is None:
        sys.exit(f"{argv[0]} failed ({done.returncode}); see {log}")
    return float(found["wall"]), float(found["user"]) + float(found["sys"]), done.stdout


def _dag_test(drop: str, out: str, day: str, trial: str) -> None:
    """The child process: the DAG from dags/, one dag.test() night."""
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["trialscreen_nightly"]
    for task in dag.tasks:
        task.retries = 0  # a failure fails the measurement now
    loaded = time.perf_counter()
    night = date.fromisoformat(day)
    conf = {
        "trials": [trial],
        "input_dir": drop,
        "warehouse": str(Path(out) / "dag.duckdb"),
        "reports_dir": str(Path(out) / "dag_reports"),
    }
    run = dag.test(logical_date=datetime(night.year, night.month, night.day, 2, tzinfo=UTC),
                   run_conf=conf)  # fmt: skip
    print(f"DAG state {run.state}; imports and DagBag {loaded - started:.1f} s; "
          f"dag.test() {time.perf_counter() - loaded:.1f} s")  # fmt: skip
    if run.state != "success":
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("drop")
    parser.add_argument("out")
    parser.add_argument("--screening-date", default="2026-11-20")
    parser.add_argument("--trial", default="axiom")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _dag_test(args.drop, args.out, args.screening_date, args.trial)
        return
    out = Path(args.out)
    out.mkdir(parents=True)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(out / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
    }
    migrate = [str(BIN / "airflow"), "db", "migrate"]
    subprocess.run(migrate, env=env, capture_output=True, check=True)
    cli = [str(BIN / "trialscreen"), "run", "--input", args.drop, "--trial", args.trial,
           "--screening-date", args.screening_date, "--warehouse", str(out / "cli.duckdb"),
           "--reports-dir", str(out / "cli_reports")]  # fmt: skip
    cli_wall, cli_cpu, _ = _timed(cli, env, out / "cli.log")
    child = [sys.executable, __file__, args.drop, str(out), "--child",
             "--screening-date", args.screening_date, "--trial", args.trial]  # fmt: skip
    dag_wall, dag_cpu, printed = _timed(child, env, out / "dag.log")
    inner = re.search(r"dag\.test\(\) ([\d.]+) s", printed)
    dag_test = float(inner.group(1)) if inner else float("nan")
    print(f"trialscreen run: {cli_wall:.1f} s wall, {cli_cpu:.1f} CPU-s")
    print(f"DAG process: {dag_wall:.1f} s wall, {dag_cpu:.1f} CPU-s; dag.test() {dag_test:.1f} s")
    print(f"ratio: {dag_test / cli_wall:.2f}x wall (dag.test() alone), "
          f"{dag_cpu / cli_cpu:.2f}x CPU (processes)")  # fmt: skip


if __name__ == "__main__":
    main()
