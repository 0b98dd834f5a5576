"""Run the dbt project (staging -> intermediate -> marts) programmatically.

``build_dbt``, ``seed_and_build`` and ``unit_test_dbt`` call dbt in-process through
``dbtRunner`` with the project and profiles of the repository's ``dbt_project/``. The
warehouse is given as a URL:

* a DuckDB file path or ``duckdb:///path`` -> profile target ``duckdb``
  (``TRIALSCREEN_DUCKDB_PATH``);
* ``postgresql://user:password@host:port/dbname`` (or ``postgres://``,
  ``postgresql+psycopg2://``) -> target ``postgres`` (``TRIALSCREEN_PG_*``).
* ``spark:///path/to/warehouse_dir`` (or ``spark://local`` for ``./spark-warehouse``) -> target
  ``spark``: local pyspark through dbt-spark ``method: session``, tables and metastore under
  that directory (``TRIALSCREEN_SPARK_WAREHOUSE_DIR``; optional extra, see trialscreen.spark).

The connection settings reach ``profiles.yml`` through environment variables, set only for
the duration of the call. dbt prints nothing (``--log-level none``): its error lines quote the
database's text, which may quote a record (docs/decisions.md, "dbt's errors"); its warnings
come back through the ``trialscreen.dbt`` logger by event name, with the text only of those
dbt composes from the project (deprecations). Its log and target directories go to
``artifacts_dir`` (a temporary directory unless given), so nothing is written inside the
repository. A failed node raises :class:`DbtBuildError` naming it; the database's text stays
in the exception's ``failures`` (the pipeline keeps it in ``restricted.build_errors``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from trialscreen.dbt_output import PROJECT_WARNINGS
from trialscreen.dbt_parse import _forget_manifest, _parse_key, _parsed_manifest, _vars_args
from trialscreen.errors import DBT_TEXT_WITHHELD, dbt_node_summary, dbt_text_kept, summarize

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
PROJECT_DIR_ENV = "TRIALSCREEN_DBT_PROJECT_DIR"  # override (e.g. an installed copy of dbt_project/)


def default_project_dir() -> Path:
    """The dbt project: ``$TRIALSCREEN_DBT_PROJECT_DIR`` or the repository's ``dbt_project/``."""
    override = os.environ.get(PROJECT_DIR_ENV)
    return Path(override).resolve() if override else DBT_PROJECT_DIR


_FAILED_STATUSES = {"error", "fail", "runtime error"}


_CAUSES_FIRST = ("model", "seed", "snapshot", "unit_test")


def _cause_first(failure: tuple[str, str]) -> int:
    kind = failure[0].split(".", 1)[0]
    return _CAUSES_FIRST.index(kind) if kind in _CAUSES_FIRST else len(_CAUSES_FIRST)


class DbtBuildError(RuntimeError):
    """dbt did not complete: carries the failed nodes and their messages (``failures``).

    The text names the nodes, their files and the kind of failure only: a node's message
    quotes the database's error text, which may quote a row (docs/decisions.md, "Free text
    from source records"); it stays in ``failures`` (and ``invocation_text`` for an error that
    stopped dbt before any node failed), for the caller to keep where only authorised people
    read it. :meth:`kept_in` says where that is once it is kept (docs/decisions.md, "dbt's
    errors"): the pipeline writes ``restricted.build_errors``.
    """

    def __init__(
        self,
        command: str,
        failures: list[tuple[str, str]],
        detail: str = "",
        *,
        invocation_text: str = "",
    ) -> None:
        self.command = command
        # the failed models first: a model's failure is the cause, the failures of tests (or
        # of nodes whose query met a database the engine error invalidated) that dbt's other
        # threads finished earlier follow from it; the run's one-line message is cut to a
        # length, and must name the model (docs/decisions.md, "dbt's errors")
        self.failures = sorted(failures, key=_cause_first)
        self.detail = detail
        self.invocation_text = invocation_text
        self.kept: str | None = None
        super().__init__(self._text())

    def kept_in(self, table: str) -> DbtBuildError:
        """Record that the database's texts were written to ``table``; the message says so."""
        self.kept = table
        self.args = (self._text(),)
        return self

    def _text(self) -> str:
        where = dbt_text_kept(self.kept) if self.kept else DBT_TEXT_WITHHELD
        failures = self.failures
        if failures:
            names = ", ".join(name for name, _ in failures)
            # the first line is what the run's message keeps (errors.summarize): it names
            # the nodes and where their texts are
            lines = [
                f"dbt {self.command} failed: {len(failures)} node(s) failed ({where}): {names}"
            ]
            lines += [f"  {name}: {dbt_node_summary(message)}" for name, message in failures]
            return "\n".join(lines)
        why = self.detail or "dbt returned no node result and no error"
        return f"dbt {self.command} failed: {why} ({where})"


