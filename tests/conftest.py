"""Fixtures used across the suite. The external reference data the tests read is a curated copy
inside the repository, in tests/data/ (see tests/data/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def external_dir() -> Path:
    if not EXTERNAL.is_dir():
        pytest.fail(f"test data not found at {EXTERNAL}")
    return EXTERNAL


@pytest.fixture(scope="session")
def pg_cluster():
    """A disposable PostgreSQL cluster for the whole session (started from installed binaries)."""
    from pg import start_cluster

    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture()
def pg_database(pg_cluster, request):
    """A fresh database per test on the session cluster; returns its URL."""
    import re

    import psycopg2

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50]
    con = psycopg2.connect(pg_cluster.url)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"drop database if exists {name}")
        cur.execute(f"create database {name}")
    con.close()
    return pg_cluster.url_for(name)
