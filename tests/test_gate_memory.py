"""The quality gate's memory does not grow with the population (issue 14 item 1).

Great Expectations runs the expectations as SQL on the warehouse (a SQL datasource; on DuckDB
one persisted connection under ``TRIALSCREEN_GATE_MEMORY_LIMIT``), so the gate process holds
aggregates and at most GX's 20-value samples, never a table. The same hand-written warehouse
as tests/test_validate.py, its marts replicated to two population sizes 250 times apart
(1,200 and 300,000 patients), is validated in a fresh process each, and the peak RSS of the
two processes is compared. Reading the tables into pandas, as the gate did before, adds
well over 1 GB at the larger size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_validate import SCREENING_DATE, build_clean

from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # two gates in fresh processes, one on millions of rows

RUN_ID = "run-memory"
SMALL, LARGE = 200, 50_000  # copies of the 6 hand-written patients
# the gate's DuckDB memory (it spills beyond it), as shipped: the one part of the gate that
# may use more at a larger size, up to this much
LIMIT_MB = 512

GATE = textwrap.dedent(
    """
    import json, sys
    from datetime import date
    from pathlib import Path
    from trialscreen.validate import validate

    outcome = validate(sys.argv[1], Path(sys.argv[2]), sys.argv[3], date.fromisoformat(sys.argv[4]))
    # VmHWM, not ru_maxrss: Linux carries the parent's peak across fork+exec into ru_maxrss,
    # so a gate started from a test worker that peaked higher would report the worker's peak
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])
    print(json.dumps({
        "peak_rss_mb": hwm_kb / 1024,
        "assets": {a["name"]: a["rows"] for a in outcome.assets},
        "blocking": [[f["asset"], f["expectation"]] for f in outcome.blocking_failures],
    }))
    """
)


def _scaled(path: Path, copies: int) -> str:
    """build_clean's warehouse with every patient-level mart copied ``copies`` times, each
    copy its own patients (patient_key suffixed), so keys stay unique."""
    url = build_clean(path, RUN_ID)
    with Warehouse.connect(url) as wh:
        for table in ("criterion_evaluations", "screening_results", "eligible_candidates"):
            wh.execute(
                f"create or replace table marts.{table} as "
                f"select * replace (patient_key || '-' || copy.range as patient_key) "
                f"from marts.{table}, range({copies}) as copy"
            )
    return url


def _gate(url: str, reports: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TRIALSCREEN_GATE_MEMORY_LIMIT"}
    done = subprocess.run(
        [sys.executable, "-c", GATE, url, str(reports), RUN_ID, SCREENING_DATE.isoformat()],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def gates(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    out = {}
    for copies in (SMALL, LARGE):
        root = tmp_path_factory.mktemp(f"gate{copies}")
        out[copies] = _gate(_scaled(root / "wh.duckdb", copies), root / "reports")
    return out


def test_both_sizes_are_validated_whole(gates) -> None:
    for copies, gate in gates.items():
        # 6 patients x 2 cohorts x 4 criteria per copy, every row checked by GX's SQL
        assert gate["assets"]["marts.criterion_evaluations"] == 48 * copies
        assert gate["assets"]["marts.screening_results"] == 12 * copies
        # the hand-written warehouse is clean: the gate passes at both sizes
        assert gate["blocking"] == [], gate["blocking"]


def test_gate_peak_memory_does_not_grow_with_the_population(gates) -> None:
    small, large = gates[SMALL]["peak_rss_mb"], gates[LARGE]["peak_rss_mb"]
    print(f"gate peak RSS: {small:.0f} MB at 1,200 patients, {large:.0f} MB at 300,000")
    # 250x the rows (2.4 M criterion evaluations): at most DuckDB's limit and noise more,
    # where reading the tables into pandas added well over 1 GB
    assert large - small <= LIMIT_MB + 100, (small, large)
