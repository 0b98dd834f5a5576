"""One way into the warehouse, two engines: DuckDB (embedded default) and PostgreSQL.

Everything above this module speaks plain SQL through ``Warehouse.execute``/``query`` and
bulk-loads polars frames through ``Warehouse.load_frame``; only connection handling and the
bulk path differ per engine. DuckDB goes through its native client (Arrow in, no row loop);
PostgreSQL through SQLAlchemy 2 with ``COPY ... FROM STDIN`` for bulk rows. SQLAlchemy
reflection is never used (it does not work on duckdb-engine, docs/specification.md#stack-notes).

Values always reach SQL as bound parameters (``Warehouse.param``); the table, schema and
column names that have to be spelled into SQL text are checked by :func:`identifier`.

``published_file(url, schema)`` is where analysts read a DuckDB warehouse's published
tables while the night writes (DuckDB lets one process open a file for writing and nobody
else in): ``<warehouse dir>/<stem>_published/<schema>.duckdb``, a read-only copy written
beside it and swapped in with one ``rename`` (``DuckDBWarehouse.export_schema`` then
:func:`swap_in`). A reader's open connection keeps the file it opened (yesterday's night,
consistent); a new connection opens the new one. PostgreSQL needs none of this (MVCC: a
reader sees the committed tables throughout).

``run_lock(url)`` is the one-run-at-a-time lock of a warehouse: a PostgreSQL session
advisory lock (held on a connection of its own), or an exclusive ``flock`` on
``<file>.runlock`` beside a DuckDB file. Both vanish with the process that holds them, even
one killed with ``-9``, so a run row still ``running`` while the lock is free belongs to a
process that died.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import polars as pl

from trialscreen.settings import is_duckdb_size

DEFAULT_DUCKDB = "trialscreen.duckdb"
# DuckDB's buffers (it spills to disk beyond): 80 % of RAM by default, which a night at a
# million patients fills (docs/decisions.md, "DuckDB's memory is bounded"); dbt's connections
# take the same value from profiles.yml
DUCKDB_MEMORY_ENV = "TRIALSCREEN_DUCKDB_MEMORY"
DEFAULT_DUCKDB_MEMORY = "4GB"
# pg_try_advisory_lock(classid, objid) of the run lock (advisory locks are per database)
RUN_LOCK = (0x7473, 0)  # "ts", 0
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STAGED = "_ts_staged"  # the name DuckDB reads a staged frame by (DuckDBWarehouse.staged)


def published_file(value: str | Path | None, schema: str) -> Path | None:
    """The read-only copy of ``schema`` that analysts open on a DuckDB warehouse (its file
    name is the schema, so ``marts.screening_results`` resolves there as in the warehouse);
    ``None`` on PostgreSQL, where analysts connect to the database itself."""
    url = WarehouseUrl.parse(value)
    if url.engine != "duckdb":
        return None
    assert url.path is not None
    return url.path.parent / f"{url.path.stem}_published" / f"{identifier(schema)}.duckdb"


def swap_in(staged: Path, target: Path) -> None:
    """Replace ``target`` by ``staged`` with one ``rename`` (atomic on a POSIX file system):
    a reader opening ``target`` gets the old file or the new one, never a partial one."""
    os.replace(staged, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename survives a crash right after publish
    finally:
        os.close(directory)


STREAM_ROWS = 50_000  # rows per batch of Warehouse.stream_frames


def _exact(dtype: pl.DataType) -> bool:
    """Polars holds a streamed column of this type exactly (Warehouse.stream_frames)."""
    if isinstance(dtype, pl.Datetime):  # a zone's offsets, nanoseconds: the driver's values
        return dtype.time_zone is None and dtype.time_unit != "ns"
    return dtype.is_numeric() or dtype in (pl.String, pl.Boolean, pl.Date, pl.Null)


def _arrow_series(name: str, column: Any) -> pl.Series:
    """An Arrow column (DuckDB's) as polars holds it, else its Python values."""
    try:
        series = pl.Series(name, column)
    except Exception:  # a type polars does not read (an interval)
        series = None
    if series is not None and _exact(series.dtype):
        return series
    return pl.Series(name, column.to_pylist(), dtype=pl.Object)


def _python_series(name: str, values: list[Any]) -> pl.Series:
    """A column of PostgreSQL values (psycopg2's) as polars holds them, else as they are:
    numeric (Decimal) among those, as polars may round a decimal or make it null when it
    guesses one scale for the column."""
    first = next((v for v in values if v is not None), None)
    if first is None or (
        isinstance(first, str | int | float | date) and getattr(first, "tzinfo", None) is None
    ):
        try:
            series = pl.Series(name, values, strict=True)
        except Exception:  # mixed types, an integer beyond 128 bits
            series = None
        if series is not None and _exact(series.dtype):
            return series
    return pl.Series(name, values, dtype=pl.Object)


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse: a run in progress, or an open DuckDB client."""


def identifier(name: str) -> str:
    """``name`` (``table`` or ``schema.table``) when every part is a plain SQL identifier;
    ``ValueError`` otherwise. For the names that must be spelled into SQL text."""
    parts = str(name).split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENT.match(p) for p in parts):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


@dataclass(frozen=True)
class WarehouseUrl:
    """A parsed ``--warehouse`` value: a DuckDB path/``duckdb:///path`` or ``postgresql://``."""

    engine: str  # "duckdb" | "postgres"
    path: Path | None = None
    url: str | None = None

    @classmethod
    def parse(cls, value: str | Path | None) -> WarehouseUrl:
        text = str(value) if value else DEFAULT_DUCKDB
        if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
            return cls("postgres", url=text.replace("postgres://", "postgresql://", 1))
        if text.startswith("duckdb:///"):
            return cls("duckdb", path=Path(text[len("duckdb:///") :]))
        if "://" in text:
            scheme = text.split("://", 1)[0]
            raise ValueError(
                f"--warehouse: unsupported scheme '{scheme}' (use a DuckDB path, duckdb:///path "
                "or postgresql://user@host:port/db)"
            )
        return cls("duckdb", path=Path(text))

    def redacted(self) -> str:
        """For logs: the URL without its password."""
        if self.engine == "duckdb":
            return f"duckdb:///{self.path}"
        parts = urlsplit(self.url or "")
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        user = f"{parts.username}@" if parts.username else ""
        return f"postgresql://{user}{host}{port}{parts.path}"


def _pg_type(dtype: pl.DataType) -> str:
    if dtype == pl.String:
        return "text"
    if dtype == pl.Int64:
        return "bigint"
    if dtype == pl.Int32:
        return "integer"
    if dtype == pl.Float64:
        return "double precision"
    if dtype == pl.Boolean:
        return "boolean"
    if dtype == pl.Date:
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "timestamp"
    raise TypeError(f"no SQL type for {dtype}")


def _duck_type(dtype: pl.DataType) -> str:
    mapped = _pg_type(dtype)
    return {"text": "varchar", "double precision": "double"}.get(mapped, mapped)


class Warehouse:
    """A connection to the warehouse. Use ``Warehouse.connect(url)`` as a context manager."""

    engine: str

    def __init__(self, url: WarehouseUrl) -> None:
        self.url = url

    @staticmethod
    def connect(value: str | Path | None) -> Warehouse:
        url = WarehouseUrl.parse(value)
        if url.engine == "duckdb":
            return DuckDBWarehouse(url)
        return PostgresWarehouse(url)

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- to implement per engine -------------------------------------------------------
    def close(self) -> None:
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def query_frame(self, sql: str) -> pl.DataFrame:
        raise NotImplementedError

    def stream_frames(self, sql: str, rows: int = STREAM_ROWS) -> Iterator[pl.DataFrame]:
        """The result of ``sql`` as polars frames of at most ``rows`` rows, never whole in
        memory (the worklist at 1,000,000 patients: 6.5 M rows); the connection runs nothing
        else until the iteration ends. A column at a time and no Python object per row where
        polars holds the type exactly (:func:`_exact`): text, numbers, booleans, dates,
        timestamps without a zone. A column of any other type (a time zone, an interval, a
        list; PostgreSQL's numeric, whose precision polars may silently lose) holds the
        driver's own Python values (``pl.Object``)."""
        raise NotImplementedError
        yield pl.DataFrame()

    def _bulk_insert(self, table: str, frame: pl.DataFrame) -> None:
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield

    def column_type(self, dtype: pl.DataType) -> str:
        raise NotImplementedError

    @contextmanager
    def staged(self, name: str, frame: pl.DataFrame) -> Iterator[str]:
        """``frame`` readable as the relation ``name`` for the block: a temporary table here
        (dropped after); DuckDB overrides it with a view of the frame's Arrow data."""
        identifier(name)
        self.execute(f"drop table if exists {name}")
        cols = ", ".join(f"{c} {self.column_type(t)}" for c, t in frame.schema.items())
        self.execute(f"create temporary table {name} ({cols})")
        try:
            self.load_frame(name, frame)
            yield name
        finally:
            self.execute(f"drop table if exists {name}")

    # --- shared --------------------------------------------------------------------------
    def ensure_table(self, table: str, columns: dict[str, pl.DataType]) -> None:
        """Create ``schema.table`` if missing; add columns a newer release defined (the
        contract only ever grows: columns are added, never dropped or retyped)."""
        schema, _ = identifier(table).split(".", 1)
        for column in columns:
            identifier(column)
        self.ensure_schema(schema)
        cols = ", ".join(f"{c} {self.column_type(dt)}" for c, dt in columns.items())
        self.execute(f"create table if not exists {table} ({cols})")
        present = set(self.column_names(table))
        for column, dtype in columns.items():
            if column not in present:
                self.execute(f"alter table {table} add column {column} {self.column_type(dtype)}")

    def ensure_schema(self, schema: str) -> None:
        """Create a schema only when missing: on PostgreSQL ``create schema if not exists``
        needs CREATE on the database even when the schema exists, which the loader lacks."""
        identifier(schema)
        exists = self.scalar(
            f"select count(*) from information_schema.schemata where schema_name = {self.param}",
            [schema],
        )
        if not exists:
            self.execute(f"create schema if not exists {schema}")

    def load_frame(self, table: str, frame: pl.DataFrame) -> int:
        """Append ``frame`` to ``table`` (columns matched by name); returns rows written."""
        if frame.height == 0:
            return 0
        self._bulk_insert(table, frame)
        return frame.height

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        """Replace ``table``'s content with ``frame`` (created from the frame's schema)."""
        with self.transaction():
            self.execute(f"drop table if exists {table}")
            self.ensure_table(table, dict(frame.schema))
            self.load_frame(table, frame)
        self.analyze(table)

    def analyze(self, table: str) -> None:
        """Refresh planner statistics after a bulk load (PostgreSQL plans joins on a freshly
        loaded table as if it held one row until autovacuum runs; DuckDB needs nothing)."""
        if self.engine == "postgres":
            self.execute(f"analyze {identifier(table)}")

    def scalar(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def column_names(self, table: str) -> list[str]:
        """The columns of ``schema.table`` in table order (empty when it does not exist)."""
        schema, name = table.split(".", 1)
        return [
            r[0]
            for r in self.query(
                "select column_name from information_schema.columns where table_schema = "
                f"{self.param} and table_name = {self.param} order by ordinal_position",
                [schema, name],
            )
        ]

    def columns_by_table(self, schemas: Iterable[str]) -> dict[str, set[str]]:
        """``schema.table`` -> its columns, for every table of ``schemas`` (one catalog read;
        a table the session may not see is left out)."""
        names = sorted(identifier(s) for s in schemas)
        if not names:
            return {}
        marks = ", ".join([self.param] * len(names))
        out: dict[str, set[str]] = {}
        for schema, table, column in self.query(
            "select table_schema, table_name, column_name from information_schema.columns "
            f"where table_schema in ({marks})",
            names,
        ):
            out.setdefault(f"{schema}.{table}", set()).add(column)
        return out

    def table_exists(self, table: str) -> bool:
        schema, name = table.split(".", 1)
        return bool(
            self.scalar(
                "select count(*) from information_schema.tables "
                f"where table_schema = {self.param} and table_name = {self.param}",
                [schema, name],
            )
        )

    @property
    def param(self) -> str:
        """The driver's positional placeholder."""
        return "?" if self.engine == "duckdb" else "%s"


def duckdb_memory() -> str:
    """``TRIALSCREEN_DUCKDB_MEMORY`` (default :data:`DEFAULT_DUCKDB_MEMORY`), a DuckDB size."""
    value = os.environ.get(DUCKDB_MEMORY_ENV, "").strip() or DEFAULT_DUCKDB_MEMORY
    if not is_duckdb_size(value):
        raise ValueError(f"{DUCKDB_MEMORY_ENV}: '{value}' is not a size such as 512MB or 4GB")
    return value


def quiet_duckdb(con: Any) -> Any:
    """``con`` with DuckDB's progress bar off. DuckDB draws it on the process's standard output
    (a pipe too: the DAG's task logs, the CLI's summary, a subprocess's JSON line) for any
    query over two seconds, which at a hospital's size is most of them. A connection
    setting, not a configuration of the database: another connection to the same file in
    the process is not refused for it (docs/decisions.md, "No progress bars on stdout")."""
    con.execute("set enable_progress_bar = false")
    return con


class DuckDBWarehouse(Warehouse):
    engine = "duckdb"
    _staged: Any  # the frame staged() holds, as Arrow (None outside it)

    def __init__(self, url: WarehouseUrl) -> None:
        import duckdb

        super().__init__(url)
        assert url.path is not None
        memory = duckdb_memory()
        url.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(url.path))
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            pid = re.search(r"PID (\d+)", str(exc))
            raise WarehouseBusy(
                f"the DuckDB warehouse {url.path} is open in another process"
                + (f" (PID {pid[1]})" if pid else "")
                + ": a run in progress, or a client such as a notebook or the duckdb shell. "
                "DuckDB lets one process write a file at a time: wait for the run to finish "
                "or close the client, then retry"
            ) from None
        self.con.execute(f"set memory_limit = '{memory}'")
        quiet_duckdb(self.con)
        self._depth = 0
        self._staged = None

    def close(self) -> None:
        self.con.close()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self.con.execute(sql, params or [])

    def query_frame(self, sql: str) -> pl.DataFrame:
        # duckdb 2.x: execute() results have no .pl() and an unfetched result blocks the
        # connection; a relation from sql() converts straight to polars via Arrow
        frame: pl.DataFrame = self.con.sql(sql).pl()  # the duckdb stubs type .pl() as Any
        return frame

    def column_type(self, dtype: pl.DataType) -> str:
        return _duck_type(dtype)

    @contextmanager
    def staged(self, name: str, frame: pl.DataFrame) -> Iterator[str]:
        """The frame's Arrow data, read by :meth:`query` through DuckDB's replacement scan
        under the name :data:`_STAGED` (what this yields; ``name`` is PostgreSQL's table):
        neither a temporary table nor a registered view, since a feed is one transaction and
        DuckDB keeps both until it ends: dropped temporary tables in its memory (which ran
        out at 1,000,000 patients), unregistered views' Arrow data in Python's, so that the
        ingest grew with the drop (docs/decisions.md, "Staged batches are views")."""
        identifier(name)
        if self._staged is not None:
            raise RuntimeError("one staged frame at a time")
        self._staged = frame.to_arrow()
        try:
            yield _STAGED
        finally:
            self._staged = None

    def stream_frames(self, sql: str, rows: int = STREAM_ROWS) -> Iterator[pl.DataFrame]:
        # execute() materializes the whole result; a relation's Arrow reader streams it, an
        # ORDER BY spilling to disk under the memory limit
        for batch in self.con.sql(sql).to_arrow_reader(rows):
            names = batch.schema.names
            yield pl.DataFrame(
                [_arrow_series(n, c) for n, c in zip(names, batch.columns, strict=True)]
            )

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        _ts_staged = self._staged  # noqa: F841 - read by name by DuckDB's replacement scan
        return self.con.execute(sql, params or []).fetchall()

    def _bulk_insert(self, table: str, frame: pl.DataFrame) -> None:
        # a local read by DuckDB's replacement scan, not a registered view (see staged)
        _ts_bulk = frame.to_arrow()  # noqa: F841
        cols = ", ".join(frame.columns)
        self.con.execute(f"insert into {table} ({cols}) select {cols} from _ts_bulk")

    def export_schema(self, schema: str, tables: Sequence[str], target: Path) -> Path:
        """Copy ``schema``'s ``tables`` into a new DuckDB file staged beside ``target`` (its
        tables in ``main``) and return the staged path, for :func:`swap_in` once the tables
        are published in the warehouse. Readers of ``target`` are not touched."""
        identifier(schema)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.stem}.{os.getpid()}.staged.duckdb")
        for leftover in (staged, Path(f"{staged}.wal")):
            leftover.unlink(missing_ok=True)
        path = str(staged).replace("'", "''")
        self.con.execute(f"attach '{path}' as _ts_published")
        try:
            for table in tables:
                self.con.execute(
                    f"create table _ts_published.main.{identifier(table)} as "
                    f"select * from {schema}.{table}"
                )
            self.con.execute("checkpoint _ts_published")
        except BaseException:
            self.con.execute("detach _ts_published")
            staged.unlink(missing_ok=True)
            raise
        self.con.execute("detach _ts_published")
        if Path(f"{staged}.wal").exists():  # detach checkpoints; a WAL would be lost on rename
            raise RuntimeError(f"publish: {staged.name} kept a write-ahead log after detach")
        if self.url.path is not None and self.url.path.exists():
            os.chmod(staged, self.url.path.stat().st_mode & 0o777)  # the warehouse's access
        return staged

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self.con.execute("begin transaction")
        try:
            yield
        except BaseException:
            self.con.execute("rollback")
            raise
        else:
            self.con.execute("commit")
        finally:
            self._depth = 0


