"""dbt as the DAG's Cosmos tasks run it, with the database's texts taken out of its output.

Cosmos's watcher producer runs ``dbt build --log-format json`` in a process of its own and
writes each JSON line's message to the Airflow task log, keeps a failed node's message in an
XCom that its model task logs again, and on a failed build logs dbt's whole output once more
(astronomer-cosmos 1.15: ``_log_dbt_msg``, ``_process_dbt_log_event``,
``handle_exception_subprocess``). A node's error message quotes the database's text, which may
quote a record: an MRN, a name, a birth date (docs/decisions.md, "dbt's errors"). No dbt flag
keeps that text out without also hiding the events Cosmos reads each node's status from.

So the DAG's ``dbt_executable_path`` is ``trialscreen/bin/dbt``, which runs this module: it runs
dbt's command line (:mod:`trialscreen.dbt_cli`: dbt with the kept parse), forwards every
JSON line with its status fields untouched (Cosmos's per-model tasks work as before), and
replaces the text of the events that may quote the database by
the kind of failure and the node (:func:`trialscreen.errors.dbt_node_summary`). What it took
out is written, when dbt failed, to ``restricted.build_errors`` under the run id of the
build's ``--vars``, where only the roles that may read records read it. dbt run without
``--log-format json`` (a model task's retry) is run with it and printed back as text lines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from trialscreen.errors import dbt_node_summary, dbt_text_kept

BUILD_ERRORS_TABLE = "restricted.build_errors"  # written by trialscreen.pipeline.builds
# the executable the DAG gives Cosmos, and the variable that names the interpreter it runs
DBT_WRAPPER = Path(__file__).resolve().parent / "bin" / "dbt"
DBT_PYTHON_ENV = "TRIALSCREEN_DBT_PYTHON"
# dbt's warnings whose texts dbt composes from the project, the command and the catalog's
# table names, never from a row: relayed with their text (here and by trialscreen.transform)
PROJECT_WARNINGS = frozenset(
    {
        "DeprecationsSummary",
        "NoNodesForSelectionCriteria",
        "NothingToDo",
        "UnusedResourceConfigPath",
        "UnusedTables",
    }
)
# warn- and error-level events whose texts dbt composes from the project, the command and the
# counts, never from the database
_SAFE = PROJECT_WARNINGS | frozenset(
    {
        "EndOfRunSummary",
        "LogFreshnessResult",
        "LogModelResult",
        "LogSeedResult",
        "LogSkipBecauseError",
        "LogSnapshotResult",
        "LogTestResult",
        "RunResultFailure",
        "RunResultWarning",
        "SkippingDetails",
        "StatsLine",
    }
)
_FAILED = frozenset({"error", "fail", "runtime error"})
# commands (and dbt's own options) that read no row: run as they are
_READS_NO_ROW = frozenset({"--version", "--help", "-h", "clean", "deps", "ls", "list", "parse"})
_NOT_AN_EVENT = "a line of dbt's output that is not a dbt event, withheld: it may quote a record"


def _withheld(text: str) -> str:
    return f"{dbt_node_summary(text)} ({dbt_text_kept(BUILD_ERRORS_TABLE)})"


def scrub(event: dict[str, Any], kept: list[tuple[str | None, str]]) -> dict[str, Any]:
    """``event`` (one dbt JSON line) without the texts that may quote the database; the texts
    taken out are appended to ``kept`` as (node unique_id or None, text)."""
    info = event.get("info") or {}
    data = event.get("data") or {}
    name = str(info.get("name", ""))
    node = (data.get("node_info") or {}).get("unique_id") or None
    result = data.get("run_result")
    # a failed node's result message is the database's text; a passed one's is the
    # adapter's response ("OK", "SELECT 3")
    if not isinstance(result, dict) or str(result.get("status")).lower() not in _FAILED:
        result = {}
    if result.get("message"):
        kept.append((node, str(result["message"]).strip()))
        result["message"] = _withheld(str(result["message"]))
    if info.get("level") not in ("warn", "error") or name in _SAFE:
        return event
    if name.endswith("Deprecation"):
        return event
    texts = [str(v).strip() for v in (info.get("msg"), data.get("msg"), data.get("exc")) if v]
    if texts:
        kept.append((node, max(texts, key=len)))
    for holder, key in ((info, "msg"), (data, "msg"), (data, "exc")):
        if holder.get(key):
            holder[key] = _withheld(str(holder[key]).strip())
    return event


def _lines(
    source: Iterable[str], text_output: bool, kept: list[tuple[str | None, str]]
) -> Iterator[str]:
    for raw in source:
        line = raw.rstrip("\n")
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            if line.strip():
                kept.append((None, line))
                yield _NOT_AN_EVENT
            continue
        event = scrub(event, kept)
        if not text_output:
            yield json.dumps(event)
            continue
        msg = str((event.get("info") or {}).get("msg", ""))
        ts = str((event.get("info") or {}).get("ts", ""))
        try:
            stamp = datetime.fromisoformat(ts.replace("Z", "+00:00")).strftime("%H:%M:%S")
        except ValueError:
            stamp = ""
        yield f"{stamp}  {msg}" if stamp else msg


def cli_option(argv: list[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in dbt's ``argv`` (the last given,
    as dbt reads it)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def cli_vars(argv: list[str]) -> dict[str, Any] | None:
    """The ``--vars`` of dbt's ``argv`` ({} without; None when they are not a mapping)."""
    import yaml

    loaded = yaml.safe_load(cli_option(argv, "--vars") or "{}") or {}
    return loaded if isinstance(loaded, dict) else None


