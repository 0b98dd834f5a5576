"""Landing a drop: every record loaded, skipped as a duplicate or quarantined — never lost."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trialscreen import logs, schema
from trialscreen.ingest import ingest
from trialscreen.warehouse import Warehouse

BUNDLES = 12


def _build_drop(external: Path, root: Path) -> Path:
    """A realistic drop from the real external data plus a few broken files."""
    drop = root / "drop"
    (drop / "fhir").mkdir(parents=True)
    (drop / "hl7").mkdir()
    (drop / "csv").mkdir()
    bundles = sorted((external / "synthea-smart-r4-bundles" / "bundles").glob("*.json.gz"))
    for path in bundles[:BUNDLES]:
        shutil.copy(path, drop / "fhir" / path.name)
    # a truncated gzip: the file is quarantined, the run goes on
    data = (bundles[0]).read_bytes()
    (drop / "fhir" / "Broken_truncated.json.gz").write_bytes(data[: len(data) // 3])
    # bulk NDJSON with a non-JSON line and an Observation without a subject
    lines = [
        '{"resourceType":"Patient","id":"p1","identifier":[{"type":{"coding":[{"code":"MR"}]},'
        '"value":"NDJ-0001"}],"name":[{"family":"Zyx","given":["Quentin"]}],'
        '"gender":"female","birthDate":"1970-01-02"}',
        "this is not json",
        '{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":'
        '"http://loinc.org","code":"718-7"}]},"subject":{"reference":"Patient/p1"},'
        '"effectiveDateTime":"2026-11-01T08:00:00Z","valueQuantity":{"value":12.1,'
        '"unit":"g/dL","code":"g/dL"}}',
        '{"resourceType":"Observation","id":"o2","status":"final","code":{"coding":[{"system":'
        '"http://loinc.org","code":"718-7"}]},"effectiveDateTime":"2026-11-01T08:00:00Z",'
        '"valueQuantity":{"value":11.0,"unit":"g/dL"}}',
    ]
    (drop / "fhir" / "Observation.ndjson").write_text("\n".join(lines) + "\n")
    for path in sorted((external / "hl7v2-oru-samples").rglob("*")):
        if path.is_file() and path.suffix in {".hl7", ".txt"}:
            shutil.copy(path, drop / "hl7" / f"{path.parent.name}__{path.name}")
    synthea_csv = external / "synthea-dbt-synthea-csv"
    for name in ("patients", "observations", "conditions", "medications", "encounters"):
        shutil.copy(synthea_csv / f"{name}.csv", drop / "csv" / f"{name}.csv")
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        gz.write((synthea_csv / "observations.csv").read_bytes())
    (drop / "csv" / "lab_results.csv.gz").write_bytes(buf.getvalue()[:200])
    return drop


@pytest.fixture(scope="module")
def drop(external_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_drop(external_dir, tmp_path_factory.mktemp("ingest"))


def _row_counts(wh: Warehouse) -> dict[str, int]:
    tables = [f"raw.{schema.raw_table(f, e)}" for f in schema.FEEDS for e in schema.ENTITIES]
    tables += ["quarantine.records", "audit.ingested_files"]
    return {t: int(wh.scalar(f"select count(*) from {t}")) for t in tables}


@pytest.fixture(scope="module")
def duck_loaded(drop: Path, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("wh") / "wh.duckdb"
    stream = io.StringIO()
    logs.configure(verbosity=2, stream=stream)
    try:
        with Warehouse.connect(path) as wh:
            first = ingest(wh, drop, "run-1")
            counts_after_first = _row_counts(wh)
            second = ingest(wh, drop, "run-2")
            counts_after_second = _row_counts(wh)
    finally:
        logs.configure(verbosity=0)
    return {
        "path": path,
        "first": first,
        "second": second,
        "rows1": counts_after_first,
        "rows2": counts_after_second,
        "log": stream.getvalue(),
    }


def test_every_record_is_loaded_skipped_or_quarantined(duck_loaded) -> None:
    for feed, c in duck_loaded["first"].items():
        assert c.records_in > 0, feed
        assert c.records_in == c.loaded + c.duplicates_skipped + c.quarantined, feed


def test_loading_the_same_drop_twice_changes_no_row(duck_loaded) -> None:
    assert duck_loaded["rows1"] == duck_loaded["rows2"]
    for feed, c in duck_loaded["second"].items():
        assert c.files_new == 0, feed
        assert c.files_skipped == duck_loaded["first"][feed].files_seen, feed
        assert c.records_in == c.loaded == c.quarantined == 0


def test_broken_files_are_quarantined_whole_and_the_rest_loads(duck_loaded) -> None:
    with Warehouse.connect(duck_loaded["path"]) as wh:
        files = dict(
            wh.query("select source_file, error from quarantine.records where scope = 'file'")
        )
        fhir_patients = wh.scalar("select count(*) from raw.fhir_patients")
    assert "fhir/Broken_truncated.json.gz" in files
    assert "csv/lab_results.csv.gz" in files
    assert fhir_patients >= BUNDLES  # the good bundles of the same folder landed


def test_bad_ndjson_line_and_subjectless_observation_quarantined(duck_loaded) -> None:
    with Warehouse.connect(duck_loaded["path"]) as wh:
        rows = wh.query(
            "select source_position, error from quarantine.records "
            "where source_file = 'fhir/Observation.ndjson' order by source_position"
        )
        landed = wh.query(
            "select record_id from raw.fhir_observations "
            "where source_file = 'fhir/Observation.ndjson'"
        )
    assert [r[0] for r in rows] == [2, 4]
    assert [r[0] for r in landed] == ["o1"]


def test_synthea_csv_observations_all_land(duck_loaded) -> None:
    with Warehouse.connect(duck_loaded["path"]) as wh:
        n = wh.scalar(
            "select count(*) from raw.csv_observations where source_file = 'csv/observations.csv'"
        )
        enc = wh.scalar(
            "select ignored from audit.ingested_files where source_file = 'csv/encounters.csv'"
        )
    assert n == 990
    assert enc == 604


def test_redelivered_file_under_new_name_is_skipped_by_content_hash(
    drop: Path, tmp_path: Path
) -> None:
    redrop = tmp_path / "redrop"
    shutil.copytree(drop / "hl7", redrop / "hl7")
    with Warehouse.connect(tmp_path / "wh.duckdb") as wh:
        first = ingest(wh, redrop, "r1")["hl7"]
        for path in list((redrop / "hl7").iterdir()):
            path.rename(path.with_name("renamed_" + path.name))
        again = ingest(wh, redrop, "r2")["hl7"]
    assert first.files_new > 50
    assert again.files_new == 0 and again.files_skipped == first.files_seen


def test_records_already_landed_in_another_file_count_as_duplicates(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "fhir").mkdir(parents=True)
    line = (
        '{"resourceType":"Patient","id":"p%d","identifier":[{"value":"DUP-%d"}],'
        '"gender":"male","birthDate":"1980-05-05"}'
    )
    (drop / "fhir" / "Patient.1.ndjson").write_text("\n".join(line % (i, i) for i in range(3)))
    with Warehouse.connect(tmp_path / "wh.duckdb") as wh:
        ingest(wh, drop, "r1")
        (drop / "fhir" / "Patient.2.ndjson").write_text("\n".join(line % (i, i) for i in range(5)))
        second = ingest(wh, drop, "r2")["fhir"]
        total = wh.scalar("select count(*) from raw.fhir_patients")
    assert (second.records_in, second.loaded, second.duplicates_skipped) == (5, 2, 3)
    assert total == 5


def test_logs_of_a_load_carry_no_mrn_or_name(duck_loaded) -> None:
    log_text = duck_loaded["log"]
    assert "feed ingested" in log_text  # the capture really saw the DEBUG/INFO lines
    with Warehouse.connect(duck_loaded["path"]) as wh:
        phi = wh.query(
            "select mrn, family_name, given_name, cast(birth_date as varchar) "
            "from raw.fhir_patients union all "
            "select mrn, family_name, given_name, cast(birth_date as varchar) "
            "from raw.hl7_patients"
        )
    # identifiers of 4+ characters; names of 5+ so that HL7 fixture names like "test" do not
    # match ordinary words of a log line
    values = {mrn for mrn, *_ in phi if mrn and len(mrn) >= 4}
    values |= {v for _, *rest in phi for v in rest if v and len(v) >= 5}
    assert len(values) > 20
    leaked = sorted(v for v in values if v in log_text)
    assert leaked == []


@pytest.mark.postgres
def test_postgres_and_duckdb_land_identical_row_counts(
    duck_loaded, drop: Path, pg_database: str
) -> None:
    with Warehouse.connect(pg_database) as wh:
        counts = ingest(wh, drop, "run-1")
        rows = _row_counts(wh)
    assert rows == duck_loaded["rows1"]
    for feed, c in counts.items():
        first = duck_loaded["first"][feed]
        assert (c.records_in, c.loaded, c.duplicates_skipped, c.quarantined) == (
            first.records_in,
            first.loaded,
            first.duplicates_skipped,
            first.quarantined,
        )


def test_unreadable_drop_folder_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    with Warehouse.connect(tmp_path / "wh.duckdb") as wh:
        counts = ingest(wh, tmp_path / "drop", "r1")
    assert all(c.files_seen == 0 and c.balanced for c in counts.values())


def test_logging_is_quiet_by_default() -> None:
    logs.configure(verbosity=0)
    assert logging.getLogger("trialscreen").level == logging.WARNING


def test_small_flushes_give_the_same_counts_as_one_batch(
    drop: Path, duck_loaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are written in batches to bound memory; duplicates across batches still count."""
    import trialscreen.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "FLUSH_ROWS", 50)
    with Warehouse.connect(tmp_path / "wh.duckdb") as wh:
        counts = ingest(wh, drop, "run-1")
        rows = _row_counts(wh)
    assert rows == duck_loaded["rows1"]
    for feed, c in counts.items():
        first = duck_loaded["first"][feed]
        assert (c.loaded, c.duplicates_skipped, c.quarantined) == (
            first.loaded,
            first.duplicates_skipped,
            first.quarantined,
        )