@dataclass(frozen=True)
class DbtTarget:
    """The profile target and environment variables a warehouse URL maps to."""

    target: str
    env: dict[str, str] = field(default_factory=dict)


def dbt_target(warehouse_url: str) -> DbtTarget:
    """Map a warehouse URL (DuckDB path, ``duckdb:///path``, ``postgresql://...``,
    ``spark:///dir``) to a target."""
    url = str(warehouse_url).strip()
    if not url:
        raise ValueError("warehouse_url is empty")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme.startswith("postgres"):
        parts = urlsplit(url)
        if not parts.hostname or not parts.path.strip("/"):
            raise ValueError("a PostgreSQL warehouse URL needs a host and a database name")
        env = {
            "TRIALSCREEN_DBT_TARGET": "postgres",
            "TRIALSCREEN_PG_HOST": parts.hostname,
            "TRIALSCREEN_PG_PORT": str(parts.port or 5432),
            "TRIALSCREEN_PG_USER": unquote(parts.username or "postgres"),
            "TRIALSCREEN_PG_PASSWORD": unquote(parts.password or ""),
            "TRIALSCREEN_PG_DBNAME": unquote(parts.path.lstrip("/")),
        }
        return DbtTarget("postgres", env)
    if scheme == "spark":
        return _spark_target(url)
    if scheme == "duckdb":
        # SQLAlchemy convention: duckdb:///rel/path.duckdb, duckdb:////abs/path.duckdb
        rest = url.split("://", 1)[1]
        path = rest[1:] if rest.startswith("/") else rest
    elif scheme:
        raise ValueError(
            f"unsupported warehouse URL scheme {scheme!r} (duckdb, postgresql or spark)"
        )
    else:
        path = url
    if not path or path == ":memory:":
        raise ValueError("dbt needs a DuckDB file, not an in-memory database")
    resolved = str(Path(path).expanduser().resolve())
    return DbtTarget(
        "duckdb", {"TRIALSCREEN_DBT_TARGET": "duckdb", "TRIALSCREEN_DUCKDB_PATH": resolved}
    )


