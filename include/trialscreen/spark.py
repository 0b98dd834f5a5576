"""Run the dbt models on Apache Spark (local ``pyspark`` through dbt-spark ``method: session``).

Optional: needs the ``spark`` extra of the lock (``uv sync --extra spark``) and a Java 17.

The feeds are parsed and landed by the same Python loader as always (DuckDB or PostgreSQL);
this module copies what dbt reads - every ``raw.*`` and ``config.*`` table and
``restricted.patient_keys`` - from a DuckDB warehouse into the Spark catalog. The copy goes
through Parquet (``duckdb`` ``COPY ... (format parquet)`` then ``spark.read.parquet`` and
``saveAsTable``), so no row passes through Python. dbt then runs on the profile target
``spark`` (``trialscreen.transform`` maps the warehouse URL ``spark:///<dir>`` to it).

Everything Spark writes - table files, the embedded Derby metastore, ``derby.log`` - lands
under the one warehouse directory, never in the working directory. The session settings are
those of the ``spark`` target in ``dbt_project/profiles.yml`` (keep the two in step): UTC
session time zone (raw timestamps are naive UTC), no UI, few shuffle partitions, a modest
driver heap.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pyspark is optional: imported only when a session is made
    from pyspark.sql import SparkSession

# What the dbt sources read (models/staging/_raw__sources.yml,
# models/intermediate/clinical/_config__sources.yml): whole schemas, plus single tables.
LANDED_SCHEMAS = ("raw", "config")
LANDED_TABLES = ("restricted.patient_keys",)

DEFAULT_DRIVER_MEMORY = "1g"
DEFAULT_SHUFFLE_PARTITIONS = 2


def session_conf(
    warehouse_dir: str | Path,
    *,
    driver_memory: str = DEFAULT_DRIVER_MEMORY,
    shuffle_partitions: int = DEFAULT_SHUFFLE_PARTITIONS,
) -> dict[str, str]:
    """Spark settings of a local session whose catalog lives in ``warehouse_dir``.

    The same settings as the ``spark`` target's ``server_side_parameters`` in profiles.yml.
    """
    home = Path(warehouse_dir).expanduser().resolve()
    metastore = home / "metastore_db"
    return {
        "spark.master": "local[2]",
        "spark.app.name": "trialscreen",
        "spark.sql.warehouse.dir": str(home),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={metastore};create=true"
        ),
        # derby.log and any Derby scratch files go to the warehouse directory, not the cwd
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={home} -Duser.timezone=UTC",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.default.parallelism": str(shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": driver_memory,
        # dbt-spark forces this too (Spark 4 turns ANSI mode on by default)
        "spark.sql.ansi.enabled": "false",
    }


def spark_session(warehouse_dir: str | Path, **conf_options: Any) -> SparkSession:
    """The local Hive-catalog session dbt-spark's ``session`` method will reuse (same JVM)."""
    from pyspark.sql import SparkSession

    Path(warehouse_dir).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder.enableHiveSupport()
    for key, value in session_conf(warehouse_dir, **conf_options).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def _landed_tables(con: Any, schemas: Iterable[str], tables: Iterable[str]) -> list[str]:
    wanted = list(schemas)
    rows = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_type = 'BASE TABLE' and table_schema in "
        f"({', '.join('?' for _ in wanted)}) order by 1, 2",
        wanted,
    ).fetchall()
    found = [f"{schema}.{name}" for schema, name in rows]
    for table in tables:
        schema, name = table.split(".", 1)
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchone()
        if exists and exists[0]:
            found.append(table)
    return found


def load_landed_tables(
    duckdb_path: str | Path,
    spark: SparkSession,
    *,
    schemas: Iterable[str] = LANDED_SCHEMAS,
    tables: Iterable[str] = LANDED_TABLES,
) -> dict[str, int]:
    """Copy the landed tables dbt reads from a DuckDB warehouse into the Spark catalog.

    Each table replaces the Spark table of the same name (``<schema>.<table>``, a Parquet
    data-source table in the session's warehouse directory). Naive timestamps arrive as
    Spark ``timestamp_ntz`` and are stored as ``timestamp`` (the session time zone is UTC,
    so the wall-clock value is unchanged). Returns the row count per table.
    """
    import duckdb
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampNTZType

    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="trialscreen-spark-") as scratch:
        con = duckdb.connect(str(duckdb_path), read_only=True)
        try:
            names = _landed_tables(con, schemas, tables)
            files: dict[str, Path] = {}
            for name in names:
                schema, table = name.split(".", 1)
                path = Path(scratch) / f"{schema}__{table}.parquet"
                con.execute(
                    f'copy (select * from "{schema}"."{table}") to \'{path}\' (format parquet)'
                )
                files[name] = path
        finally:
            con.close()
        for schema in sorted({name.split(".", 1)[0] for name in names}):
            spark.sql(f"create database if not exists `{schema}`")
        for name, path in files.items():
            frame = spark.read.parquet(str(path))
            frame = frame.select(
                *(
                    F.col(f.name).cast("timestamp").alias(f.name)
                    if isinstance(f.dataType, TimestampNTZType)
                    else F.col(f.name)
                    for f in frame.schema.fields
                )
            )
            frame.write.mode("overwrite").format("parquet").saveAsTable(name)
            counts[name] = spark.table(name).count()
    return counts
