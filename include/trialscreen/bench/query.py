"""The reference query, "latest result per patient and analyte" over
``intermediate.int_observations``: one DuckDB query vs pandas (``groupby``/``idxmax``) vs
polars on the same frame, and PostgreSQL's ``distinct on`` when the bench has a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trialscreen.bench.peers import _best

LATEST_SQL = """
select patient_mrn, analyte, value_canonical, effective_at
from intermediate.int_observations
where effective_at is not null
qualify row_number() over (partition by patient_mrn, analyte order by effective_at desc) = 1
"""


PG_LATEST_SQL = """
select count(*) from (
    select distinct on (patient_mrn, analyte) patient_mrn, analyte, value_canonical, effective_at
    from intermediate.int_observations
    where effective_at is not null
    order by patient_mrn, analyte, effective_at desc
) latest
"""


FRAME_SQL = """
select patient_mrn, analyte, value_canonical, effective_at
from intermediate.int_observations
where effective_at is not null
"""


def measure_latest_query(warehouse: Path, repeat: int = 3) -> dict[str, Any]:
    """Latest result per patient and analyte: one DuckDB query vs pandas vs polars."""
    import duckdb
    import polars as pl

    from trialscreen.warehouse import quiet_duckdb

    con = quiet_duckdb(duckdb.connect(str(warehouse), read_only=True))
    try:
        rows_in = int(con.sql(f"select count(*) from ({FRAME_SQL})").fetchall()[0][0])
        frame = con.sql(FRAME_SQL).pl()  # also warms DuckDB's buffer cache for the query
        # duckdb 2.x: .arrow() is a stream; read_all() drains it into a table
        duck_s, duck_rows = _best(lambda: con.sql(LATEST_SQL).arrow().read_all().num_rows, repeat)
    finally:
        con.close()
    pdf = frame.to_pandas()

    def with_pandas() -> int:
        idx = pdf.groupby(["patient_mrn", "analyte"], sort=False)["effective_at"].idxmax()
        return len(pdf.loc[idx])

    def with_polars() -> int:
        latest = frame.group_by("patient_mrn", "analyte").agg(
            pl.all().sort_by("effective_at").last()
        )
        return int(latest.height)

    with_pandas(), with_polars()  # warm-up, as DuckDB got
    pandas_s, pandas_rows = _best(with_pandas, repeat)
    polars_s, polars_rows = _best(with_polars, repeat)
    return {
        "rows_in": rows_in,
        "rows_out": duck_rows,
        "rows_agree": duck_rows == pandas_rows == polars_rows,
        "duckdb_seconds": round(duck_s, 5),
        "pandas_seconds": round(pandas_s, 5),
        "polars_seconds": round(polars_s, 5),
    }


def _pg_latest_seconds(url: str, repeat: int) -> float:
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(url) as wh:
        seconds, _ = _best(lambda: int(wh.scalar(PG_LATEST_SQL)), repeat)
    return round(seconds, 5)
