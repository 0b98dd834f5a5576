"""Incremental nights (issue 14, item 2; docs/decisions.md "Incremental nights"): a sequence of
nightly runs in which the normalized models recompute only the patients new loads changed
publishes exactly the marts (every row of every published table) the same sequence publishes
with ``--full-refresh`` every night, on DuckDB here and on PostgreSQL in
test_incremental_nights_postgres.py (the same tests).

The nights (a 40-patient generated population, then small hand-written drops):

1. the generated drop (a first build is a full one);
2. incremental: a late HL7 correction (status C, a later MSH-7) of a neutrophil count, an HL7
   entered-in-error (status W) of a haemoglobin, a CSV patient merge, a new CSV patient who
   turns 18 before night 5, and two files of night 1 delivered again (no new rows);
3. incremental, gate blocked: a new HL7 result, and a raw row without lineage landed in the
   night's load (the gate's raw suite blocks it; it would count as a lab result). Nothing is
   published; the operator removes the row;
4. nothing delivered: the last build was not published, so this night rebuilds whole, and
   publishes;
5. incremental, 40 days later, night 1's files delivered again (no new rows, so the
   row-level models recompute nothing): every window slides past results that counted, and
   the CSV patient's birthday passed.

The ``--full-refresh`` sequence lands the same files under the same run ids; it skips the
blocked night (a blocked night publishes nothing) and lands night 3's file on night 4. Night 1
is the same full build on both sides: it runs once and the full sequence starts from a copy.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.e2e.first_night import FirstNight, copy_duckdb_warehouse
from trialscreen import pipeline, pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.settings import TIMEZONE_ENV
from trialscreen.transform import PROJECT_DIR_ENV
from trialscreen.warehouse import Warehouse, WarehouseUrl

pytestmark = pytest.mark.slow  # eight pipeline runs per engine on 40 patients

KEY = "incremental-nights-test-key"
NIGHT_1 = date(2026, 11, 20)
DATES = {
    1: NIGHT_1,
    2: NIGHT_1 + timedelta(days=1),
    3: NIGHT_1 + timedelta(days=2),
    4: NIGHT_1 + timedelta(days=3),
    5: NIGHT_1 + timedelta(days=43),
}
RUN_IDS = {n: f"incremental-night-{n}" for n in DATES}
PUBLISHED_SCHEMAS = ("marts", "restricted")
# set by the clock or the load, not by the data (the two sequences land at other instants)
CLOCK_COLUMNS = frozenset({"recorded_at", "loaded_at", "published_at", "built_at"})
BIRTHDAY_MRN = "MRN9000001"

CORRECTION = "\r".join(
    [
        "MSH|^~\\&|LAB|HOSP|TRIALSCREEN|HOSP|20261120180000||ORU^R01|INC000000001|P|2.5.1",
        "PID|1||MRN0000002^^^HOSP^MR||Jensen^Ana||19570313|F",
        "OBR|1|PL00000002001|ORD00000002001^LAB|LABPANEL^Lab panel^L|||20261112090500-0500",
        "OBX|1|NM|751-8^Neutrophils abs^LN||0.4|10*3/uL|1.8 to 7.7|L|||C|||20261112090500-0500",
        "OBX|2|NM|718-7^Hemoglobin^LN||12.2|g/dL|12.0-16.0|N|||W|||20261112090500-0500",
    ]
)
NEW_RESULT = "\r".join(
    [
        "MSH|^~\\&|LAB|HOSP|TRIALSCREEN|HOSP|20261121170000||ORU^R01|INC000000002|P|2.5.1",
        "PID|1||MRN0000005^^^HOSP^MR||Doe^Kim||19600101|F",
        "OBR|1|PL00000005099|ORD00000005099^LAB|LABPANEL^Lab panel^L|||20261121090000+0000",
        "OBX|1|NM|777-3^Platelets^LN||61|10*3/uL|150-400|L|||F|||20261121090000+0000",
    ]
)


@pytest.fixture(scope="module")
def drops(tmp_path_factory: pytest.TempPathFactory, first_night: FirstNight) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("incremental_drops")
    first = first_night.drop  # the generated drop, 40 patients, seed 41 (read, not written)
    second = root / "night2"
    (second / "hl7").mkdir(parents=True)
    (second / "csv").mkdir()
    (second / "fhir").mkdir()
    (second / "hl7" / "late_correction.hl7").write_text(CORRECTION + "\r")
    (second / "csv" / "patient_merges.csv").write_text(
        "retired_mrn,surviving_mrn,merged_at\nMRN0000014,MRN0000012,2026-11-20T10:00:00Z\n"
    )
    birth = date(DATES[5].year - 18, DATES[5].month, DATES[5].day) - timedelta(days=10)
    (second / "csv" / "patients.csv").write_text(
        "mrn,family_name,given_name,birth_date,sex,deceased_at\n"
        f"{BIRTHDAY_MRN},Young,Sam,{birth.isoformat()},female,\n"
    )
    shutil.copy(first / "csv" / "lab_results.csv", second / "csv" / "lab_results.csv")
    shutil.copy(first / "fhir" / "Patient.ndjson", second / "fhir" / "Patient.ndjson")
    third = root / "night3"
    (third / "hl7").mkdir(parents=True)
    (third / "hl7" / "new_result.hl7").write_text(NEW_RESULT + "\r")
    (root / "empty").mkdir()
    return {"night1": first, "night2": second, "night3": third, "empty": root / "empty"}


def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every published table, every row, the clock's columns left out."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    with Warehouse.connect(url) as wh:
        for schema in PUBLISHED_SCHEMAS:
            for (name,) in wh.query(
                "select table_name from information_schema.tables "
                f"where table_schema = {wh.param} and table_type = 'BASE TABLE'",
                [schema],
            ):
                frame = wh.query_frame(f"select * from {schema}.{name}")
                frame = frame.select([c for c in frame.columns if c not in CLOCK_COLUMNS])
                tables[f"{schema}.{name}"] = sorted(frame.rows(), key=repr)
    return tables


def _run(drop: Path, night: int, url: str, reports: Path, full: bool) -> pipeline.RunResult:
    return run_pipeline(
        drop,
        DATES[night],
        url,
        reports_dir=reports,
        run_id=RUN_IDS[night],
        full_refresh=full,
    )


def _sequences(
    drops: dict[str, Path],
    incremental: str,
    full: str,
    root: Path,
    first_night: FirstNight,
) -> dict[str, Any]:
    """Night 1 is a full build on both sides (a first build is whole, asked for or not), of
    the same files under the same run id: it runs once and the full-refresh sequence starts
    from a copy of it. On DuckDB it is the suite's shared first night (tests/conftest.py),
    the same drop, key, run id and project."""
    assert (first_night.key, first_night.run_id) == (KEY, RUN_IDS[1])
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    # the project the first night was built with (its content is part of the build
    # fingerprint: an edit of the working tree during the nights would, rightly, make the
    # next night a full one); a copy of the module's own, the last test edits a seed
    project = root / "dbt_project"
    shutil.copytree(first_night.project, project)
    mp.setenv(PROJECT_DIR_ENV, str(project))
    mp.delenv(pipeline.TRANSFORM_URL_ENV, raising=False)
    out: dict[str, Any] = {"incremental": {}, "full": {}, "project": project, "url": incremental}
    try:
        # incremental nights
        reports = root / "reports_incremental"
        if WarehouseUrl.parse(incremental).engine == "duckdb":
            first_night.copy_to(Path(incremental), reports)
        else:
            result = _run(drops["night1"], 1, incremental, reports, full=False)
            assert result.published, (1, result.message)
        out["incremental"][1] = _snapshot(incremental)
        _copy_night_1(incremental, full)
        shutil.copytree(reports, root / "reports_full")
        out["full"][1] = _snapshot(full)
        result = _run(drops["night2"], 2, incremental, reports, full=False)
        assert result.published, (2, result.message)
        out["incremental"][2] = _snapshot(incremental)
        _land_broken_row(incremental)
        blocked = _run(drops["night3"], 3, incremental, reports, full=False)
        out["blocked"] = blocked
        out["incremental"][3] = _snapshot(incremental)
        with Warehouse.connect(incremental) as wh:
            wh.execute("delete from raw.hl7_observations where record_id = 'no-lineage-1'")
        for night, drop in ((4, "empty"), (5, "night1")):
            result = _run(drops[drop], night, incremental, reports, full=False)
            assert result.published, (night, result.message)
            out["incremental"][night] = _snapshot(incremental)
        with Warehouse.connect(incremental) as wh:
            out["plans"] = {
                run_id: (full_refresh, after, reason)
                for run_id, full_refresh, after, reason in wh.query(
                    "select run_id, full_refresh, after_load_id, reason from audit.build_state"
                )
            }
            out["new_loads"] = dict(wh.query("select run_id, new_loads from audit.build_state"))
            out["nodes"] = wh.query(
                "select run_id, resource_type, status, count(*), min(seconds), "
                "sum(case when unique_id = 'model.trialscreen.int_observations' then 1 else 0 end) "
                "from audit.build_nodes group by 1, 2, 3"
            )
            # a test of a seed alone (the row checks of loinc_analytes) against one that also
            # reads a model (the formulas' worked examples), per night
            out["seed_tests"] = {
                run_id: (seed_only, with_model)
                for run_id, seed_only, with_model in wh.query(
                    "select run_id, count(*) filter (where unique_id like "
                    "'test.trialscreen.row_checks_loinc_analytes_%'), count(*) filter (where "
                    "unique_id like 'test.trialscreen.assert_formula_examples_match_expected%') "
                    "from audit.build_nodes group by 1"
                )
            }
            out["neutrophils"] = wh.query(
                "select status, value_canonical from intermediate.int_observations "
                "where patient_mrn = 'MRN0000002' and order_id = 'ORD00000002001' "
                "and analyte = (select analyte from intermediate.int_observations "
                "where loinc = '751-8' limit 1)"
            )
            out["haemoglobin"] = wh.query(
                "select count(*) from intermediate.int_observations "
                "where patient_mrn = 'MRN0000002' and order_id = 'ORD00000002001' "
                "and loinc = '718-7'"
            )[0][0]
            out["retired"] = wh.query(
                "select count(*) from intermediate.int_observations "
                "where patient_mrn = 'MRN0000014'"
            )[0][0]
        # the same nights, each a full rebuild; the blocked night's file lands on night 4
        reports = root / "reports_full"
        for night, drop in ((2, "night2"), (4, "night3"), (5, "night1")):
            result = _run(drops[drop], night, full, reports, full=True)
            assert result.published, (night, result.message)
            out["full"][night] = _snapshot(full)
    finally:
        mp.undo()
    return out


def _copy_night_1(incremental: str, full: str) -> None:
    """The full-refresh sequence's warehouse as the incremental one is after night 1: a copy
    of the DuckDB file, a PostgreSQL database made from it as a template."""
    if WarehouseUrl.parse(incremental).engine == "duckdb":
        copy_duckdb_warehouse(Path(incremental), Path(full))
        return
    name, template = full.rsplit("/", 1)[1], incremental.rsplit("/", 1)[1]
    con = psycopg2.connect(full.rsplit("/", 1)[0] + "/postgres")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            # a template must have no other session; the night's own are closed by now
            cur.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s",
                [template],
            )
            cur.execute(f"drop database if exists {name}")
            cur.execute(f"create database {name} template {template}")
    finally:
        con.close()


def _land_broken_row(url: str) -> None:
    """A platelet count of 12 for MRN0000002 without its source file, in the load the next
    run gets: the gate's raw suite blocks the night; as a result it would count."""
    with Warehouse.connect(url) as wh:
        next_load = int(wh.scalar("select coalesce(max(load_id), 0) + 1 from audit.loads"))
        columns = [
            r[0]
            for r in wh.query(
                "select column_name from information_schema.columns where table_schema = 'raw' "
                "and table_name = 'hl7_observations' order by ordinal_position"
            )
        ]
        changed = {
            "source_file": "null",
            "record_id": "'no-lineage-1'",
            "record_hash": "'broken'",
            "order_id": "'ORD-BROKEN'",
            "value_numeric": "12",
            "load_id": str(next_load),
        }
        select = ", ".join(changed.get(c, c) for c in columns)
        wh.execute(
            f"insert into raw.hl7_observations ({', '.join(columns)}) select {select} "
            "from raw.hl7_observations where mrn = 'MRN0000002' and loinc = '777-3' limit 1"
        )


