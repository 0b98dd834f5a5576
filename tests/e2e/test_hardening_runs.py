"""Crash recovery, the run lock and run ids from outside (issue 9, item 6).

* a run killed with ``-9`` stays ``running``; the next run finds it with the lock free, marks
  it ``abandoned``, and its gate validates the records the killed run landed (the feeds
  suite reads every raw row above the last load a gate passed, not only this run's);
* a second run refuses with a clear message while the first holds the run lock;
* a run id that tries to be SQL (``evil' or run_id <> 'evil``) is refused and changes no
  audit row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from trialscreen import pipeline, pseudonym
from trialscreen.synth import generate
from trialscreen.warehouse import Warehouse, WarehouseBusy, run_lock

SCREENING_DATE = date(2026, 11, 20)
KEY = "hardening-test-key"
INJECTION = "evil' or run_id <> 'evil"

# The killed run: starts, lands the CSV feed plus one record a parser should never have let
# through (no record_id), then hangs holding the run lock until it is killed.
KILLED_RUN = textwrap.dedent(
    """
    import sys, time
    from datetime import date
    from pathlib import Path
    from trialscreen.pipeline import ingest_feed, start_run
    from trialscreen.warehouse import Warehouse, run_lock

    warehouse, drop = sys.argv[1], Path(sys.argv[2])
    with run_lock(warehouse):
        run_id = start_run(warehouse, date(2026, 11, 20), ["axiom"], "killed-run")
        ingest_feed(warehouse, drop, "csv", run_id)
        with Warehouse.connect(warehouse) as wh:
            wh.execute(
                "insert into raw.csv_observations (source_file, source_position, record_id, "
                "record_hash, patient_ref, status, effective_at, run_id, loaded_at, load_id) "
                "select source_file, 999999, null, 'broken', patient_ref, status, effective_at, "
                "run_id, loaded_at, load_id from raw.csv_observations limit 1"
            )
        print("landed", flush=True)
        time.sleep(600)
    """
)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return str(tmp_path / "wh.duckdb")
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture()
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs_drop")
    generate(patients=10, seed=3, out=root, screening_date=SCREENING_DATE)
    return root


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pseudonym.KEY_ENV, KEY)
    monkeypatch.delenv(pipeline.TRANSFORM_URL_ENV, raising=False)


def _runs(warehouse: str) -> dict[str, tuple[Any, ...]]:
    with Warehouse.connect(warehouse) as wh:
        rows = wh.query(
            "select run_id, status, message, validated_load_id from audit.pipeline_runs"
        )
    return {r[0]: r[1:] for r in rows}


def _kill_a_run(warehouse: str, drop: Path) -> None:
    env = {**os.environ, pseudonym.KEY_ENV: KEY}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, warehouse, str(drop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "landed", proc.stderr.read() if proc.stderr else ""
        # while it lives, its lock keeps every other run out
        with pytest.raises(WarehouseBusy, match="holds the run lock"):
            pipeline.start_run(warehouse, SCREENING_DATE, ["axiom"], "too-early")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_killed_run_is_abandoned_and_its_records_are_validated_by_the_next_gate(
    warehouse: str, drop: Path, tmp_path: Path
) -> None:
    _kill_a_run(warehouse, drop)
    assert _runs(warehouse)["killed-run"][0] == "running"  # kill -9: nobody finished it

    run_id = pipeline.start_run(warehouse, SCREENING_DATE, ["axiom"], "next-run")
    status, message, _ = _runs(warehouse)["killed-run"]
    assert status == "abandoned"
    assert "next-run" in message and "run lock free" in message
    counts = pipeline.ingest_feed(warehouse, drop, "csv", run_id)
    assert counts.files_new == 0  # the killed run's files were registered: nothing new

    outcome = pipeline.validate(warehouse, tmp_path / "reports", run_id, SCREENING_DATE)
    feeds = {a["name"]: a for a in outcome.assets if a["suite"] == "feeds"}
    assert feeds["raw.csv_observations"]["rows"] > 0  # the killed run's rows were read
    failed = {(f["asset"], f["expectation"], f["column"]) for f in outcome.blocking_failures}
    assert (
        "raw.csv_observations",
        "expect_column_values_to_not_be_null",
        "record_id",
    ) in failed
    assert not outcome.success
    assert _runs(warehouse)["next-run"][2] is None  # not validated: the next gate looks again


def test_rows_a_gate_passed_are_not_read_again(warehouse: str, drop: Path, tmp_path: Path) -> None:
    first = pipeline.start_run(warehouse, SCREENING_DATE, ["axiom"], "first")
    pipeline.ingest_feed(warehouse, drop, "csv", first)
    with Warehouse.connect(warehouse) as wh:  # the first gate passed through load 1
        wh.execute("update audit.pipeline_runs set validated_load_id = 1 where run_id = 'first'")
    second = pipeline.start_run(warehouse, SCREENING_DATE, ["axiom"], "second")
    pipeline.ingest_feed(warehouse, drop, "csv", second)  # no new file: nothing landed
    outcome = pipeline.validate(warehouse, tmp_path / "reports", second, SCREENING_DATE)
    feeds = {a["name"]: a for a in outcome.assets if a["suite"] == "feeds"}
    assert feeds["raw.csv_observations"]["rows"] == 0


def test_a_second_run_refuses_with_a_clear_message(warehouse: str, drop: Path) -> None:
    code = (
        "import sys, time\n"
        "from trialscreen.warehouse import run_lock\n"
        "with run_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, warehouse], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(WarehouseBusy, match="one run at a time per warehouse"):
            pipeline.run_pipeline(drop, SCREENING_DATE, warehouse)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    # freed by the holder's death: at once for a file lock; PostgreSQL releases the advisory
    # lock when its backend sees the client's socket close, a moment later on a loaded machine
    # (CI once asked within that moment and got WarehouseBusy)
    deadline = time.monotonic() + 60
    while True:
        try:
            with run_lock(warehouse):
                break
        except WarehouseBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_duckdb_file_open_elsewhere_gives_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    code = (
        "import sys, time, duckdb\n"
        "con = duckdb.connect(sys.argv[1])\n"
        "print('open', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        with pytest.raises(WarehouseBusy, match="open in another process"):
            Warehouse.connect(path)
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_an_injected_run_id_changes_no_audit_row(warehouse: str) -> None:
    for run_id in ("night-1", "night-2"):
        pipeline.start_run(warehouse, SCREENING_DATE, ["axiom"], run_id)
        pipeline.finish_run(warehouse, run_id, "published", message="ok")
    before = _runs(warehouse)
    with pytest.raises(ValueError, match="run_id"):
        pipeline.start_run(warehouse, SCREENING_DATE, ["axiom"], INJECTION)
    with pytest.raises(ValueError, match="run_id"):
        pipeline.finish_run(warehouse, INJECTION, "failed", message="rewritten")
    with pytest.raises(ValueError, match="run_id"):
        pipeline.publish(warehouse, INJECTION)
    assert _runs(warehouse) == before
    assert {status for status, _, _ in before.values()} == {"published"}