class PostgresWarehouse(Warehouse):
    engine = "postgres"

    def __init__(self, url: WarehouseUrl) -> None:
        import sqlalchemy as sa

        super().__init__(url)
        assert url.url is not None
        sa_url = url.url.replace("postgresql://", "postgresql+psycopg2://", 1)
        self.sa_engine = sa.create_engine(sa_url, pool_pre_ping=True)
        self.raw = self.sa_engine.raw_connection()
        # set on the psycopg2 connection itself: an attribute set on SQLAlchemy's pool proxy
        # never reaches the driver, and a statement outside transaction() (ensure_table, an
        # update) was then silently rolled back when the connection closed
        # Any: the driver's own attributes (autocommit); cast, or mypy narrows to the pool's type
        self._dbapi: Any = cast(Any, self.raw.dbapi_connection)
        self._dbapi.autocommit = True
        self._depth = 0

    def close(self) -> None:
        self.raw.close()
        self.sa_engine.dispose()

    def _cursor(self) -> Any:
        return self.raw.cursor()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self._cursor() as cur:
            cur.execute(sql, params or None)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            cur.execute(sql, params or None)
            return list(cur.fetchall())

    def query_frame(self, sql: str) -> pl.DataFrame:
        with self._cursor() as cur:
            cur.execute(sql)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)

    def column_type(self, dtype: pl.DataType) -> str:
        return _pg_type(dtype)

    def stream_frames(self, sql: str, rows: int = STREAM_ROWS) -> Iterator[pl.DataFrame]:
        for names, batch in self._batches(sql, rows):
            columns = zip(*batch, strict=True)
            yield pl.DataFrame(
                [_python_series(n, list(v)) for n, v in zip(names, columns, strict=True)]
            )

    def _batches(self, sql: str, rows: int) -> Iterator[tuple[list[str], list[tuple[Any, ...]]]]:
        # a server-side (named) cursor: psycopg2's default cursor fetches the whole result
        with self.transaction():
            cursor = self._dbapi.cursor(name="trialscreen_stream")
            try:
                cursor.itersize = rows
                cursor.execute(sql)
                while batch := cursor.fetchmany(rows):
                    yield [d[0] for d in cursor.description], list(batch)
            finally:
                cursor.close()

    def _bulk_insert(self, table: str, frame: pl.DataFrame) -> None:
        buf = io.BytesIO()
        # every text value is quoted, and only an unquoted \N is NULL to COPY ... csv: a cell
        # that is literally \N stays text (unquoted, it became NULL: an MRN was lost)
        frame.write_csv(
            buf,
            include_header=False,
            null_value="\\N",
            quote_style="non_numeric",
            datetime_format="%Y-%m-%d %H:%M:%S%.6f",
        )
        buf.seek(0)
        cols = ", ".join(frame.columns)
        with self._cursor() as cur:
            cur.copy_expert(f"copy {table} ({cols}) from stdin with (format csv, null '\\N')", buf)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        self._dbapi.autocommit = False
        try:
            yield
        except BaseException:
            self.raw.rollback()
            raise
        else:
            self.raw.commit()
        finally:
            self._dbapi.autocommit = True
            self._depth = 0


