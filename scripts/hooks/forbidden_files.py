"""pre-commit hook: refuse files that must never be committed.

    python scripts/hooks/forbidden_files.py FILE...

Warehouses (``*.duckdb``, their WAL and run lock), secrets (``.env``, ``.env.*`` except
``.env.example``), and generated data: ``demo/``, ``out/``, ``reports/``, dbt's ``target/``,
``logs/`` and ``dbt_packages/``, Spark's ``spark-warehouse/`` and ``metastore_db/``, and
``*.ndjson`` anywhere but under ``tests/data/`` (the test data, with its provenance). Exits 1
and names each offending path; ``.gitignore`` keeps most of these out, this catches
``git add -f`` and a renamed output directory.
"""

from __future__ import annotations

import sys
from pathlib import PurePosixPath

GENERATED_DIRS = ("demo", "out", "reports")  # top-level outputs of the CLI and make targets
GENERATED_ANYWHERE = ("target", "logs", "dbt_packages", "spark-warehouse", "metastore_db")
WAREHOUSE_SUFFIXES = (".duckdb", ".duckdb.wal", ".duckdb.runlock", ".duckdb.tmp")


def reason(name: str) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    parts = path.parts
    base = path.name
    if base.endswith(WAREHOUSE_SUFFIXES):
        return "a DuckDB warehouse file (data, possibly PHI)"
    if (base == ".env" or base.startswith(".env.")) and base != ".env.example":
        return "an environment file (secrets): commit .env.example instead"
    if parts and parts[0] in GENERATED_DIRS:
        return f"generated output ({parts[0]}/)"
    for part in parts[:-1]:
        if part in GENERATED_ANYWHERE:
            return f"generated output ({part}/)"
    if base.endswith((".ndjson", ".ndjson.gz")) and parts[:2] != ("tests", "data"):
        return "feed data outside tests/data/ (generated, or PHI)"
    return None


def main(argv: list[str]) -> int:
    bad = [(name, why) for name in argv if (why := reason(name)) is not None]
    for name, why in bad:
        print(f"{name}: must not be committed: {why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
