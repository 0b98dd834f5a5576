"""The DAG's one use of a Cosmos private name (``cosmos.operators._watcher``): Cosmos 1.15 has
no public API for the per-node status its watcher producer reports, so the DAG reads it
through one function, ``cosmos_status_xcom_key``. These tests fail loudly when a Cosmos
upgrade moves that name or changes the key, and when another private Cosmos name creeps in.
No DAG import, no Airflow database: they read the source and call Cosmos in a fresh
interpreter."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAG_FILE = REPO / "dags" / "trialscreen_nightly.py"
PRIVATE_MODULE = "cosmos.operators._watcher.state"


def _private_cosmos_imports(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, module) of every import of an underscore-prefixed Cosmos module."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef) else function
            modules: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.module:
                modules = [child.module]
            elif isinstance(child, ast.Import):
                modules = [alias.name for alias in child.names]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "cosmos" and any(part.startswith("_") for part in parts):
                    found.append((function, module))
            visit(child, name)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>")
    return found


def test_the_private_cosmos_name_the_dag_reads_still_exists_and_gives_the_known_key(
    tmp_path: Path,
) -> None:
    """In a fresh interpreter with its own AIRFLOW_HOME: importing Cosmos loads Airflow's
    settings, which this session's DAG tests point at their own metadata DB later."""
    probe = (
        f"from {PRIVATE_MODULE} import get_status_xcom_key; "
        "print(get_status_xcom_key('model.trialscreen.int_labs__latest_in_window'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "AIRFLOW_HOME": str(tmp_path), "DO_NOT_TRACK": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # the producer's per-node XCom: dots become "__", then "_status" (cosmos 1.15.1)
    assert done.stdout.strip().splitlines()[-1] == (
        "model__trialscreen__int_labs__latest_in_window_status"
    )


def test_private_cosmos_names_are_used_in_one_function_only() -> None:
    uses = _private_cosmos_imports(DAG_FILE)
    assert uses == [("cosmos_status_xcom_key", PRIVATE_MODULE)]
    others = [
        (path.relative_to(REPO).as_posix(), use)
        for folder in ("dags", "include/trialscreen")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path != DAG_FILE
        for use in _private_cosmos_imports(path)
    ]
    assert others == []