def _spark_target(url: str) -> DbtTarget:
    """``spark:///abs/dir``, ``spark://local/rel/dir`` or ``spark://local`` -> target spark.

    Only a local session is made from a URL; a cluster (Thrift server, Databricks SQL
    warehouse) is a target of its own in profiles.yml (README "Scaling out").
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host not in ("", "local", "localhost"):
        raise ValueError(
            "a spark warehouse URL names a local warehouse directory (spark:///path or "
            f"spark://local); {host!r} looks like a cluster: add a thrift/odbc target to "
            "profiles.yml instead"
        )
    path = unquote(parts.path)
    if host:  # spark://local/rel/dir -> rel/dir
        path = path.lstrip("/")
    directory = Path(path or "spark-warehouse").expanduser().resolve()
    return DbtTarget(
        "spark",
        {"TRIALSCREEN_DBT_TARGET": "spark", "TRIALSCREEN_SPARK_WAREHOUSE_DIR": str(directory)},
    )


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _failures(result: Any) -> list[tuple[str, str]]:
    failures: list[tuple[str, str]] = []
    for node_result in getattr(result, "result", None) or []:
        status = str(getattr(node_result, "status", "")).lower()
        if status in _FAILED_STATUSES:
            node = getattr(node_result, "node", None)
            name = str(getattr(node, "unique_id", None) or getattr(node, "name", "?"))
            message = str(getattr(node_result, "message", "") or status)
            failures.append((name, message.strip() or status))
    return failures


def run_dbt(
    command: str,
    warehouse_url: str,
    *,
    args: list[str] | None = None,
    dbt_vars: Mapping[str, Any] | None = None,
    artifacts_dir: str | Path | None = None,
    project_dir: str | Path | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
) -> Any:
    """Run one dbt command in-process; raise DbtBuildError when it does not succeed.

    ``callbacks`` get every dbt event (``EventMsg``) as it fires, from dbt's threads: the
    CLI's progress on a terminal counts ``NodeFinished`` events (trialscreen.progress)."""
    from dbt.cli.main import dbtRunner  # imported late: dbt import is slow

    target = dbt_target(warehouse_url)
    project = Path(project_dir).resolve() if project_dir is not None else default_project_dir()
    with contextlib.ExitStack() as stack:
        if artifacts_dir is None:
            artifacts = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="trialscreen-dbt-"))
            )
        else:
            artifacts = Path(artifacts_dir)
            artifacts.mkdir(parents=True, exist_ok=True)
        common = [
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(project),
            "--target",
            target.target,
            "--target-path",
            str(artifacts / "target"),
            "--log-path",
            str(artifacts / "logs"),
            # nothing on stdout: dbt's error lines and its closing summary quote the
            # database's text, which may quote a record (docs/decisions.md, "dbt's errors");
            # warnings come back through _warning_relay, failures through DbtBuildError.
            # `parse` reads no row: its errors (the project's files) are printed
            "--log-level",
            "warn" if command.split()[0] == "parse" else "none",
            "--log-level-file",
            # no dbt.log in a temporary directory nobody reads: dbt formats and writes every
            # event of every node for it (31.8 -> 26.5 CPU-s of a 30-patient build,
            # docs/benchmarks.md "Test suite"); failures reach us through the event callback
            "info" if artifacts_dir is not None else "none",
            "--no-use-colors",
        ]
        # "build", or a subcommand such as "docs generate"
        cli_args = [*command.split(), *common, *_vars_args(dbt_vars)]
        if artifacts_dir is None:  # a temporary directory nobody reads: no JSON artifacts
            cli_args += ["--no-write-json"]
        cli_args += list(args or [])
        env = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **target.env}
        finished: list[tuple[str, str]] = []
        key = _parse_key(command, project, target, dbt_vars)
        with _environment(env):
            manifest = _parsed_manifest(key, common, dbt_vars)
            recorders = [_failed_node_recorder(finished), _warning_relay, *callbacks]
            result = dbtRunner(manifest=manifest, callbacks=recorders).invoke(cli_args)
    if not result.success:
        _forget_manifest(key)
        if target.target == "duckdb":
            _release_duckdb()
        # when the invocation itself aborted (a DuckDB INTERNAL/FATAL error invalidates the
        # database, and dbt's next statement raises) there is no result list: the failed
        # nodes come from dbt's NodeFinished events, first failure first
        failures = _failures(result) or finished
        exception = result.exception
        detail = summarize(exception) if exception else ""
        raise DbtBuildError(
            command, failures, detail, invocation_text=str(exception) if exception else ""
        )
    return result


