"""The dbt project builds on Apache Spark (dbt-spark, local pyspark session) from the same
landed data as DuckDB, and the marts agree row for row (docs/specification.md#scale: one dbt
project, every
warehouse). With tests/e2e/test_postgres_parity.py (DuckDB = PostgreSQL) this shows DuckDB,
PostgreSQL and Spark produce the same screening_results.

The raw/config/restricted tables the pipeline landed in DuckDB are copied into the Spark
catalog (trialscreen.spark.load_landed_tables); ``dbt build`` (seeds and models; the data
tests run on DuckDB and PostgreSQL, the unit tests on DuckDB) runs on the ``spark`` target
through trialscreen.transform. Columns that identify the run are dropped; floats are compared with a
relative tolerance of 1e-9.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from trialscreen.transform import DBT_PROJECT_DIR, build_dbt, dbt_target

REL_TOL = 1e-9
RUN_COLUMNS = frozenset({"run_id", "recorded_at", "built_at", "loaded_at", "published_at"})
# table -> its key (unique per row; checked by the data tests on DuckDB/PostgreSQL)
TABLES = {
    "marts.screening_results": ("trial_id", "cohort_id", "patient_key"),
    "marts.criterion_evaluations": ("trial_id", "cohort_id", "patient_key", "criterion_id"),
}


@pytest.fixture(scope="module")
def spark_built(duckdb_screened: dict[str, Any], spark: dict[str, Any]) -> dict[str, Any]:
    from trialscreen.spark import load_landed_tables

    session = spark["session"]
    counts = load_landed_tables(duckdb_screened["warehouse"], session)
    assert counts["raw.fhir_observations"] > 0 and counts["restricted.patient_keys"] > 0
    build_dbt(
        f"spark://{spark['warehouse_dir']}",
        duckdb_screened["screening_date"],
        "spark-parity",
        exclude="resource_type:test",
        artifacts_dir=duckdb_screened["root"] / "dbt-spark",
    )
    return {"session": session, "counts": counts}


def _normalize(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = _normalize(a), _normalize(b)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=0.0)
    return a == b


def _duckdb_rows(path: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    con = duckdb.connect(str(path))  # the configuration dbt-duckdb's open handle has
    try:
        relation = con.sql(f"select * from {table}")
        columns = [c for c in relation.columns if c not in RUN_COLUMNS]
        rows = con.sql(f"select {', '.join(columns)} from {table}").fetchall()
    finally:
        con.close()
    return columns, rows


def _spark_rows(session: Any, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    types = dict(session.table(table).dtypes)
    missing = [c for c in columns if c not in types]
    assert not missing, f"{table} on Spark lacks columns {missing}"
    # timestamps as naive wall-clock values (the session time zone is UTC), as DuckDB holds them
    select = [
        f"cast({c} as timestamp_ntz) as {c}" if types[c] == "timestamp" else c for c in columns
    ]
    return [tuple(row) for row in session.sql(f"select {', '.join(select)} from {table}").collect()]


def _mismatches(
    table: str, columns: list[str], duck: list[tuple[Any, ...]], spark: list[tuple[Any, ...]]
) -> list[str]:
    key_idx = [columns.index(k) for k in TABLES[table]]

    def keyed(rows: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], tuple[Any, ...]]:
        out = {tuple(r[i] for i in key_idx): r for r in rows}
        assert len(out) == len(rows), f"{table}: duplicate keys"
        return out

    d, s = keyed(duck), keyed(spark)
    problems = [f"only on DuckDB: {k}" for k in sorted(d.keys() - s.keys(), key=str)[:5]]
    problems += [f"only on Spark: {k}" for k in sorted(s.keys() - d.keys(), key=str)[:5]]
    for k in sorted(d.keys() & s.keys(), key=str):
        for column, a, b in zip(columns, d[k], s[k], strict=True):
            if not _same(a, b):
                problems.append(f"{k} {column}: duckdb={a!r} spark={b!r}")
    return problems


@pytest.mark.spark
@pytest.mark.parametrize("table", list(TABLES))
def test_spark_builds_the_same_marts_as_duckdb(
    table: str, duckdb_screened: dict[str, Any], spark_built: dict[str, Any]
) -> None:
    columns, duck = _duckdb_rows(duckdb_screened["warehouse"], table)
    spark = _spark_rows(spark_built["session"], table, columns)
    assert len(duck) > 0
    assert len(spark) == len(duck), f"{table}: {len(spark)} rows on Spark, {len(duck)} on DuckDB"
    problems = _mismatches(table, columns, duck, spark)
    assert problems == [], f"{table}: {len(problems)} differences, e.g.\n" + "\n".join(
        problems[:15]
    )


@pytest.mark.spark
def test_spark_screens_every_patient_of_the_population(
    duckdb_screened: dict[str, Any], spark_built: dict[str, Any]
) -> None:
    session = spark_built["session"]
    statuses = {
        row[0]
        for row in session.sql(
            "select distinct candidate_status from marts.screening_results"
        ).collect()
    }
    patients = session.sql("select count(distinct patient_key) from marts.screening_results")
    screened = patients.collect()[0][0]
    assert screened == duckdb_screened["screened"]
    assert screened <= spark_built["counts"]["restricted.patient_keys"]
    assert statuses <= {"ineligible", "missing_data", "ready_for_review"}
    assert "ready_for_review" in statuses  # the population is not trivially all-ineligible


# Local-time placement (macros/timezones.sql) on Spark, in a zone that is not UTC: the parity
# build above runs in UTC, where the macros short-circuit to a plain cast, so the spark__
# dispatches (to_utc_timestamp, from_utc_timestamp, timestampadd) are checked here against
# known answers. America/New_York: EDT (UTC-4) in July, EST (UTC-5) in January.
LOCAL_TIME_ZONE = "America/New_York"
LOCAL_TIME_CASES = {
    # name: (macro call over a raw wall clock / offset, expected value as Spark prints it)
    "summer_no_offset": (
        "instant_utc(\"cast('2026-07-01 22:30:00' as timestamp)\", 'cast(null as int)')",
        "2026-07-02 02:30:00",
    ),
    "winter_no_offset": (
        "instant_utc(\"cast('2026-01-15 22:30:00' as timestamp)\", 'cast(null as int)')",
        "2026-01-16 03:30:00",
    ),
    "sent_offset_wins_over_the_zone": (
        "instant_utc(\"cast('2026-07-01 22:30:00' as timestamp)\", 'cast(120 as int)')",
        "2026-07-01 20:30:00",
    ),
    "sent_negative_offset": (
        "instant_utc(\"cast('2026-01-15 22:30:00' as timestamp)\", 'cast(-300 as int)')",
        "2026-01-16 03:30:00",
    ),
    "local_date_before_midnight": (
        "date_in_timezone(\"cast('2026-07-02 02:30:00' as timestamp)\", var('timezone'))",
        "2026-07-01",
    ),
    "local_date_after_midnight": (
        "date_in_timezone(\"cast('2026-07-02 04:30:00' as timestamp)\", var('timezone'))",
        "2026-07-02",
    ),
}


@pytest.mark.spark
def test_spark_places_timestamps_in_the_hospital_time_zone(
    duckdb_screened: dict[str, Any], spark: dict[str, Any]
) -> None:
    from trialscreen.transform import run_dbt

    columns = ",\n".join(
        f"cast({{{{ {call} }}}} as string) as {name}"
        for name, (call, _) in LOCAL_TIME_CASES.items()
    )
    result = run_dbt(
        "compile",
        f"spark://{spark['warehouse_dir']}",
        args=["--inline", f"select\n{columns}"],
        dbt_vars={
            "screening_date": duckdb_screened["screening_date"].isoformat(),
            "run_id": "spark-local-time",
            "timezone": LOCAL_TIME_ZONE,
        },
        artifacts_dir=duckdb_screened["root"] / "dbt-spark-local-time",
    )
    sql = result.result.results[0].node.compiled_code
    # the Spark dispatches, not the UTC short-circuit, were compiled
    assert "to_utc_timestamp" in sql and "from_utc_timestamp" in sql and "timestampadd" in sql
    row = spark["session"].sql(sql).collect()[0].asDict()
    assert row == {name: expected for name, (_, expected) in LOCAL_TIME_CASES.items()}


# --- no JVM needed ----------------------------------------------------------------------


def test_spark_warehouse_url_maps_to_the_local_session_target(tmp_path: Path) -> None:
    target = dbt_target(f"spark://{tmp_path}/wh")
    assert target.target == "spark"
    assert target.env["TRIALSCREEN_DBT_TARGET"] == "spark"
    assert target.env["TRIALSCREEN_SPARK_WAREHOUSE_DIR"] == str((tmp_path / "wh").resolve())
    with pytest.raises(ValueError, match="cluster"):
        dbt_target("spark://spark-master:7077")


def test_spark_profile_carries_the_session_settings_of_trialscreen_spark() -> None:
    from trialscreen.spark import session_conf

    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    spark_target = profile["trialscreen"]["outputs"]["spark"]
    assert spark_target["type"] == "spark" and spark_target["method"] == "session"
    assert spark_target["schema"] == "main"
    # the profile builds the session when dbt runs on its own; the keys must not drift apart
    profile_keys = set(spark_target["server_side_parameters"])
    conf_keys = set(session_conf("/tmp/unused")) - {"spark.app.name", "spark.sql.ansi.enabled"}
    assert profile_keys == conf_keys


def test_duckdb_comparison_tolerates_only_float_rounding() -> None:
    assert _same(0.1 + 0.2, 0.3)
    assert not _same(1.0, 1.0001)
    assert _same(Decimal("2"), 2)
    assert not _same(None, 0.0)
    assert _same(date(2026, 11, 20), date(2026, 11, 20))
    assert not _same(datetime(2026, 11, 20, 1), datetime(2026, 11, 20, 2))
