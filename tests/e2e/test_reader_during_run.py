"""Analysts read while the night writes (DuckDB): a reader connected to the published file
(``warehouse.published_file``) during a run gets yesterday's rows, then today's.

The reader is another process, as an analyst's notebook is: DuckDB lets one process open the
warehouse file for writing and nobody else in, so the reader opens the published copy, which
publish replaces with one rename after the warehouse's own publish commits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.e2e.first_night import FirstNight
from trialscreen import pipeline, pseudonym
from trialscreen.warehouse import Warehouse, published_file

pytestmark = pytest.mark.slow  # a night of the whole pipeline after the shared first night

YESTERDAY = date(2026, 11, 20)
TODAY = YESTERDAY + timedelta(days=1)

# an analyst's session: one read-only connection kept open, queried on demand
READER = textwrap.dedent(
    """
    import json, sys, duckdb

    path = sys.argv[1]
    con = duckdb.connect(path, read_only=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "reconnect":
            con.close()
            con = duckdb.connect(path, read_only=True)
        if command == "warehouse":  # the warehouse file itself, during the run
            try:
                duckdb.connect(sys.argv[2], read_only=True).close()
                answer = {"opened": True}
            except duckdb.IOException as exc:
                answer = {"opened": False, "lock": "lock" in str(exc).lower()}
        else:
            rows = con.sql(
                "select run_id, screening_date, count(*) from marts.screening_results "
                "group by 1, 2 order by 1"
            ).fetchall()
            answer = {"rows": [[r, str(d), n] for r, d, n in rows]}
        print(json.dumps(answer), flush=True)
    """
)


class Reader:
    def __init__(self, published: Path, warehouse: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(published), str(warehouse)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, command: str = "query") -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the reader process ended (exit {self.proc.poll()})"
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _published_runs(warehouse: Path) -> list[list]:
    with Warehouse.connect(warehouse) as wh:
        rows = wh.query(
            "select run_id, screening_date, count(*) from marts.screening_results "
            "group by 1, 2 order by 1"
        )
    return [[r, str(d), n] for r, d, n in rows]


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory, first_night: FirstNight) -> Iterator[dict]:
    """Yesterday's night, published: a copy of the suite's shared first night
    (tests/e2e/first_night.py, 40 generated patients); tonight ingests its drop again."""
    assert first_night.screening_date == YESTERDAY
    root = tmp_path_factory.mktemp("reader")
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, first_night.key)
    wh = first_night.copy_to(root / "wh.duckdb", root / "reports")
    yield {
        "root": root,
        "wh": wh,
        "drop": first_night.drop,
        "first_night": first_night.warehouse,
        "yesterday": _published_runs(wh),
    }
    mp.undo()


def test_published_file_is_beside_the_warehouse_named_after_its_schema(night) -> None:
    path = published_file(night["wh"], "marts")
    assert path == night["root"] / "wh_published" / "marts.duckdb"
    assert path.is_file()
    assert published_file("postgresql://analyst@db:5432/trialscreen", "marts") is None
    # no staged copy is left behind, and restricted (PHI) is never in an analysts' file
    assert sorted(p.name for p in path.parent.iterdir()) == ["marts.duckdb"]
    # where the night's publish wrote it (this module's warehouse is a copy of that night's)
    written = published_file(night["first_night"], "marts")
    assert written == night["first_night"].parent / "wh_published" / "marts.duckdb"
    assert sorted(p.name for p in written.parent.iterdir()) == ["marts.duckdb"]


def test_reader_gets_yesterdays_rows_during_the_run_then_todays(night) -> None:
    root, wh = night["root"], night["wh"]
    yesterday = night["yesterday"]
    assert [r[1] for r in yesterday] == [YESTERDAY.isoformat()]
    reader = Reader(published_file(wh, "marts"), wh)
    try:
        assert reader.ask()["rows"] == yesterday

        run_id = pipeline.start_run(wh, TODAY, ["axiom"])
        for feed in ("fhir", "hl7", "csv"):
            pipeline.ingest_feed(wh, night["drop"], feed, run_id)
        pipeline.prepare_build(wh, ["axiom"])
        pipeline.build(wh, TODAY, run_id)
        # mid-run, the night's process holding the warehouse open for writing: the reader
        # cannot open the warehouse, and still reads yesterday's published rows
        with Warehouse.connect(wh) as writer:
            writer.execute("select count(*) from marts_candidate.screening_results")
            assert reader.ask("warehouse") == {"opened": False, "lock": True}
            assert reader.ask()["rows"] == yesterday
        outcome = pipeline.validate(wh, root / "reports", run_id, TODAY)
        assert outcome.success, outcome.summary()
        assert reader.ask()["rows"] == yesterday

        pipeline.publish(wh, run_id)
        today = _published_runs(wh)
        assert [r[:2] for r in today] == [[run_id, TODAY.isoformat()]]
        # the connection opened yesterday keeps yesterday's night, whole and consistent
        assert reader.ask()["rows"] == yesterday
        # a new connection sees tonight's tables, the same rows as the warehouse's
        assert reader.ask("reconnect")["rows"] == today
    finally:
        reader.close()


def test_a_publish_that_does_not_commit_keeps_the_readers_file(night) -> None:
    """The copy is staged before the warehouse's publish transaction and swapped in only
    after it commits: a transaction that fails leaves the published file and no staged copy."""
    wh = night["wh"]
    path = published_file(wh, "marts")
    before = path.read_bytes()
    run_id = pipeline.start_run(wh, TODAY + timedelta(days=1), ["axiom"])
    with Warehouse.connect(wh) as w:
        assert w.table_exists("marts_candidate.screening_funnel")  # something to stage
        # a view where publish replaces a table: the transaction fails on it, after the copy
        w.execute("drop table marts.screening_funnel")
        w.execute("create view marts.screening_funnel as select 1 as x")
    with pytest.raises(Exception, match="screening_funnel"):
        pipeline.publish(wh, run_id)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["marts.duckdb"]