# --- the run lock ------------------------------------------------------------------------

_held: dict[str, list[Any]] = {}  # lock key -> [depth, handle]: re-entrant in one process


def _lock_key(url: WarehouseUrl) -> str:
    if url.engine == "duckdb":
        assert url.path is not None
        return f"duckdb:{url.path.resolve()}"
    parts = urlsplit(url.url or "")
    return f"postgres:{parts.hostname}:{parts.port or 5432}{parts.path}"  # any role, one lock


@contextmanager
def run_lock(value: str | Path | None) -> Iterator[None]:
    """Hold the warehouse's run lock for the block; ``WarehouseBusy`` at once if another
    process holds it. Re-entrant within a process (the CLI holds it for the whole run and
    every step takes it again; an Airflow task holds it for its own step)."""
    url = WarehouseUrl.parse(value)
    key = _lock_key(url)
    if key in _held:
        _held[key][0] += 1
        try:
            yield
        finally:
            _held[key][0] -= 1
        return
    handle = _acquire_pg(url) if url.engine == "postgres" else _acquire_file(url)
    _held[key] = [1, handle]
    try:
        yield
    finally:
        del _held[key]
        handle.close()


def _busy(url: WarehouseUrl, how: str) -> WarehouseBusy:
    return WarehouseBusy(
        f"another TrialScreen run holds the run lock of {url.redacted()} ({how}): one run at "
        "a time per warehouse. Wait for it to finish (audit.pipeline_runs shows it as "
        "'running') and start again; a run whose process died frees the lock by itself"
    )


