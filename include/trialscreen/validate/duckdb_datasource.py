"""The quality gate's DuckDB datasource for Great Expectations (a pure move out of
runner.py, issue 8 item 4): GX's SQL datasource with one persisted connection under the
gate's memory limit (:func:`duckdb_datasource_type`), the SQLAlchemy engine it connects with
(:func:`_duckdb_engine`), the rollback after a failed metric query, and the exit hook that
lets DuckDB's package be collected whole (docs/decisions.md, "DuckDB's exit without leak
warnings")."""

from __future__ import annotations

import atexit
import builtins
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from trialscreen.settings import is_duckdb_size

# the name the records carried before the move (the JSON logs' "logger" field)
log = logging.getLogger("trialscreen.validate.runner")


# the DuckDB memory the gate may use (DuckDB spills to disk beyond it); a DuckDB setting
# such as 512MB or 1GB. Python, GX and Data Docs are about 400 MB more: under 1 GB.
GATE_MEMORY_LIMIT_ENV = "TRIALSCREEN_GATE_MEMORY_LIMIT"
DEFAULT_GATE_MEMORY_LIMIT = "512MB"
_duckdb_datasource: type | None = None


def gate_memory_limit() -> str:
    value = (os.environ.get(GATE_MEMORY_LIMIT_ENV) or DEFAULT_GATE_MEMORY_LIMIT).strip()
    if not is_duckdb_size(value):
        raise ValueError(f"{GATE_MEMORY_LIMIT_ENV}: '{value}' is not a size such as 512MB or 1GB")
    return value


def _duckdb_engine(connection_string: str) -> Any:
    """A SQLAlchemy engine whose connections are plain ``duckdb.connect(path)``: duckdb-engine's
    own connect adds a ``custom_user_agent`` setting, and DuckDB refuses a second connection
    to a file that the process already has open with other settings (the run's own)."""
    import duckdb
    import sqlalchemy as sa
    from duckdb_engine import ConnectionWrapper

    _release_duckdb_engine_at_exit()
    path = connection_string.removeprefix("duckdb:///")
    from trialscreen.warehouse import quiet_duckdb

    return sa.create_engine(
        "duckdb://", creator=lambda: ConnectionWrapper(quiet_duckdb(duckdb.connect(path)))
    )


_engine_release_registered = False


def _release_duckdb_engine_at_exit() -> None:
    """At interpreter exit, clear duckdb-engine's module globals before Python finalizes the
    modules (docs/decisions.md, "DuckDB's exit without leak warnings").

    With Great Expectations loaded, SQLAlchemy outlives the shutdown's garbage collection,
    and through the dialect duckdb-engine registered on it, the ``duckdb`` package too; its
    globals are then wiped in an order that leaves the module-level ``DuckDBPyType``
    constants of ``duckdb.value.constant`` alive when DuckDB's bindings (nanobind) count
    their objects, and the process ends with dozens of "nanobind: leaked ..." lines. Cleared
    here (as CPython's own shutdown would clear them, only earlier), duckdb-engine no longer
    holds ``duckdb`` and the package is collected whole. Checked against duckdb 2.0.0,
    duckdb-engine 0.17.0, great-expectations 1.24.1 (tests/test_validate.py)."""
    global _engine_release_registered
    if _engine_release_registered:
        return
    _engine_release_registered = True

    def release() -> None:
        for name, module in list(sys.modules.items()):
            if module is None or not (name == "duckdb_engine" or name.startswith("duckdb_engine.")):
                continue
            namespace = vars(module)
            for key in list(namespace):
                if not (key.startswith("__") and key.endswith("__")):
                    namespace[key] = None

    # registered after duckdb-engine's import: atexit runs it before the exit handlers of
    # the modules imported earlier (DuckDB's own), and nothing of ours uses the engine later
    atexit.register(release)


def _rollback_failed_metric(connection: Any) -> None:
    """After a metric query failed on the gate's one DuckDB connection: DuckDB aborts the
    transaction on any failed statement (SQLAlchemy 2 autobegins one), so every later
    metric query, of this expectation and of every other, would fail with "Current
    transaction is aborted" and the outcome would list expectations that never ran as
    failed. GX retries a failed bundle of metrics one metric at a time; the rollback lets
    those retries and the next expectations run. The gate only reads (GX commits a temporary
    table it creates), so nothing is lost."""
    try:
        connection.rollback()
    except Exception as exc:  # the metric's own error is what the outcome reports
        log.warning(
            "quality gate: rollback after a failed metric query failed",
            extra={"error": type(exc).__name__},
        )


def duckdb_datasource_type() -> type:
    """GX's SQL datasource for a DuckDB file, with one connection held for the whole gate.

    GX keeps a connection open only for the dialects it lists (sqlite, SQL Server, ...); for
    any other it runs each metric query in ``with engine.connect()`` and fetches the rows
    after the block, when DuckDB has discarded them. Registered with GX (a fluent datasource
    type) on first use, before any context that may list it is loaded."""
    global _duckdb_datasource
    if _duckdb_datasource is not None:
        return _duckdb_datasource
    from great_expectations.datasource.fluent.sql_datasource import SQLDatasource
    from great_expectations.execution_engine.sqlalchemy_execution_engine import (
        SqlAlchemyExecutionEngine,
    )

    class PersistedConnectionEngine(SqlAlchemyExecutionEngine):
        _previous_limit: str | None = None

        def _setup_engine(
            self,
            kwargs: Any,
            connection_string: str | None = None,
            credentials: dict[str, Any] | None = None,
            url: str | None = None,
        ) -> None:
            assert connection_string is not None
            self.engine = _duckdb_engine(connection_string)

        @contextmanager
        def get_connection(self) -> Iterator[Any]:
            if not self._connection:
                connection = self.engine.connect()
                self._previous_limit = connection.exec_driver_sql(
                    "select current_setting('memory_limit')"
                ).scalar()
                # a database-wide setting: restored by close()
                connection.exec_driver_sql(f"set memory_limit = '{gate_memory_limit()}'")
                self._connection = connection
            try:
                yield self._connection
            except Exception:
                _rollback_failed_metric(self._connection)
                raise

        def close(self) -> None:
            if self._connection and self._previous_limit:
                self._connection.rollback()  # a metric query that failed aborted it
                self._connection.exec_driver_sql(f"set memory_limit = '{self._previous_limit}'")
            super().close()
            self._connection = None

    class TrialscreenDuckDBDatasource(SQLDatasource):
        type: Literal["trialscreen_duckdb"] = "trialscreen_duckdb"  # type: ignore[assignment]

        def _create_engine(self) -> Any:
            config = self.dict(config_provider=self._config_provider)
            return _duckdb_engine(str(config["connection_string"]))

        @property
        def execution_engine_type(self) -> builtins.type[SqlAlchemyExecutionEngine]:
            return PersistedConnectionEngine

    _duckdb_datasource = TrialscreenDuckDBDatasource
    return _duckdb_datasource
