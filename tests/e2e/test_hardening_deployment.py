"""The PostgreSQL deployment as composed publishes with least privilege (issue 9, item 2).

The nightly run is played with exactly the role split and URLs of docker-compose.yml and the
DAG: ``TRIALSCREEN_WAREHOUSE_URL`` (the loader) is what every DAG task is given,
``TRIALSCREEN_TRANSFORM_URL`` (the transformer) is what dbt, the gate, publish and the reports
use. The roles come from ``ensure_roles`` as the compose ``airflow-init`` service runs it.
Afterwards the analyst reads every published mart and nothing else, grants survive a second
publish, and a publish blocked by a long analyst query gives up after its lock timeout
leaving yesterday's tables in place.
"""

from __future__ import annotations

import re
import threading
from datetime import date
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
import yaml

from trialscreen import pipeline, pseudonym
from trialscreen.roles import ANALYST, COORDINATOR, LOADER, TRANSFORMER, ensure_roles
from trialscreen.synth import generate

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
SCREENING_DATE = date(2026, 11, 20)
RUN_ID = "scheduled__2026-11-20T02:00:00+00:00"  # what Airflow passes to start_run
PASSWORDS = {
    LOADER: "loader-test-pw",
    TRANSFORMER: "transformer-test-pw",
    ANALYST: "analyst-test-pw",
    COORDINATOR: "coordinator-test-pw",
}
DB = "t_hardening_deployment"