def _acquire_pg(url: WarehouseUrl) -> Any:
    import psycopg2  # type: ignore[import-untyped]

    con = psycopg2.connect(url.url, application_name="trialscreen run lock")
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("select pg_try_advisory_lock(%s, %s)", list(RUN_LOCK))
        acquired = bool(cur.fetchone()[0])
    if not acquired:
        con.close()
        raise _busy(url, "PostgreSQL advisory lock")
    return _PgLock(con)


class _PgLock:
    """The session holding the advisory lock. ``close`` unlocks before it disconnects: a
    disconnect alone frees the lock only once the server's backend has exited, a moment
    after the client returns, and the next step of the same run (the DAG's ``validate``
    after ``dbt``) could ask within that moment and be refused (seen in CI)."""

    def __init__(self, con: Any) -> None:
        self.con = con

    def close(self) -> None:
        try:
            # a broken session cannot unlock: its disconnect frees the lock
            with suppress(Exception), self.con.cursor() as cur:
                cur.execute("select pg_advisory_unlock(%s, %s)", list(RUN_LOCK))
        finally:
            self.con.close()


def _acquire_file(url: WarehouseUrl) -> Any:
    import fcntl

    assert url.path is not None
    url.path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{url.path}.runlock", "a+")  # noqa: SIM115 - held until the run ends
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise _busy(url, f"flock on {url.path}.runlock") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
