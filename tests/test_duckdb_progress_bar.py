"""DuckDB draws a progress bar on the process's standard output for any query over two
seconds, a pipe included: at a hospital's size it would fill the DAG's task logs and break
the CLI's summary and the JSON line a subprocess prints (the gate-memory test's gate, under
load, printed one before its JSON). Every DuckDB connection the package opens turns it off
(docs/decisions.md, "No progress bars on stdout")."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# each connection factory of the package, asked for the setting; then a query that runs
# longer than DuckDB's two seconds on the warehouse's own connection
SCRIPT = textwrap.dedent(
    """
    import sys
    import time
    from trialscreen.validate.duckdb_datasource import _duckdb_engine
    from trialscreen.warehouse import Warehouse

    SETTING = "select current_setting('enable_progress_bar')"
    with Warehouse.connect(sys.argv[1]) as wh:
        print("warehouse", wh.scalar(SETTING))
        engine = _duckdb_engine("duckdb:///" + sys.argv[1])
        with engine.connect() as gx:
            print("gate", gx.exec_driver_sql(SETTING).scalar())
        engine.dispose()
        # one thread, sized from a first tenth of a billion rows to run about three seconds
        wh.execute("set threads = 1")
        QUERY = "select count(*) from range({}) t(x) where x % 7 = 3"
        started = time.perf_counter()
        wh.scalar(QUERY.format(10**8))
        rows = int(10**8 * 3.0 / (time.perf_counter() - started))
        started = time.perf_counter()
        wh.scalar(QUERY.format(rows))
        print("long enough", time.perf_counter() - started > 2.0)
    """
)


def test_a_long_query_leaves_stdout_clean(tmp_path: Path) -> None:
    """The settings, then a query longer than the two seconds after which DuckDB draws its
    bar: standard output holds only what the script printed."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "w.duckdb")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert done.stdout.splitlines() == ["warehouse False", "gate False", "long enough True"]


def test_dbt_connections_turn_it_off_too() -> None:
    """dbt-duckdb runs every profile setting as a SET on each cursor it opens."""
    profiles = yaml.safe_load((REPO / "dbt_project" / "profiles.yml").read_text())
    settings = profiles["trialscreen"]["outputs"]["duckdb"]["settings"]
    assert settings["enable_progress_bar"] == "false"
