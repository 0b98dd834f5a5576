"""Warehouse roles on a real PostgreSQL (docs/specification.md#phi-rules): who can read and write
which schema.

The disposable cluster authenticates by ``trust``, so a connection does not prove a
password; privileges, however, are enforced whatever the authentication. Each test connects
as the role and proves what it can and cannot do; the stored SCRAM verifier is checked
against the password from the environment, and NOLOGIN is enforced even under trust.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from trialscreen import roles
from trialscreen.roles import ANALYST, COORDINATOR, LOADER, TRANSFORMER, ensure_roles

pytestmark = pytest.mark.postgres

PHI_COLUMNS = {"mrn", "family_name", "given_name", "birth_date"}
PASSWORDS = {
    "TRIALSCREEN_LOADER_PASSWORD": "loader-test-pw",
    "TRIALSCREEN_TRANSFORMER_PASSWORD": "transformer-test-pw",
    "TRIALSCREEN_ANALYST_PASSWORD": "analyst-test-pw",
    "TRIALSCREEN_COORDINATOR_PASSWORD": "coordinator-test-pw",
}
ROLE_PASSWORD = {
    LOADER: PASSWORDS["TRIALSCREEN_LOADER_PASSWORD"],
    TRANSFORMER: PASSWORDS["TRIALSCREEN_TRANSFORMER_PASSWORD"],
    ANALYST: PASSWORDS["TRIALSCREEN_ANALYST_PASSWORD"],
    COORDINATOR: PASSWORDS["TRIALSCREEN_COORDINATOR_PASSWORD"],
}


@dataclass
class Warehouse:
    """A database set up as the nightly run leaves it, and a way to connect as each role."""

    admin_url: str
    cluster: Any
    db: str

    def connect(self, role: str | None = None) -> Any:
        url = (
            self.admin_url
            if role is None
            else self.cluster.url_for(self.db, role, ROLE_PASSWORD[role])
        )
        con = psycopg2.connect(url)
        con.autocommit = True
        return con

    def run(self, role: str | None, *statements: str) -> None:
        con = self.connect(role)
        try:
            with con.cursor() as cur:
                for sql in statements:
                    cur.execute(sql)
        finally:
            con.close()


def _fresh_db(cluster: Any, name: str) -> str:
    con = psycopg2.connect(cluster.url)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name}")
    con.close()
    return str(cluster.url_for(name))


def _load_as_loader(wh: Warehouse) -> None:
    """What the Python loader creates, created by the loader *after* ensure_roles."""
    wh.run(
        LOADER,
        "create table raw.fhir_patients (mrn text, family_name text, given_name text, "
        "birth_date date, sex text)",
        "insert into raw.fhir_patients values "
        "('MRN-1', 'Doe', 'Jane', '1990-01-01', 'female'), "
        "('MRN-2', 'Roe', 'Rick', '1985-06-30', 'male')",
        "create table quarantine.records (source_file text, source_position bigint, "
        "error text, payload text)",
        "insert into quarantine.records values ('fhir/Patient.ndjson', 3, 'no MRN', '{}')",
        "create table audit.pipeline_runs (run_id text, status text, feed_counts text)",
        "insert into audit.pipeline_runs values ('r1', 'running', '{}')",
        "create table config.trials (trial_id text, definition_hash text)",
        "insert into config.trials values ('axiom', 'abc')",
        "create table restricted.patient_keys (mrn text, patient_key text)",
        "insert into restricted.patient_keys values "
        "('MRN-1', '00000000000000a1'), ('MRN-2', '00000000000000b2')",
    )


def _build_as_transformer(wh: Warehouse) -> None:
    """dbt's table materialization: build a temp relation, swap it in, drop the old one."""
    for table, select in {
        "marts.screening_results": (
            "select k.patient_key, 'axiom'::text as trial_id, 'asps'::text as cohort_id, "
            "'missing_data'::text as candidate_status, 2 as unknown_count "
            "from restricted.patient_keys k"
        ),
        "restricted.candidate_contacts": (
            "select k.patient_key, p.mrn, p.family_name, p.given_name, p.birth_date "
            "from raw.fhir_patients p join restricted.patient_keys k using (mrn)"
        ),
    }.items():
        schema, name = table.split(".")
        wh.run(
            TRANSFORMER,
            f"drop table if exists {schema}.{name}__dbt_tmp",
            f"create table {schema}.{name}__dbt_tmp as {select}",
            f"drop table if exists {schema}.{name}__dbt_backup",
            f"alter table if exists {schema}.{name} rename to {name}__dbt_backup",
            f"alter table {schema}.{name}__dbt_tmp rename to {name}",
            f"drop table if exists {schema}.{name}__dbt_backup",
        )
    wh.run(
        TRANSFORMER,
        "create or replace view staging.stg_fhir__patients as "
        "select mrn, birth_date from raw.fhir_patients",
    )


