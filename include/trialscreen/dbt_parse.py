"""The project's dbt parse, kept: in the process across dbt calls and in the user's cache
folder across processes (docs/decisions.md, "One dbt parse per process", "A parse kept across
processes"). :func:`trialscreen.transform.run_dbt` and the DAG's dbt command line
(:mod:`trialscreen.dbt_cli`) read it through :func:`_parsed_manifest`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from trialscreen.transform import DbtTarget

_dbt_log = logging.getLogger("trialscreen.dbt")  # the logger trialscreen.transform relays to


def _vars_args(dbt_vars: Mapping[str, Any] | None) -> list[str]:
    if not dbt_vars:
        return []
    return ["--vars", yaml.safe_dump(dict(dbt_vars), default_flow_style=True).strip()]


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
RUN_VARS = frozenset(
    {"screening_date", "run_id", "timezone", "incremental_after_load_id", "incremental_new_loads"}
)
_PARSE_CACHE_SIZE = 4
_PARSED: dict[tuple[Any, ...], Any] = {}
_PARSED_LOCK = threading.Lock()


def _parse_vars(dbt_vars: Mapping[str, Any] | None) -> dict[str, Any]:
    """The vars a parse depends on: all but the run's."""
    return {k: v for k, v in (dbt_vars or {}).items() if k not in RUN_VARS}


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
    parse_vars = _parse_vars(dbt_vars)
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
        parse_vars = _parse_vars(dbt_vars)
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
