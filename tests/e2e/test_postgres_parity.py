"""The same population through the whole pipeline on DuckDB and on PostgreSQL gives the same
published tables, row for row (docs/specification.md#scale: one dbt project, two warehouses).

One generated population is run once per engine (module-scoped fixtures); the tests then compare
every published table of the analyst and coordinator contract
(docs/specification.md#warehouse-contract), the per-feed audit
counts and the quarantine rows. Columns that identify the run (``run_id``) or the moment of the
build are dropped; floats are compared with a relative tolerance of 1e-9.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from trialscreen import pseudonym
from trialscreen.pipeline import run_pipeline
from trialscreen.synth import generate
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.postgres

KEY = "parity-test-key"
SCREENING_DATE = date(2026, 11, 20)
PATIENTS, SEED = 150, 21
REL_TOL = 1e-9

# published tables compared row for row, and the columns that legitimately differ per run
TABLES = (
    "marts.criterion_evaluations",
    "marts.screening_results",
    "marts.eligible_candidates",
    "marts.screening_funnel",
    "restricted.candidate_contacts",
)
RUN_COLUMNS = frozenset({"run_id", "recorded_at", "built_at", "loaded_at", "published_at"})
FEED_COUNT_COLUMNS = ("records_in", "loaded", "duplicates_skipped", "quarantined")


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parity_drop")
    generate(patients=PATIENTS, seed=SEED, out=root / "drop", screening_date=SCREENING_DATE)
    return root / "drop"


def _run(drop: Path, warehouse: str, reports: Path) -> str:
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    try:
        result = run_pipeline(drop, SCREENING_DATE, warehouse, reports_dir=reports)
    finally:
        mp.undo()
    assert result.published, f"{warehouse.split('://')[0]}: {result.message}"
    return result.run_id


@pytest.fixture(scope="module")
def duck(drop: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("parity_duckdb")
    url = str(root / "wh.duckdb")
    return {"url": url, "run_id": _run(drop, url, root / "reports")}


@pytest.fixture(scope="module")
def pg(drop: Path, pg_cluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import psycopg2

    name = "t_parity_pipeline"
    con = psycopg2.connect(pg_cluster.url)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name}")
    con.close()
    url = pg_cluster.url_for(name)
    root = tmp_path_factory.mktemp("parity_postgres")
    return {"url": url, "run_id": _run(drop, url, root / "reports")}


# --- normalising rows so that two engines' values compare -----------------------------------


def _norm(value: Any) -> Any:
    """Engine-neutral form of one cell: Decimal/int-as-float to float, datetimes naive."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.replace(tzinfo=None)
    return value


def _rows(url: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with Warehouse.connect(url) as wh:
        frame = wh.query_frame(sql)
    return frame.columns, [tuple(_norm(v) for v in row) for row in frame.rows()]


def _table(url: str, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with Warehouse.connect(url) as wh:
        columns = wh.query_frame(f"select * from {table} where 1 = 0").columns
    keep = [c for c in columns if c not in RUN_COLUMNS]
    names, rows = _rows(url, f"select {', '.join(keep)} from {table}")
    return names, sorted(rows, key=_sort_key)


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    # nulls first, and floats rounded so that a 1e-15 difference cannot reorder two rows
    return tuple(
        (0, "") if v is None else (1, round(v, 6) if isinstance(v, float) else v) for v in row
    )


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-12)
    return a == b


def _differences(
    columns: list[str], left: list[tuple[Any, ...]], right: list[tuple[Any, ...]]
) -> list[str]:
    problems = []
    for i, (a, b) in enumerate(zip(left, right, strict=False)):
        for col, x, y in zip(columns, a, b, strict=True):
            if not _same(x, y):
                problems.append(f"row {i} {col}: duckdb={x!r} postgres={y!r}")
    return problems


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_published_table_is_identical_on_both_engines(duck, pg, table: str) -> None:
    duck_cols, duck_rows = _table(duck["url"], table)
    pg_cols, pg_rows = _table(pg["url"], table)
    assert duck_cols == pg_cols, f"{table}: columns differ"
    assert len(duck_rows) > 0, f"{table}: empty — nothing was compared"
    assert len(duck_rows) == len(pg_rows), f"{table}: {len(duck_rows)} vs {len(pg_rows)} rows"
    problems = _differences(duck_cols, duck_rows, pg_rows)
    assert problems == [], f"{table}: {len(problems)} differing cells, e.g. {problems[:10]}"


def _feed_counts(url: str, run_id: str) -> dict[str, tuple[int, ...]]:
    cols = ", ".join(f"sum({c}) as {c}" for c in FEED_COUNT_COLUMNS)
    _, rows = _rows(
        url, f"select feed, {cols} from audit.feed_counts where run_id = '{run_id}' group by feed"
    )
    return {r[0]: tuple(int(v) for v in r[1:]) for r in rows}


def test_audit_feed_counts_match_per_feed(duck, pg) -> None:
    duck_counts = _feed_counts(duck["url"], duck["run_id"])
    pg_counts = _feed_counts(pg["url"], pg["run_id"])
    assert set(duck_counts) == {"fhir", "hl7", "csv"}
    assert all(c[0] > 0 for c in duck_counts.values()), duck_counts
    assert duck_counts == pg_counts


def test_quarantine_rows_match(duck, pg) -> None:
    sql = "select feed, source_file, source_position, error from quarantine.records"
    _, duck_rows = _rows(duck["url"], sql)
    _, pg_rows = _rows(pg["url"], sql)
    assert len(duck_rows) > 0, "the generated population carries bad records: none quarantined"
    assert sorted(duck_rows, key=_sort_key) == sorted(pg_rows, key=_sort_key)