def _run_id(argv: list[str]) -> str | None:
    run_id = (cli_vars(argv) or {}).get("run_id")
    return str(run_id) if run_id else None


def _warehouse_url(env: dict[str, str]) -> str | None:
    """The warehouse dbt built, from the variables profiles.yml reads (transform.dbt_target)."""
    target = env.get("TRIALSCREEN_DBT_TARGET", "duckdb")
    if target == "duckdb":
        return env.get("TRIALSCREEN_DUCKDB_PATH")
    if target == "postgres":
        user = quote(env.get("TRIALSCREEN_PG_USER", "trialscreen"), safe="")
        password = quote(env.get("TRIALSCREEN_PG_PASSWORD", ""), safe="")
        auth = f"{user}:{password}" if password else user
        host, port = env.get("TRIALSCREEN_PG_HOST", "localhost"), env.get("TRIALSCREEN_PG_PORT")
        db = quote(env.get("TRIALSCREEN_PG_DBNAME", "trialscreen"), safe="")
        return f"postgresql://{auth}@{host}:{port or 5432}/{db}"
    return None


def keep(kept: list[tuple[str | None, str]], run_id: str, warehouse_url: str) -> int:
    """Write the texts taken out (each once) to ``restricted.build_errors``; the number of
    rows."""
    from trialscreen.pipeline.builds import write_build_errors

    return write_build_errors(warehouse_url, run_id, dict.fromkeys(kept))


def _dbt() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else shutil.which("dbt") or "dbt"


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    if not args or args[0] in _READS_NO_ROW:  # dbt as it is: its output quotes no record
        return subprocess.run([_dbt(), *args], check=False).returncode
    text_output = "--log-format" not in args and not any(
        a.startswith("--log-format=") for a in args
    )
    # dbt's command line with the parse trialscreen keeps (trialscreen.dbt_cli): the project
    # is not parsed again every night because the run's vars changed
    dbt = [sys.executable, "-m", "trialscreen.dbt_cli"]
    command = [*dbt, *args, *(["--log-format", "json"] if text_output else [])]
    kept: list[tuple[str | None, str]] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in _lines(process.stdout, text_output, kept):
            out.write(line + "\n")
            out.flush()
        code = process.wait()
    if code != 0 and kept:
        run_id, url = _run_id(args) or "manual", _warehouse_url(dict(os.environ))
        try:
            if url is None:
                raise LookupError("no warehouse in the environment")
            rows = keep(kept, run_id, url)
            out.write(f"trialscreen: {rows} database message(s) of run {run_id} kept in ")
            out.write(f"{BUILD_ERRORS_TABLE}\n")
        except Exception as exc:  # noqa: BLE001 - dbt's own exit status must stand
            out.write(f"trialscreen: not kept in {BUILD_ERRORS_TABLE}: {type(exc).__name__}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
