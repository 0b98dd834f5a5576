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
import functools
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from trialscreen.dbt_output import PROJECT_WARNINGS
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


def _vars_args(dbt_vars: Mapping[str, Any] | None) -> list[str]:
    if not dbt_vars:
        return []
    return ["--vars", yaml.safe_dump(dict(dbt_vars), default_flow_style=True).strip()]


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

# The parsed project, kept in this process across dbt calls (docs/decisions.md, "One dbt parse
# per process"). Parsing the project (65 models, 22 seeds, ~230 data tests) costs about half
# the CPU of a small build, and every command of a run (build, docs generate) and every run of a
# long-lived process parsed it again: dbt's own partial parsing never applies, since the run's
# vars change on every run. The run's vars (RUN_VARS) are read only when a node executes
# (macros/run_vars.sql; the load id an incremental night continues from, macros/incremental.sql,
# also in the staging tests' filter), so the parse leaves them out and the command gets them. A
# parse is reused only for the same project files (path, size, modification time), target and
# connection identity (what dbt writes into the nodes: the DuckDB file's name, the PostgreSQL
# database) and the same other vars (``wap`` changes the schemas, ``criterion_rules`` the
# models).
RUN_VARS = frozenset({"screening_date", "run_id", "timezone", "incremental_after_load_id"})
_PARSE_CACHE_SIZE = 4
_PARSED: dict[tuple[Any, ...], Any] = {}
_PARSED_LOCK = threading.Lock()