@pytest.fixture(scope="module")
def warehouse(pg_cluster: Any) -> Iterator[Warehouse]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in PASSWORDS.items():
            mp.setenv(name, value)
        admin_url = _fresh_db(pg_cluster, "t_roles_module")
        ensure_roles(admin_url)
        ensure_roles(admin_url)  # idempotent: the nightly init runs it every time
        wh = Warehouse(admin_url, pg_cluster, "t_roles_module")
        _load_as_loader(wh)
        _build_as_transformer(wh)
        _build_as_transformer(wh)  # the next night's rebuild: new tables, same grants
        ensure_roles(admin_url)  # and again with tables in place
        yield wh


def _denied(con: Any, sql: str) -> None:
    with con.cursor() as cur, pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute(sql)


def _rows(con: Any, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with con.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def _readable_columns(con: Any) -> set[tuple[str, str, str]]:
    """Every (schema, table, column) this role may select, from the catalogs and from
    information_schema (which lists only what the role has some privilege on)."""
    catalog = _rows(
        con,
        "select n.nspname, c.relname, a.attname from pg_attribute a "
        "join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace "
        "where c.relkind in ('r', 'v', 'm', 'p', 'f') and a.attnum > 0 and not a.attisdropped "
        "and n.nspname not in ('pg_catalog', 'information_schema') "
        "and n.nspname not like 'pg_toast%' "
        "and has_schema_privilege(n.oid, 'USAGE') "
        "and has_column_privilege(c.oid, a.attnum, 'SELECT')",
    )
    info = _rows(
        con,
        "select table_schema, table_name, column_name from information_schema.columns "
        "where table_schema not in ('pg_catalog', 'information_schema')",
    )
    return {tuple(r) for r in catalog} | {tuple(r) for r in info}  # type: ignore[misc]


# --- the analyst ---------------------------------------------------------------------------


def test_analyst_reads_marts_rebuilt_after_ensure_roles(warehouse: Warehouse) -> None:
    con = warehouse.connect(ANALYST)
    rows = _rows(con, "select patient_key, candidate_status from marts.screening_results")
    assert sorted(rows) == [
        ("00000000000000a1", "missing_data"),
        ("00000000000000b2", "missing_data"),
    ]


@pytest.mark.parametrize(
    "table",
    [
        "raw.fhir_patients",
        "quarantine.records",
        "restricted.candidate_contacts",
        "restricted.patient_keys",
        "audit.pipeline_runs",
        "config.trials",
        "staging.stg_fhir__patients",
    ],
)
def test_analyst_cannot_read_outside_marts(warehouse: Warehouse, table: str) -> None:
    _denied(warehouse.connect(ANALYST), f"select * from {table}")


def test_analyst_sees_no_phi_column_anywhere(warehouse: Warehouse) -> None:
    readable = _readable_columns(warehouse.connect(ANALYST))
    assert ("marts", "screening_results", "patient_key") in readable  # the query works
    assert {schema for schema, _, _ in readable} == {"marts"}
    phi = {col for col in readable if col[2] in PHI_COLUMNS}
    assert not phi, f"analyst can read PHI columns: {sorted(phi)}"


def test_analyst_cannot_write_or_create(warehouse: Warehouse) -> None:
    con = warehouse.connect(ANALYST)
    _denied(con, "insert into marts.screening_results (patient_key) values ('x')")
    _denied(con, "create table marts.mine (x int)")
    _denied(con, "create table public.mine (x int)")  # CREATE on public revoked from PUBLIC


# --- the coordinator -----------------------------------------------------------------------


def test_coordinator_reads_contacts_and_marts_but_not_raw(warehouse: Warehouse) -> None:
    con = warehouse.connect(COORDINATOR)
    contacts = _rows(
        con,
        "select c.mrn, c.family_name, s.candidate_status from restricted.candidate_contacts c "
        "join marts.screening_results s using (patient_key) order by c.mrn",
    )
    assert contacts == [("MRN-1", "Doe", "missing_data"), ("MRN-2", "Roe", "missing_data")]
    _denied(con, "select * from raw.fhir_patients")
    _denied(con, "select * from quarantine.records")
    _denied(con, "select * from audit.pipeline_runs")
    _denied(con, "insert into restricted.candidate_contacts (mrn) values ('MRN-9')")


# --- writes to raw -------------------------------------------------------------------------

RAW_INSERT = "insert into raw.fhir_patients (mrn) values ('MRN-3')"


def test_loader_can_insert_into_raw(warehouse: Warehouse) -> None:
    con = warehouse.connect(LOADER)
    with con.cursor() as cur:
        cur.execute(RAW_INSERT)
        cur.execute("delete from raw.fhir_patients where mrn = 'MRN-3'")


@pytest.mark.parametrize("role", [TRANSFORMER, ANALYST, COORDINATOR])
def test_only_the_loader_writes_raw(warehouse: Warehouse, role: str) -> None:
    con = warehouse.connect(role)
    _denied(con, RAW_INSERT)
    _denied(con, "create table raw.sneaky (x int)")


def test_loader_cannot_read_what_dbt_builds(warehouse: Warehouse) -> None:
    con = warehouse.connect(LOADER)
    _denied(con, "select * from restricted.candidate_contacts")
    _denied(con, "select * from marts.screening_results")


# --- the transformer -----------------------------------------------------------------------


def test_transformer_builds_candidates_nobody_else_sees(warehouse: Warehouse) -> None:
    """Write-audit-publish: dbt (the transformer, no CREATE on the database) writes the
    candidate schemas trialscreen roles made for it; no other role can read them."""
    warehouse.run(
        TRANSFORMER,
        "drop table if exists marts_candidate.screening_results",
        "create table marts_candidate.screening_results as select * from marts.screening_results",
        "drop table if exists restricted_candidate.candidate_contacts",
        "create table restricted_candidate.candidate_contacts as "
        "select * from restricted.candidate_contacts",
    )
    for role in (LOADER, ANALYST, COORDINATOR):
        con = warehouse.connect(role)
        _denied(con, "select * from marts_candidate.screening_results")
        _denied(con, "select * from restricted_candidate.candidate_contacts")
        _denied(con, "create table marts_candidate.mine (x int)")
    _denied(warehouse.connect(TRANSFORMER), "create schema anything_else")


def test_transformer_reads_sources_and_replaces_marts(warehouse: Warehouse) -> None:
    con = warehouse.connect(TRANSFORMER)
    assert _rows(con, "select count(*) from raw.fhir_patients") == [(2,)]
    assert _rows(con, "select count(*) from restricted.patient_keys") == [(2,)]
    assert _rows(con, "select count(*) from audit.pipeline_runs") == [(1,)]
    assert _rows(con, "select count(*) from config.trials") == [(1,)]
    with con.cursor() as cur:
        cur.execute("create table marts.scratch as select 1 as x")
        cur.execute("drop table marts.scratch")
        cur.execute("create table reference.unit_aliases (alias text, ucum text)")
        cur.execute("drop table reference.unit_aliases")
    _denied(con, "update audit.pipeline_runs set status = 'published'")  # the loader's row


def test_rebuilt_tables_keep_their_grants(warehouse: Warehouse) -> None:
    _build_as_transformer(warehouse)  # one more night, without re-running ensure_roles
    analyst = warehouse.connect(ANALYST)
    assert _rows(analyst, "select count(*) from marts.screening_results") == [(2,)]
    coordinator = warehouse.connect(COORDINATOR)
    assert _rows(coordinator, "select count(*) from restricted.candidate_contacts") == [(2,)]


# --- ensure_roles itself -------------------------------------------------------------------


def test_a_hand_made_grant_is_revoked_by_the_next_run(warehouse: Warehouse) -> None:
    warehouse.run(
        None,
        f"grant insert on raw.fhir_patients to {TRANSFORMER}",
        f"grant select on quarantine.records to {ANALYST}",
    )
    ensure_roles(warehouse.admin_url, passwords=PASSWORDS)
    _denied(warehouse.connect(TRANSFORMER), RAW_INSERT)
    _denied(warehouse.connect(ANALYST), "select * from quarantine.records")


def _scram_matches(verifier: str, password: str) -> bool:
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    assert match, "not a SCRAM-SHA-256 verifier"
    iterations, salt, stored_key = int(match[1]), base64.b64decode(match[2]), match[3]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


def test_passwords_come_from_the_environment_hashed(warehouse: Warehouse) -> None:
    con = warehouse.connect()
    stored = dict(
        _rows(
            con,
            "select rolname, rolpassword from pg_authid where rolname = any(%s) and rolcanlogin",
            [list(roles.ROLE_NAMES)],
        )
    )
    assert set(stored) == set(ROLE_PASSWORD)
    for role, password in ROLE_PASSWORD.items():
        assert password not in stored[role]
        assert _scram_matches(stored[role], password), role


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def roles_log() -> Iterator[_Records]:
    """Records of ``trialscreen.roles`` whatever ``logs.configure`` did to propagation, and
    the ``trialscreen`` logger's configuration restored afterwards (``roles.main`` sets it)."""
    package = logging.getLogger("trialscreen")
    saved = (package.handlers[:], package.level, package.propagate)
    logger = logging.getLogger("trialscreen.roles")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        package.handlers[:], package.level, package.propagate = saved


def test_role_without_password_is_nologin_and_logged(
    pg_cluster: Any, monkeypatch: pytest.MonkeyPatch, roles_log: _Records
) -> None:
    admin_url = _fresh_db(pg_cluster, "t_roles_nologin")
    for name, value in PASSWORDS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TRIALSCREEN_COORDINATOR_PASSWORD")
    try:
        ensure_roles(admin_url)
        line = next(r for r in roles_log.records if "NOLOGIN" in r.getMessage())
        assert line.role == COORDINATOR  # type: ignore[attr-defined]
        assert line.set == "TRIALSCREEN_COORDINATOR_PASSWORD"  # type: ignore[attr-defined]
        logged = " ".join(r.getMessage() + str(vars(r)) for r in roles_log.records)
        assert not any(pw in logged for pw in PASSWORDS.values())
        with pytest.raises(psycopg2.OperationalError, match="not permitted to log in"):
            psycopg2.connect(pg_cluster.url_for("t_roles_nologin", COORDINATOR, "x"))
    finally:  # roles are cluster-wide: give the coordinator its login back
        ensure_roles(admin_url, passwords=PASSWORDS)


def test_refuses_a_duckdb_warehouse(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="PostgreSQL only"):
        ensure_roles(str(tmp_path / "w.duckdb"))


def test_module_entry_point_uses_the_admin_url_from_env(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, roles_log: _Records
) -> None:
    monkeypatch.delenv(roles.ADMIN_URL_ENV, raising=False)
    assert roles.main([]) == 2
    monkeypatch.setenv(roles.ADMIN_URL_ENV, warehouse.admin_url)
    for name, value in PASSWORDS.items():
        monkeypatch.setenv(name, value)
    assert roles.main([]) == 0


def test_loader_can_use_warehouse_ensure_table(warehouse: Warehouse) -> None:
    import polars as pl

    from trialscreen.warehouse import Warehouse as Wh

    url = warehouse.cluster.url_for(warehouse.db, LOADER, ROLE_PASSWORD[LOADER])
    with Wh.connect(url) as wh:
        wh.ensure_table("raw.csv_patients", {"mrn": pl.String()})
        wh.execute("drop table raw.csv_patients")


def test_a_failed_builds_database_text_is_read_by_coordinators_not_analysts(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restricted.build_errors (docs/decisions.md, "dbt's errors"): a failed build's database
    text, which may quote a record, written as dbt's role when the pipeline records the
    failure; coordinators read it, analysts and the loader do not."""
    from trialscreen.pipeline.builds import BUILD_ERRORS_TABLE, _record_build_errors
    from trialscreen.pipeline.transformer import TRANSFORM_URL_ENV
    from trialscreen.transform import DbtBuildError

    loader = warehouse.cluster.url_for(warehouse.db, LOADER, ROLE_PASSWORD[LOADER])
    transformer = warehouse.cluster.url_for(warehouse.db, TRANSFORMER, ROLE_PASSWORD[TRANSFORMER])
    monkeypatch.setenv(TRANSFORM_URL_ENV, transformer)
    text = "Database Error in model x | duplicate key | DETAIL: Key (mrn)=(MRN-SENTINEL-4242)"
    error = DbtBuildError("build", [("model.trialscreen.stg_csv__patients", text)])
    _record_build_errors(loader, "pg-failed-build", error)
    assert "MRN-SENTINEL-4242" not in str(error)
    assert f"kept in {BUILD_ERRORS_TABLE}" in str(error).splitlines()[0]
    sql = f"select unique_id, message from {BUILD_ERRORS_TABLE} where run_id = 'pg-failed-build'"
    assert _rows(warehouse.connect(COORDINATOR), sql) == [
        ("model.trialscreen.stg_csv__patients", text)
    ]
    _denied(warehouse.connect(ANALYST), sql)
    _denied(warehouse.connect(LOADER), sql)
