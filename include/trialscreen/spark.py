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

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # pyspark is optional: imported only when a session is made
    from pyspark.sql import SparkSession

# What the dbt sources read (models/staging/_raw__sources.yml,
# models/staging/config/_config__sources.yml): whole schemas, plus single tables.
LANDED_SCHEMAS = ("raw", "config")
LANDED_TABLES = ("restricted.patient_keys",)

DEFAULT_DRIVER_MEMORY = "1g"
DEFAULT_SHUFFLE_PARTITIONS = 2

# For a short-lived session over little data (tests, a 1,000-patient demo): the JVM's quick
# C1 compiler only, the serial GC, and interpreted expressions instead of generated Java
# (each dbt model is a new query; compiling code for a few thousand rows costs more than it
# saves). Measured on the 60-patient parity build: JVM CPU 54 s -> 38 s, RSS 1.25 -> 0.8 GB.
# Not for real volumes: leave these out (and give the driver more memory) there.
SMALL_DATA_CONF: dict[str, str] = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}
SMALL_DATA_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def session_conf(
    warehouse_dir: str | Path,
    *,
    driver_memory: str = DEFAULT_DRIVER_MEMORY,
    shuffle_partitions: int = DEFAULT_SHUFFLE_PARTITIONS,
    small_data: bool = False,
) -> dict[str, str]:
    """Spark settings of a local session whose catalog lives in ``warehouse_dir``.

    The same settings as the ``spark`` target's ``server_side_parameters`` in profiles.yml;
    ``small_data`` adds :data:`SMALL_DATA_CONF` and :data:`SMALL_DATA_JAVA_OPTIONS`.
    """
    home = Path(warehouse_dir).expanduser().resolve()
    metastore = home / "metastore_db"
    java_options = f"-Dderby.system.home={home} -Duser.timezone=UTC"
    if small_data:
        java_options += " " + SMALL_DATA_JAVA_OPTIONS
    conf = {
        "spark.master": "local[2]",
        "spark.app.name": "trialscreen",
        "spark.sql.warehouse.dir": str(home),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={metastore};create=true"
        ),
        # derby.log and any Derby scratch files go to the warehouse directory, not the cwd
        "spark.driver.extraJavaOptions": java_options,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.default.parallelism": str(shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": driver_memory,
        # dbt-spark forces this too (Spark 4 turns ANSI mode on by default)
        "spark.sql.ansi.enabled": "false",
    }
    return {**conf, **(SMALL_DATA_CONF if small_data else {})}


def spark_session(
    warehouse_dir: str | Path,
    *,
    catalog: str = "hive",
    extra_conf: Mapping[str, str] | None = None,
    **conf_options: Any,
) -> SparkSession:
    """The local session dbt-spark's ``session`` method reuses (``getOrCreate``, same JVM).

    ``catalog="hive"`` (what dbt-spark itself would create): table definitions persist in the
    Derby metastore under ``warehouse_dir``, so a later process (``dbt`` from the command
    line) sees them. ``catalog="in-memory"``: no metastore, the catalog lives as long as this
    process - enough when loading and dbt run in one process (the tests), and lighter.
    """
    from pyspark.sql import SparkSession

    if catalog not in ("hive", "in-memory"):
        raise ValueError(f"catalog must be 'hive' or 'in-memory', not {catalog!r}")
    Path(warehouse_dir).mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder
    if catalog == "hive":
        builder = builder.enableHiveSupport()
    else:
        builder = builder.config("spark.sql.catalogImplementation", "in-memory")
    conf = {**session_conf(warehouse_dir, **conf_options), **(extra_conf or {})}
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def stop_session(session: SparkSession, timeout: float = 30) -> None:
    """Stop the session *and* its JVM: ``SparkSession.stop()`` alone leaves the py4j gateway
    JVM (hundreds of MB) alive until the Python process exits."""
    from pyspark import SparkContext

    session.stop()
    gateway = SparkContext._gateway
    SparkContext._gateway = None
    SparkContext._jvm = None
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    if proc is not None:
        if proc.stdin is not None:
            proc.stdin.close()  # the JVM exits when its parent's pipe closes
        try:
            proc.wait(timeout=timeout)
        except Exception:
            proc.kill()
            proc.wait(timeout=timeout)


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

    DuckDB writes each table as one Parquet file under ``<warehouse dir>/landed/``; the Spark
    table ``<schema>.<table>`` is (re)defined over it (``create table ... using parquet
    location``), so the rows are written once and never pass through Python or a Spark job.
    Naive timestamps are written as UTC instants (``timestamptz`` in DuckDB's UTC session),
    which Spark reads as its ``timestamp`` type - the session time zone is UTC, so the
    wall-clock value is unchanged. Returns the row count per table (from DuckDB).
    """
    import duckdb

    from trialscreen.warehouse import quiet_duckdb

    warehouse = str(spark.conf.get("spark.sql.warehouse.dir") or "spark-warehouse")
    if warehouse.startswith("file:"):
        warehouse = unquote(urlsplit(warehouse).path)
    landed = Path(warehouse).resolve() / "landed"
    exported: dict[str, tuple[Path, int]] = {}
    # default configuration, as trialscreen.warehouse opens it: a process (dbt-duckdb keeps
    # its connection) may already hold the file, and DuckDB refuses a second configuration
    con = quiet_duckdb(duckdb.connect(str(duckdb_path)))
    try:
        con.execute("set session TimeZone = 'UTC'")
        for name in _landed_tables(con, schemas, tables):
            schema, table = name.split(".", 1)
            columns = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, table],
            ).fetchall()
            select = ", ".join(
                f'cast("{column}" as timestamptz) as "{column}"'
                if data_type == "TIMESTAMP"
                else f'"{column}"'
                for column, data_type in columns
            )
            directory = landed / schema / table
            if directory.exists():
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            path = directory / "part-0.parquet"
            con.execute(
                f'copy (select {select} from "{schema}"."{table}") to \'{path}\' (format parquet)'
            )
            count = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
            exported[name] = (directory, int(count[0]) if count else 0)
    finally:
        con.close()
    for schema in sorted({name.split(".", 1)[0] for name in exported}):
        spark.sql(f"create database if not exists `{schema}`")
    for name, (directory, _) in exported.items():
        schema, table = name.split(".", 1)
        spark.sql(f"drop table if exists `{schema}`.`{table}`")
        spark.sql(
            f"create table `{schema}`.`{table}` using parquet location '{directory.as_posix()}'"
        )
    return {name: count for name, (_, count) in exported.items()}
