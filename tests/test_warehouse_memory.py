"""A feed is one transaction: what the ingest hands DuckDB per batch must not stay alive until
it commits (docs/decisions.md, "Staged batches are views").

Registered Arrow views (``con.register``), even unregistered, are kept by DuckDB until the
transaction ends: at 1,000,000 patients the ingest process grew past 7 GB with the drop. The
batches below (~40 MB of Arrow each, 1.2 GB in all) go through ``load_frame`` and ``staged``
inside one transaction in a fresh process; its resident memory may grow by a few batches,
never by the drop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BATCHES = 30
ROWS = 300_000  # x ~130 bytes: ~40 MB of Arrow per batch

SCRIPT = textwrap.dedent(
    f"""
    import json, sys
    import polars as pl
    from trialscreen.warehouse import Warehouse

    def rss_mb():
        status = open("/proc/self/status").read()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024

    with Warehouse.connect(sys.argv[1]) as wh:
        wh.execute("create table t (record_id bigint, record_hash varchar)")
        with wh.transaction():
            for i in range({BATCHES}):
                frame = pl.DataFrame({{
                    "record_id": range(i * {ROWS}, (i + 1) * {ROWS}),
                    "record_hash": [f"{{i:04d}}" + "x" * 120] * {ROWS},
                }})
                with wh.staged("_ts_pairs", frame) as staged:
                    seen = wh.scalar(f"select count(*) from {{staged}} s join t using (record_id)")
                assert seen == 0
                wh.load_frame("t", frame)
                del frame
                if i == 2:
                    early = rss_mb()
            late = rss_mb()
        rows = wh.scalar("select count(*) from t")
    print(json.dumps({{"early_mb": early, "late_mb": late, "rows": rows}}))
    """
)


def test_batches_of_one_transaction_are_not_kept_until_it_commits(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "w.duckdb")],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == BATCHES * ROWS
    # kept batches would add ~1 GB between the third batch and the last; DuckDB's own buffers
    # (128MB-capped in the ingest, 4GB here) and the allocator's slack stay well under that
    assert result["late_mb"] - result["early_mb"] < 400, result