# Left out of every nightly build: dbt Labs recommends running unit tests in development and
# CI only, their inputs being static (docs.getdbt.com/docs/build/unit-tests, "When to run unit
# tests"); they were a sixth of a small night's build (docs/decisions.md, "What a night's dbt
# build runs")
NIGHTLY_EXCLUDED = ("unit_test",)

# A build that keeps the seeds an earlier build loaded from the same files (an incremental
# night: the build fingerprint covers the seed files) leaves out the seeds and the data tests
# that read nothing but seeds: those tables did not change, so neither can those tests' results
# (docs/decisions.md, "Seed tests run when the seeds load"). `cautious` indirect selection
# drops a test only when every node it reads is excluded: a test that joins a model to a seed
# still runs. Without a --select, every other node is selected as before.
SEEDS_KEPT = ("--exclude", "resource_type:seed", "--indirect-selection", "cautious")


def _failed_node_recorder(failures: list[tuple[str, str]]) -> Any:
    """A dbtRunner callback that appends (unique_id, message) of every node that failed."""

    def record(event: Any) -> None:
        if event.info.name != "NodeFinished":
            return
        run_result = event.data.run_result
        if str(run_result.status).lower() in _FAILED_STATUSES:
            name = event.data.node_info.unique_id or event.data.node_info.node_name or "?"
            failures.append((name, str(run_result.message or run_result.status)))

    return record


# dbt's own warnings, re-emitted without their text unless dbt composes it from the project
# and the command (deprecations, an empty selection); a test's warning, an adapter's notice
# or a node's message may quote the database (docs/decisions.md, "dbt's errors")
_dbt_log = logging.getLogger("trialscreen.dbt")


def _warning_relay(event: Any) -> None:
    """A dbtRunner callback: each warn-level dbt event as one ``trialscreen.dbt`` warning
    (event name, node id; the text only for ``dbt_output.PROJECT_WARNINGS`` and deprecations)."""
    if event.info.level != "warn":
        return
    name = str(event.info.name)
    node = getattr(event.data, "node_info", None)
    extra: dict[str, Any] = {"event": name, "node": (node.unique_id if node else "") or None}
    if name in PROJECT_WARNINGS or name.endswith("Deprecation"):
        extra["text"] = " ".join(str(event.info.msg).split())[:500]
    _dbt_log.warning("dbt warning", extra=extra)


def _release_duckdb() -> None:
    """Close dbt-duckdb's cached connection after a failed invocation.

    A DuckDB INTERNAL or FATAL error invalidates the database instance, and the instance
    stays cached in this process while dbt-duckdb holds its connection: the run's next step
    (``finish_run``, writing the failed status) would get "database has been invalidated".
    Closed, the next connect opens the file afresh (docs/decisions.md, "DuckDB 2.0.0:
    dict-surviving hash join").
    """
    import gc

    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    with DuckDBConnectionManager._LOCK:
        environment = DuckDBConnectionManager._ENV
        DuckDBConnectionManager._ENV = None
    if environment is not None:
        with contextlib.suppress(Exception):
            environment.close()
    gc.collect()  # cursors dbt's threads left behind hold the instance too


def _run_vars(
    screening_date: date, run_id: str, extra_vars: Mapping[str, Any] | None
) -> dict[str, Any]:
    from trialscreen.settings import hospital_timezone

    return {
        "screening_date": screening_date.isoformat(),
        "run_id": run_id,
        "timezone": hospital_timezone(),  # the hospital time zone (trialscreen.settings)
        **(extra_vars or {}),
    }