def _landed(wh: Warehouse) -> dict[str, list[tuple[object, ...]]]:
    """Every raw, quarantine and registry row, without the run's stamps, in a stable order."""
    stamps = {"run_id", "loaded_at", "load_id", "quarantined_at", "ingested_at"}
    out = {}
    tables = [f"raw.{schema.raw_table(f, e)}" for f in schema.FEEDS for e in schema.TABLE_COLUMNS]
    for table in [*tables, "quarantine.records", "audit.ingested_files"]:
        schema_name, name = table.split(".")
        cols = [
            r[0]
            for r in wh.query(
                "select column_name from information_schema.columns where table_schema = ? "
                "and table_name = ? order by ordinal_position",
                [schema_name, name],
            )
            if r[0] not in stamps
        ]
        listed = ", ".join(cols)
        out[table] = wh.query(f"select {listed} from {table} order by {listed}")
    return out


def test_worker_processes_and_file_parts_land_the_same_rows(
    drop: Path, duck_loaded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing in worker processes, with NDJSON files cut into line-aligned parts, lands
    exactly what parsing in the ingest process does: rows, positions, quarantine, registry."""
    from trialscreen.ingest import parse as parse_module

    big = tmp_path / "big"
    shutil.copytree(drop, big)
    # an NDJSON file of many lines (CRLF and LF mixed, blank lines, a bad one) to cut in parts
    lines = []
    for i in range(300):
        record = {
            "resourceType": "Observation",
            "id": f"x{i}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2026-11-01T08:00:00Z",
            "valueQuantity": {"value": i % 20 + 0.5, "unit": "g/dL", "code": "g/dL"},
        }
        lines.append(json.dumps(record))
        if i % 37 == 0:
            lines.append("not json at all")
        if i % 41 == 0:
            lines.append("")
    body = "\r\n".join(lines[:150]) + "\r\n" + "\n".join(lines[150:]) + "\n"
    (big / "fhir" / "Observation.7.ndjson").write_text(body)
    # a file of no JSON line at all, and one of blank lines only: whole-file verdicts
    (big / "fhir" / "Observation.8.ndjson").write_text("garbage line\n" * 400)
    (big / "fhir" / "Observation.9.ndjson").write_text("   \n" * 2000)

    monkeypatch.setenv(parse_module.WORKERS_ENV, "0")
    with Warehouse.connect(tmp_path / "serial.duckdb") as wh:
        serial = ingest(wh, big, "run-1")
        expected = _landed(wh)

    monkeypatch.setenv(parse_module.WORKERS_ENV, "2")
    monkeypatch.setattr(parse_module, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parse_module, "PART_BYTES", 2048)
    monkeypatch.setattr(parse_module, "UNIT_BYTES", 64 * 1024)
    cut = parse_module.units(
        "fhir",
        [(p, p.stat().st_size) for p in sorted((big / "fhir").glob("Observation.[789].ndjson"))],
    )
    assert sum(isinstance(u[0], parse_module.Part) for u in cut) > 10  # really cut in parts
    with Warehouse.connect(tmp_path / "parallel.duckdb") as wh:
        parallel = ingest(wh, big, "run-1")
        got = _landed(wh)

    for feed in schema.FEEDS:
        assert parallel[feed].as_row() | {"seconds": 0} == serial[feed].as_row() | {"seconds": 0}
        assert parallel[feed].balanced
    assert parallel["fhir"].worker_peak_rss_mb > 0  # the workers did the parsing
    for table, rows in expected.items():
        assert got[table] == rows, table
    files = {r[2]: r for r in got["audit.ingested_files"]}
    assert files["fhir/Observation.8.ndjson"][4:] == (1, 0, 0, 1, 0)  # one file-scope row
    assert files["fhir/Observation.9.ndjson"][4:] == (1, 0, 0, 1, 0)  # "file is empty"


def _stat(pid: int | str) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (state, ppid, ...); [] once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _alive(pid: int) -> bool:
    state = _stat(pid)[:1]
    return state not in ([], ["Z"])  # a zombie has ended; pid 1 here may not reap it


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for folder in Path("/proc").glob("[0-9]*"):
        fields = _stat(folder.name)
        if fields[1:2] == [str(pid)] and fields[0] != "Z":
            found.append(int(folder.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_parse_workers_end_when_the_ingest_is_killed() -> None:
    """docs/decisions.md "Parse workers end with the run": a run killed with SIGKILL (a
    scheduler's timeout) leaves no parse worker behind, busy or waiting on its queue."""
    code = (
        "import time\n"
        "from trialscreen.ingest.parse import parse_pool\n"
        "pool = parse_pool(2)\n"
        "list(pool.map(time.sleep, [1, 1]))\n"  # both workers started, past their bootstrap
        "busy = [pool.submit(time.sleep, 120) for _ in range(4)]\n"
        "time.sleep(0.5)\n"
        "print('ready', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = [p for p in workers if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]
        assert len(workers) == 2, workers
    finally:
        proc.kill()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in workers if _alive(p)]
    for pid in left:  # not to leave them to the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert left == []


# A fresh process frees a 16 MiB buffer (a parsed part's size) and allocates another; glibc's
# counters say whether the second one was mapped on its own (returned to the system when
# freed) or taken from the heap
_SECOND_BUFFER = """
import ctypes, sys
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "fixed":
    from trialscreen.ingest.parse import return_large_buffers
    return_large_buffers()
buffer = bytearray(16 << 20)
del buffer
buffer = bytearray(16 << 20)
print(libc.mallinfo2().hblkhd >= 16 << 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize(("mode", "mapped"), [("fixed", "True"), ("default", "False")])
def test_the_ingest_maps_large_buffers_on_their_own(mode: str, mapped: str) -> None:
    """docs/decisions.md "The ingest returns the memory it frees": with the threshold fixed the
    second 16 MiB buffer is mapped on its own; glibc's default takes it from the heap, which
    keeps what is freed (the case that shows the test can fail)."""
    done = subprocess.run(
        [sys.executable, "-c", _SECOND_BUFFER, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == mapped


def test_tables_of_an_older_release_get_their_new_columns_and_a_complete_one_no_ddl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ensure_tables adds the columns a newer release defined (timestamps' offsets backfilled
    with 0, as landed before offsets were kept); on a warehouse that has them all it reads
    the catalog and executes nothing."""
    from trialscreen.ingest import LOADS_COLUMNS, ensure_tables

    db = tmp_path / "older.duckdb"
    with Warehouse.connect(db) as wh:
        ensure_tables(wh)
        wh.execute("alter table raw.hl7_observations drop column effective_at_offset_min")
        wh.execute("alter table audit.loads drop column " + wh.column_names("audit.loads")[-1])
        wh.execute(
            "insert into raw.hl7_observations (record_id, effective_at) "
            "values ('landed-before-offsets', timestamp '2026-01-02 03:04:05')"
        )
        ensure_tables(wh)
        offset = wh.scalar(
            "select effective_at_offset_min from raw.hl7_observations "
            "where record_id = 'landed-before-offsets'"
        )
        assert offset == 0
        assert len(wh.column_names("audit.loads")) == len(LOADS_COLUMNS)

        def no_ddl(sql: str, params: object = None) -> None:
            pytest.fail(f"a complete warehouse was changed: {sql}")

        monkeypatch.setattr(wh, "execute", no_ddl)
        ensure_tables(wh)