def _compose_env() -> tuple[dict[str, str], dict[str, str]]:
    """The Airflow services' common environment and the airflow-init service's own."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    common = compose["x-airflow-common"]["environment"]
    init = compose["services"]["airflow-init"]["environment"]
    return common, init


def _user(url: str) -> str:
    match = re.match(r"postgresql://([^:@/]+)[:@]", url)
    assert match, url
    return match[1]


def test_compose_and_dag_agree_on_the_role_split() -> None:
    common, init = _compose_env()
    assert _user(common["TRIALSCREEN_WAREHOUSE_URL"]) == LOADER
    assert _user(common["TRIALSCREEN_TRANSFORM_URL"]) == TRANSFORMER
    assert common["TRIALSCREEN_PG_USER"] == TRANSFORMER  # the Cosmos profile
    # airflow-init must hand every role its password, else ensure_roles makes it NOLOGIN and
    # the nightly run cannot log in at all
    for role in PASSWORDS:
        assert f"{role.upper()}_PASSWORD" in init, f"airflow-init does not set {role}'s password"
    dag = (REPO / "dags" / "trialscreen_nightly.py").read_text()
    assert 'os.environ.get("TRIALSCREEN_WAREHOUSE_URL"' in dag
    assert "transform_url(_warehouse(params))" in dag


@pytest.fixture(scope="module")
def deployment(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    common, _ = _compose_env()
    con = psycopg2.connect(pg_cluster.url)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"drop database if exists {DB}")
        cur.execute(f"create database {DB}")
    con.close()
    admin = pg_cluster.url_for(DB)
    urls = {role: pg_cluster.url_for(DB, role, pw) for role, pw in PASSWORDS.items()}
    loader = urls[_user(common["TRIALSCREEN_WAREHOUSE_URL"])]
    transformer = urls[_user(common["TRIALSCREEN_TRANSFORM_URL"])]
    root = tmp_path_factory.mktemp("deployment")
    drop = root / "drop"
    generate(patients=40, seed=9, out=drop, screening_date=SCREENING_DATE)
    mp = pytest.MonkeyPatch()
    try:
        for role, pw in PASSWORDS.items():
            mp.setenv(f"{role.upper()}_PASSWORD", pw)
        ensure_roles(admin)  # airflow-init: python -m trialscreen.roles
        mp.setenv(pseudonym.KEY_ENV, "deployment-test-key")
        mp.setenv(pipeline.TRANSFORM_URL_ENV, transformer)
        # the DAG's tasks, in order, each given params.warehouse = TRIALSCREEN_WAREHOUSE_URL
        run_id = pipeline.start_run(loader, SCREENING_DATE, ["axiom"], RUN_ID)
        for feed in ("fhir", "hl7", "csv"):
            counts = pipeline.ingest_feed(loader, drop, feed, run_id)
            assert counts.balanced and counts.loaded > 0, feed
        pipeline.prepare_build(loader, ["axiom"])
        pipeline.build(loader, SCREENING_DATE, run_id)  # dbt as the transformer
        outcome = pipeline.validate(loader, root / "reports", run_id, SCREENING_DATE)
        assert outcome.success, outcome.summary()
        published = pipeline.publish(loader, run_id)
        report = pipeline.write_reports(loader, root / "reports", run_id, outcome)
        yield {
            "admin": admin,
            "urls": urls,
            "loader": loader,
            "run_id": run_id,
            "published": published,
            "report": report,
            "root": root,
        }
    finally:
        mp.undo()


def _rows(url: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = psycopg2.connect(url)
    try:
        with con.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        con.close()


def test_the_role_split_run_publishes(deployment: dict[str, Any]) -> None:
    (status, validated), *_ = _rows(
        deployment["admin"],
        "select status, validated_load_id from audit.pipeline_runs where run_id = %s",
        [deployment["run_id"]],
    )
    assert status == "published"
    assert validated == 1  # the gate passed the first load
    assert "marts.screening_results" in deployment["published"]
    assert "restricted.candidate_contacts" in deployment["published"]
    assert deployment["report"].is_file()
    owners = _rows(
        deployment["admin"],
        "select distinct tableowner from pg_tables where schemaname in ('marts', 'restricted',"
        " 'marts_candidate', 'restricted_candidate') and tablename <> 'patient_keys'",
    )
    assert owners == [(TRANSFORMER,)]


def test_the_analyst_reads_every_mart_and_nothing_else(deployment: dict[str, Any]) -> None:
    analyst = deployment["urls"][ANALYST]
    marts = [r[0] for r in _rows(deployment["admin"], "select tablename from pg_tables "
                                 "where schemaname = 'marts' order by 1")]  # fmt: skip
    assert "screening_results" in marts and "eligible_candidates" in marts
    for table in marts:
        _rows(analyst, f"select count(*) from marts.{table}")
    visible = _rows(
        analyst,
        "select distinct n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where c.relkind in ('r', 'v', 'm', 'p') and has_schema_privilege(n.oid, 'USAGE')"
        " and has_table_privilege(c.oid, 'SELECT')"
        " and n.nspname not in ('pg_catalog', 'information_schema')",
    )
    assert visible == [("marts",)]
    for table in (
        "marts_candidate.screening_results",
        "restricted.candidate_contacts",
        "restricted_candidate.candidate_contacts",
        "raw.csv_patients",
        "audit.pipeline_runs",
        "staging.stg_csv__patients",
        "intermediate.int_patients",
        "quarantine.records",
    ):
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            _rows(analyst, f"select * from {table} limit 1")
    contacts = _rows(deployment["urls"][COORDINATOR], "select count(*) from "
                     "restricted.candidate_contacts")  # fmt: skip
    assert contacts[0][0] > 0


def test_grants_survive_the_next_publish(deployment: dict[str, Any]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(pipeline.TRANSFORM_URL_ENV, deployment["urls"][TRANSFORMER])
        pipeline.publish(deployment["loader"], deployment["run_id"])
    assert _rows(deployment["urls"][ANALYST], "select count(*) from marts.screening_results")
    assert _rows(deployment["urls"][COORDINATOR], "select count(*) from "
                 "restricted.candidate_contacts")  # fmt: skip


def test_publish_gives_up_on_a_long_analyst_query(deployment: dict[str, Any]) -> None:
    urls = deployment["urls"]
    before = _rows(urls[ANALYST], "select count(*) from marts.screening_results")[0][0]
    candidate = "marts_candidate.screening_results"
    transformer = psycopg2.connect(urls[TRANSFORMER])
    transformer.autocommit = True
    with transformer.cursor() as cur:  # tonight's candidate differs from yesterday's table
        cur.execute(f"create table marts_candidate.kept as select * from {candidate}")
        cur.execute(f"delete from {candidate} where candidate_status <> 'ready_for_review'")
    analyst = psycopg2.connect(urls[ANALYST])  # a transaction that holds its read lock
    try:
        with analyst.cursor() as cur:
            cur.execute("select count(*) from marts.screening_results")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(pipeline.TRANSFORM_URL_ENV, urls[TRANSFORMER])
            with pytest.raises(pipeline.PublishLockTimeout, match=r"more than 300ms.*yesterday"):
                pipeline.publish(deployment["loader"], deployment["run_id"], lock_timeout="300ms")
        analyst.rollback()
        assert _rows(urls[ANALYST], "select count(*) from marts.screening_results")[0][0] == before
    finally:
        analyst.close()
        with transformer.cursor() as cur:  # put the candidate back for the other tests
            cur.execute(f"delete from {candidate}")
            cur.execute(f"insert into {candidate} select * from marts_candidate.kept")
            cur.execute("drop table marts_candidate.kept")
        transformer.close()


def test_a_second_run_refuses_while_the_run_lock_is_held(deployment: dict[str, Any]) -> None:
    from trialscreen.warehouse import RUN_LOCK, WarehouseBusy

    other = psycopg2.connect(deployment["admin"])  # another process's run
    other.autocommit = True
    try:
        with other.cursor() as cur:
            cur.execute("select pg_advisory_lock(%s, %s)", list(RUN_LOCK))
        with pytest.raises(WarehouseBusy, match="another TrialScreen run holds the run lock"):
            pipeline.start_run(deployment["loader"], SCREENING_DATE, ["axiom"], "second")
    finally:
        other.close()
    assert not _rows(
        deployment["admin"], "select 1 from audit.pipeline_runs where run_id = 'second'"
    )


def test_two_concurrent_ingests_load_each_record_once(pg_database: str, tmp_path: Path) -> None:
    """The ingest itself (no run lock): the second waits for the first, then skips its files."""
    from trialscreen.ingest import ensure_tables, ingest_feed
    from trialscreen.warehouse import Warehouse

    generate(patients=15, seed=4, out=tmp_path / "drop", screening_date=SCREENING_DATE)
    with Warehouse.connect(pg_database) as wh:
        ensure_tables(wh)
    results: dict[str, Any] = {}
    start = threading.Barrier(2)

    def ingest(run_id: str) -> None:
        with Warehouse.connect(pg_database) as wh:
            start.wait()
            results[run_id] = ingest_feed(wh, tmp_path / "drop", "csv", run_id)

    threads = [threading.Thread(target=ingest, args=(f"run-{i}",)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    first, second = results["run-1"], results["run-2"]
    assert first.balanced and second.balanced
    assert sorted([first.loaded, second.loaded])[0] == 0  # one of them found nothing new
    assert first.files_new + second.files_new == first.files_seen
    with Warehouse.connect(pg_database) as wh:
        rows, distinct = wh.query(
            "select count(*), count(distinct (record_id, record_hash)) from raw.csv_observations"
        )[0]
        load_ids = wh.query("select load_id, run_id from audit.loads order by load_id")
    assert (
        rows
        == distinct
        == first.loaded_by_table.get("raw.csv_observations", 0)
        + second.loaded_by_table.get("raw.csv_observations", 0)
    )
    assert [r[0] for r in load_ids] == [1, 2]