def build_dbt(
    warehouse_url: str,
    screening_date: date,
    run_id: str,
    select: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    *,
    exclude: str | None = None,
    artifacts_dir: str | Path | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
    full_refresh: bool = False,
    skip_seeds: bool = False,
) -> None:
    """``dbt build`` (seeds, models and data tests) for a screening date. The unit tests
    are left out (:data:`NIGHTLY_EXCLUDED`): they check the SQL on fixed inputs, not the
    night's data; ``make test`` runs them (tests/dbt/test_criteria_scenarios.py,
    ``test_the_dbt_unit_tests_pass``)."""
    args: list[str] = ["--full-refresh"] if full_refresh else []
    args += [arg for kind in NIGHTLY_EXCLUDED for arg in ("--exclude-resource-type", kind)]
    if skip_seeds:  # loaded by an earlier build from the same seed files
        args += list(SEEDS_KEPT)
    if select:
        args += ["--select", *select.split()]
    if exclude:
        args += ["--exclude", *exclude.split()]
    run_dbt(
        "build",
        warehouse_url,
        args=args,
        dbt_vars=_run_vars(screening_date, run_id, extra_vars),
        artifacts_dir=artifacts_dir,
        callbacks=callbacks,
    )


def seed_and_build(
    warehouse_url: str,
    screening_date: date,
    run_id: str,
    select: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    *,
    exclude: str | None = None,
    artifacts_dir: str | Path | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
    full_refresh: bool = False,
    seeds: bool = True,
) -> None:
    """``dbt build`` with the reference seeds (``--full-refresh``: the incremental models
    rebuilt whole). The seeds load inside the build, each replaced whole (``+full_refresh`` in
    dbt_project.yml), before the models that read them. ``seeds=False``: the seeds an earlier
    build loaded from the same files stay (an incremental night, trialscreen.pipeline.build)."""
    build_dbt(
        warehouse_url,
        screening_date,
        run_id,
        select=select,
        extra_vars=extra_vars,
        exclude=exclude,
        artifacts_dir=artifacts_dir,
        callbacks=callbacks,
        full_refresh=full_refresh,
        skip_seeds=not seeds,
    )


def unit_test_dbt(
    warehouse_url: str,
    screening_date: date,
    run_id: str,
    *,
    artifacts_dir: str | Path | None = None,
) -> list[tuple[str, str]]:
    """``dbt test --select test_type:unit``: the project's unit tests (fixed inputs, expected
    rows), left out of the nightly builds (:data:`NIGHTLY_EXCLUDED`), on a warehouse whose
    models are built (dbt reads the column types of a unit test's inputs from their tables).
    Returns (unit test id, status) per unit test; a failure raises :class:`DbtBuildError`."""
    result = run_dbt(
        "test",
        warehouse_url,
        args=["--select", "test_type:unit"],
        dbt_vars=_run_vars(screening_date, run_id, None),
        artifacts_dir=artifacts_dir,
    )
    return sorted((str(r.node.unique_id), str(r.status).lower()) for r in (result.result or []))


def compile_manifest(project_dir: str | Path | None = None) -> Path:
    """``dbt parse`` into ``dbt_project/target/manifest.json``: Cosmos renders the DAG's dbt
    task group from this file, so parsing the DAG never runs dbt (``make install`` and the
    DAG tests call this). No warehouse connection is made."""
    project = Path(project_dir).resolve() if project_dir is not None else default_project_dir()
    run_dbt(
        "parse",
        str(project / "target" / "parse-only.duckdb"),
        dbt_vars={"screening_date": "2000-01-01", "run_id": "parse", "wap": True},
        artifacts_dir=project,
        project_dir=project,
    )
    return project / "target" / "manifest.json"


def generate_docs(warehouse_url: str, out_dir: str | Path) -> Path:
    """The dbt docs site (lineage, every model and column described) as one static page,
    ``<out_dir>/index.html``, for analysts; reads the warehouse catalog, writes no table."""
    import shutil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trialscreen-docs-") as tmp:
        run_dbt(
            "docs generate",
            warehouse_url,
            args=["--static"],
            dbt_vars={"screening_date": "2000-01-01", "run_id": "docs"},
            artifacts_dir=tmp,
        )
        shutil.copy(Path(tmp) / "target" / "static_index.html", out / "index.html")
    return out / "index.html"