def _parse_key(
    command: str, project: Path, target: DbtTarget, dbt_vars: Mapping[str, Any] | None
) -> tuple[Any, ...] | None:
    """What a parse of the project depends on, or None for a command that must parse itself
    (``parse`` writes the manifest others read)."""
    if command.split()[0] not in ("build", "seed", "run", "test", "compile", "docs"):
        return None
    identity = dict(target.env)
    if target.target == "duckdb":  # the nodes carry the file's name, not its folder
        identity["TRIALSCREEN_DUCKDB_PATH"] = Path(identity["TRIALSCREEN_DUCKDB_PATH"]).name
    identity.pop("TRIALSCREEN_PG_PASSWORD", None)
    files = []
    for path in sorted(project.rglob("*")):
        relative = path.relative_to(project)
        if relative.parts[0] in ("target", "logs") or not path.is_file():
            continue
        stat = path.stat()
        files.append((relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    parse_vars = {k: v for k, v in (dbt_vars or {}).items() if k not in RUN_VARS}
    return (
        str(project),
        target.target,
        tuple(sorted(identity.items())),
        yaml.safe_dump(parse_vars, sort_keys=True),
        tuple(files),
    )


def _parsed_manifest(
    key: tuple[Any, ...] | None, common: list[str], dbt_vars: Mapping[str, Any] | None
) -> Any:
    """The project parsed once for ``key`` (None: let the command parse)."""
    from dbt.cli.main import dbtRunner

    if key is None:
        return None
    with _PARSED_LOCK:
        if key in _PARSED:
            return _PARSED[key]
    saved = _saved_parse(key)
    manifest = _read_parse(saved, _key_database(key))
    if manifest is None:
        parse_vars = {k: v for k, v in (dbt_vars or {}).items() if k not in RUN_VARS}
        result = dbtRunner().invoke(
            ["parse", *common, *_vars_args(parse_vars), "--no-write-json", "--no-partial-parse"]
        )
        if not result.success:
            return None  # the command parses and reports the error itself
        manifest = result.result
        _keep_parse(manifest, saved)
    with _PARSED_LOCK:
        while len(_PARSED) >= _PARSE_CACHE_SIZE:
            del _PARSED[next(iter(_PARSED))]
        _PARSED[key] = manifest
    return manifest


# The parse also survives the process (docs/decisions.md, "A parse kept across processes"):
# the parsed manifest, serialized as dbt serializes it for its own partial parsing (msgpack),
# one file per key in the user's cache folder. The key holds what the in-process cache's does
# but the database's name (the nodes are renamed when read), plus the versions of dbt and its
# adapters (their macros are in the manifest). A file that cannot be read is parsed again; a
# cache folder that cannot be written means no cache, never a failure.
PARSE_CACHE_FOLDER = ("trialscreen", "dbt-parse")
_PARSE_FILES_KEPT = 16


def _saved_parse(key: tuple[Any, ...]) -> Path | None:
    """The file that holds the parse of ``key`` (it may not exist yet), or None: no cache.

    One file serves every database of the same project, target and vars: the database's
    name is left out of the file's key (:func:`_rename_database` puts it back)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(root, *PARSE_CACHE_FOLDER)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    project, target, identity, *rest = key
    portable = tuple(item for item in identity if item[0] not in _DATABASE_NAMED_BY)
    digest = hashlib.sha256(
        repr(((project, target, portable, *rest), _dbt_versions())).encode()
    ).hexdigest()[:32]
    return folder / f"{digest}.msgpack"


# The connection settings that name the database the nodes carry (dbt-duckdb names it after
# the file, PostgreSQL's is the dbname); nothing else in a parse depends on the warehouse
_DATABASE_NAMED_BY = ("TRIALSCREEN_DUCKDB_PATH", "TRIALSCREEN_PG_DBNAME")


def _key_database(key: tuple[Any, ...]) -> str | None:
    """The database name dbt gives the nodes of the parse of ``key`` (None: not known)."""
    identity = dict(key[2])
    if key[1] == "duckdb" and "TRIALSCREEN_DUCKDB_PATH" in identity:
        from dbt.adapters.duckdb.credentials import DuckDBCredentials

        return str(
            DuckDBCredentials.path_derived_database_name(identity["TRIALSCREEN_DUCKDB_PATH"])
        )
    if key[1] == "postgres":
        return identity.get("TRIALSCREEN_PG_DBNAME")
    return None


def _rename_database(manifest: Any, database: str) -> bool:
    """Make ``manifest`` what dbt parses for ``database``: each node and source carries the
    database's name and its quoted relation name starts with it. False when the manifest
    does not have that shape (its nodes name several databases, or a relation name is
    quoted otherwise): the caller parses instead."""
    holders = [*manifest.nodes.values(), *manifest.sources.values()]
    names = {getattr(node, "database", None) for node in holders} - {None}
    if len(names) != 1:
        return not names
    (old,) = names
    if old == database:
        return True
    prefix = f'"{old}".'
    for node in holders:
        relation = getattr(node, "relation_name", None)
        if relation is not None and not relation.startswith(prefix):
            return False
    for node in holders:
        node.database = database
        relation = getattr(node, "relation_name", None)
        if relation is not None:
            node.relation_name = f'"{database}".' + relation[len(prefix) :]
    return True


@functools.cache
def _dbt_versions() -> tuple[tuple[str, str], ...]:
    """Installed dbt distributions and their versions: dbt-core, dbt-adapters, the adapters."""
    found = {
        (dist.metadata["Name"].lower(), dist.version)
        for dist in importlib.metadata.distributions()
        if (dist.metadata["Name"] or "").lower().startswith("dbt")
    }
    return tuple(sorted(found))


def _read_parse(saved: Path | None, database: str | None = None) -> Any:
    """The manifest kept in ``saved``, or None (no file, or one that does not load); its
    nodes renamed to ``database`` when given."""
    if saved is None or not saved.is_file():
        return None
    from dbt.contracts.graph.manifest import Manifest
    from dbt.parser.manifest import extended_mashumuro_decoder

    try:
        manifest: Any = Manifest.from_msgpack(
            saved.read_bytes(), decoder=extended_mashumuro_decoder
        )
        os.utime(saved)  # most recently used: pruned last
    except Exception as exc:  # a truncated or foreign file: parse again, and replace it
        _dbt_log.debug("kept dbt parse not read", extra={"error": type(exc).__name__})
        return None
    if database is not None and not _rename_database(manifest, database):
        return None
    # what dbt does after reading its own partial-parse file when nothing changed
    manifest.build_parent_and_child_maps()
    manifest.build_flat_graph()
    return manifest


def _keep_parse(manifest: Any, saved: Path | None) -> None:
    """Write ``manifest`` to ``saved`` (atomically) and prune the folder to the newest files."""
    if saved is None:
        return
    from dbt.parser.manifest import extended_mashumaro_encoder

    temporary: str | None = None
    try:
        with tempfile.NamedTemporaryFile(dir=saved.parent, suffix=".tmp", delete=False) as out:
            temporary = out.name
            out.write(manifest.to_msgpack(extended_mashumaro_encoder))
        os.replace(temporary, saved)  # a reader sees the old file or the new, never half
        temporary = None
        kept = sorted(saved.parent.glob("*.msgpack"), key=lambda p: p.stat().st_mtime)
        for old in kept[:-_PARSE_FILES_KEPT]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        _dbt_log.debug("dbt parse not kept", extra={"error": type(exc).__name__})
        if temporary is not None:  # a full disk: no half-written file left behind
            Path(temporary).unlink(missing_ok=True)


def _forget_manifest(key: tuple[Any, ...] | None) -> None:
    """A failed command may leave its nodes half compiled: the next call parses afresh."""
    if key is not None:
        with _PARSED_LOCK:
            _PARSED.pop(key, None)


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
