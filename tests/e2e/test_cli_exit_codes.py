"""`trialscreen run` as a scheduler sees it (issue 13): exit 3 when the quality gate blocks
publication, 0 when the run publishes, an alert on a blocked gate with --notify, progress on a
terminal and silence off one, --allow-empty for a night with no files.

Two real runs of the CLI (subprocesses) on one small warehouse:

1. a run killed earlier left a record no parser should let through (no source_file) in
   raw.csv_observations; tonight's gate reads it and blocks: exit 3, nothing published, one
   ``gate_blocked`` alert to a webhook on this machine. This run has a terminal (a pty): its
   step banners and dbt node count are drawn.
2. the bad record removed, a night with no files (``--allow-empty``), no terminal: the gate
   passes, the run publishes, exit 0, no progress printed, no alert sent.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from trialscreen import cli, pipeline, pseudonym
from trialscreen.dag_docs import docs_key
from trialscreen.notify import WEBHOOK_URL_ENV
from trialscreen.synth import generate
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # two pipeline runs on a small population

SCREENING_DATE = date(2026, 11, 20)
KEY = "cli-exit-codes-test-key"
TRIALSCREEN = str(Path(sys.executable).parent / "trialscreen")


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Webhook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Webhook.received
    finally:
        server.shutdown()
        server.server_close()


def _on_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal (120 columns) as stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def _runs(warehouse: Path) -> dict[str, tuple[str, str]]:
    with Warehouse.connect(warehouse) as wh:
        rows = wh.query("select run_id, status, message from audit.pipeline_runs")
    return {r[0]: (r[1], r[2] or "") for r in rows}


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory, webhook) -> dict[str, Any]:
    url, alerts = webhook
    root = tmp_path_factory.mktemp("cli_exit_codes")
    generate(patients=10, seed=3, out=root / "drop", screening_date=SCREENING_DATE)
    (root / "empty").mkdir()
    warehouse = root / "wh.duckdb"
    env = {
        **os.environ,
        pseudonym.KEY_ENV: KEY,
        WEBHOOK_URL_ENV: url,
        "TERM": "xterm",
        "COLUMNS": "120",
    }
    env.pop(pipeline.TRANSFORM_URL_ENV, None)

    # a run killed after landing the CSV feed and one record without its source file
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    try:
        crashed = pipeline.start_run(warehouse, SCREENING_DATE, ["axiom"], "crashed-run")
        pipeline.ingest_feed(warehouse, root / "drop", "csv", crashed)
    finally:
        mp.undo()
    with Warehouse.connect(warehouse) as wh:
        # a cancelled result (staging keeps it, the marts ignore it) that lost its lineage:
        # dbt has no test for it, the gate's raw suite blocks on it
        wh.execute(
            "insert into raw.csv_observations select * replace (null::varchar as source_file, "
            "'no-lineage-1' as record_id, 'broken' as record_hash, 999999 as source_position, "
            "'cancelled' as status) from raw.csv_observations limit 1"
        )

    common = ["--warehouse", str(warehouse), "--reports-dir", str(root / "reports"), "--notify"]
    blocked_status, blocked_output = _on_terminal(
        [
            TRIALSCREEN,
            "run",
            "--input",
            str(root / "drop"),
            *common,
            "--screening-date",
            SCREENING_DATE.isoformat(),
        ],
        env,
    )
    after_blocked = _runs(warehouse)
    docs = root / "reports" / "dbt_docs"
    docs_after_block = ((docs / "index.html").is_file(), (docs / ".generated-from.json").exists())
    with Warehouse.connect(warehouse) as wh:
        published_after_block = wh.table_exists("marts.screening_results")
        wh.execute("delete from raw.csv_observations where record_id = 'no-lineage-1'")
    alerts_after_block = list(alerts)

    empty_night = subprocess.run(
        [
            TRIALSCREEN,
            "run",
            "--input",
            str(root / "empty"),
            "--allow-empty",
            *common,
            "--screening-date",
            (SCREENING_DATE + timedelta(days=1)).isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    with Warehouse.connect(warehouse) as wh:
        screened = (
            wh.scalar("select count(*) from marts.screening_results")
            if wh.table_exists("marts.screening_results")
            else None
        )
    return {
        "blocked_status": blocked_status,
        "blocked_output": blocked_output,
        "after_blocked": after_blocked,
        "published_after_block": published_after_block,
        "alerts_after_block": alerts_after_block,
        "empty_night": empty_night,
        "screened": screened,
        "alerts": list(alerts),
        "runs": _runs(warehouse),
        "docs_after_block": docs_after_block,
        "docs_key": json.loads((docs / ".generated-from.json").read_text())["key"],
        "docs_key_expected": docs_key(warehouse),
    }


def test_blocked_gate_exits_3_and_publishes_nothing(nights) -> None:
    assert nights["blocked_status"] == cli.EXIT_GATE_BLOCKED, nights["blocked_output"][-3000:]
    assert "quality gate blocked publication (exit 3)" in nights["blocked_output"]
    assert not nights["published_after_block"]
    tonight = {r: v for r, v in nights["after_blocked"].items() if r != "crashed-run"}
    [(status, message)] = tonight.values()
    assert status == "failed"
    assert "quality gate failed, nothing published" in message
    assert "expect_column_values_to_not_be_null" in message


def test_the_dbt_docs_are_kept_from_the_first_published_night(nights) -> None:
    """trialscreen run writes no dbt docs site on the blocked night (the site describes the
    published tables; that night's catalog may lack tables); the published night after it
    writes the site and records what it was made from, so the nights after keep it unless
    the project, releases or warehouse change (trialscreen.dag_docs, the DAG's rule too)."""
    assert nights["docs_after_block"] == (False, False)
    assert nights["docs_key"] == nights["docs_key_expected"]


def test_blocked_gate_sends_one_gate_blocked_alert(nights) -> None:
    [alert] = nights["alerts_after_block"]
    [blocked_run] = [r for r in nights["after_blocked"] if r != "crashed-run"]
    assert alert["kind"] == "gate_blocked"
    assert alert["run_id"] == blocked_run
    assert alert["trials"] == ["axiom"]
    assert alert["counts"]["loaded"] > 0
    assert "sent to webhook" in nights["blocked_output"]


def test_progress_is_drawn_on_a_terminal(nights) -> None:
    output = nights["blocked_output"]
    for banner in ("[1/5] ingest", "[2/5] build", "[3/5] validate", "[5/5] reports"):
        assert banner in output
    assert "[4/5] publish" not in output  # the gate blocked: publish never began
    assert "ingest done in" in output
    assert "dbt nodes, 0 failed" in output  # counted from dbt's NodeFinished events
    assert "run took" in output


def test_empty_night_with_allow_empty_publishes_and_exits_0(nights) -> None:
    night = nights["empty_night"]
    assert night.returncode == cli.EXIT_OK, (night.stdout + night.stderr)[-3000:]
    assert ": published" in night.stdout
    assert (nights["screened"] or 0) > 0  # the records landed before, screened as of tonight


def test_no_progress_and_no_alert_off_a_terminal_when_published(nights) -> None:
    night = nights["empty_night"]
    assert "[1/5]" not in night.stderr and "run took" not in night.stderr
    assert len(nights["alerts"]) == 1  # published: --notify alerts only on failure