def engine_nights(
    engine: str, request: pytest.FixtureRequest, drops: dict[str, Path], tmp: Path
) -> dict[str, Any]:
    """Both sequences of nights on one engine ("duckdb" or "postgres"). PostgreSQL's run is
    in test_incremental_nights_postgres.py, a module of its own, so that the suite's two
    workers (``--dist loadfile``) run the engines side by side (~10 CPU-minutes each)."""
    root = tmp / f"incremental_{engine}"
    root.mkdir()
    if engine == "duckdb":
        urls = (str(root / "incremental.duckdb"), str(root / "full.duckdb"))
    else:
        cluster = request.getfixturevalue("pg_cluster")
        con = psycopg2.connect(cluster.url)
        con.autocommit = True
        with con.cursor() as cur:
            # full_refresh_nights is made from incremental_nights after night 1
            for name in ("incremental_nights", "full_refresh_nights"):
                cur.execute(f"drop database if exists {name}")
            cur.execute("create database incremental_nights")
        con.close()
        urls = (cluster.url_for("incremental_nights"), cluster.url_for("full_refresh_nights"))
    return _sequences(drops, urls[0], urls[1], root, request.getfixturevalue("first_night"))


@pytest.fixture(scope="module")
def nights(
    request: pytest.FixtureRequest, drops: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return engine_nights("duckdb", request, drops, tmp_path_factory.mktemp("nights"))


def test_incremental_nights_publish_what_full_refresh_nights_publish(nights) -> None:
    for night in (1, 2, 4, 5):
        incremental, full = nights["incremental"][night], nights["full"][night]
        assert sorted(incremental) == sorted(full), night
        for table in full:
            assert incremental[table] == full[table], (night, table)
    # the nights changed what is published (windows slid, results were corrected)
    assert nights["full"][5] != nights["full"][2]


def test_the_nights_were_incremental_where_they_could_be(nights) -> None:
    plans = nights["plans"]
    assert plans[RUN_IDS[1]][0] is True
    assert plans[RUN_IDS[2]][:2] == (False, 1)
    assert plans[RUN_IDS[3]][:2] == (False, 2)
    assert plans[RUN_IDS[4]] == (True, None, "the last build was not published")
    assert plans[RUN_IDS[5]][0] is False
    # night 5's files were all landed before: no raw row is newer than night 4's build, and
    # the row-level models recompute nothing (docs/decisions.md "A night with nothing new");
    # its marts still equal the full rebuild's (windows slid, a birthday passed)
    assert [nights["new_loads"][RUN_IDS[n]] for n in (2, 3, 4, 5)] == [True, True, None, False]


def test_every_build_records_where_its_time_went(nights) -> None:
    """audit.build_nodes: each night's dbt nodes with their status and seconds."""
    nodes = nights["nodes"]
    for night in (1, 2, 3, 4, 5):
        run = [r for r in nodes if r[0] == RUN_IDS[night]]
        models = [r for r in run if r[1] == "model"]
        assert {r[2] for r in models} == {"success"}, night
        assert sum(r[5] for r in models) == 1, night  # int_observations, once
        assert sum(r[3] for r in run if r[1] == "test") >= 100, night
        assert all(r[4] >= 0 for r in run)
    # seeds load on a full build only, and the tests of seeds alone run with them; a test
    # that reads a model as well runs every night
    assert any(r[1] == "seed" for r in nodes if r[0] == RUN_IDS[1])
    assert not any(r[1] == "seed" for r in nodes if r[0] == RUN_IDS[2])
    tests = nights["seed_tests"]
    assert [tests[RUN_IDS[n]] for n in (1, 2, 3, 4, 5)] == [(1, 1), (0, 1), (0, 1), (1, 1), (0, 1)]


def test_the_late_hl7_correction_and_the_entered_in_error_resolve(nights) -> None:
    # the correction replaces the final result of the same order and code; the retraction
    # leaves the haemoglobin of that order no counting result; the merged MRN has no rows
    assert nights["neutrophils"] == [("corrected", pytest.approx(0.4))]
    assert nights["haemoglobin"] == 0
    assert nights["retired"] == 0


def test_a_blocked_gate_on_an_incremental_night_keeps_yesterday_and_the_next_night_recovers(
    nights,
) -> None:
    blocked = nights["blocked"]
    assert blocked.status == "failed" and blocked.gate_blocked, blocked.message
    assert nights["incremental"][3] == nights["incremental"][2]
    # night 4 published what the full-refresh sequence published with the same raw rows
    assert nights["incremental"][4] == nights["full"][4]


def test_a_new_fingerprint_or_full_refresh_rebuilds_whole(nights, monkeypatch) -> None:
    """The plan of a next night (no dbt run): incremental as things are; a full rebuild when
    asked, when the time zone changed, when a seed file changed."""
    monkeypatch.setenv(PROJECT_DIR_ENV, str(nights["project"]))
    url = nights["url"]
    changed = "code, dbt project, seeds, trial definitions or time zone changed"
    assert pipeline.plan_build(url, RUN_IDS[5]).after_load_id is not None
    assert pipeline.plan_build(url, RUN_IDS[5], full_refresh=True).reason == (
        "full refresh asked for"
    )
    monkeypatch.setenv(TIMEZONE_ENV, "America/Chicago")
    assert pipeline.plan_build(url, RUN_IDS[5]).reason == changed
    monkeypatch.delenv(TIMEZONE_ENV)
    seed = sorted((nights["project"] / "seeds").glob("*.csv"))[0]
    seed.write_text(seed.read_text() + "\n")
    try:
        assert pipeline.plan_build(url, RUN_IDS[5]).reason == changed
    finally:
        seed.write_text(seed.read_text()[:-1])
