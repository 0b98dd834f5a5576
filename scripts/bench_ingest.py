"""The ingest part of ``trialscreen bench`` alone, on a population already generated.

    .venv/bin/python scripts/bench_ingest.py /work/cache/pop_100000_7 --out /tmp/bench_ingest

Each feed is landed by ``pipeline.ingest_feed`` in its own spawned process into a fresh DuckDB
file, as the bench's ingest step does (its ``_in_child(_ingest_child, ...)`` per feed); MB/s is
the feed's bytes on disk over the ingest seconds the pipeline records (wall, as the bench
reports), and MB per CPU-second is the same bytes over the CPU time of that feed's process,
which a busy machine distorts less. Prints one JSON document (also
written to ``<out>/ingest.json``). Run it with ``PYTHONPATH=<worktree>/include`` to measure
another commit's parsers on the same population (docs/benchmarks.md, "Lab-shape parsing").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any


def _bench_module() -> Any:
    """The bench's measurement module: trialscreen.bench.measure, or the older single-module
    trialscreen.bench (before the split into measure/render)."""
    try:
        from trialscreen.bench import measure

        return measure
    except ImportError:
        import trialscreen.bench as bench

        return bench


MB = 1_000_000  # the bench's megabyte
FEEDS = ("fhir", "hl7", "csv")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _commit(include: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(include), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("drop", type=Path, help="a generated population (trialscreen synth)")
    parser.add_argument("--out", type=Path, default=Path("out/bench_ingest"))
    parser.add_argument(
        "--feeds",
        nargs="+",
        choices=FEEDS,
        default=list(FEEDS),
        help="feeds in this order (default: the bench's fhir hl7 csv)",
    )
    args = parser.parse_args()

    import trialscreen
    from trialscreen import pseudonym
    from trialscreen.pipeline import start_run

    bench = _bench_module()
    manifest = json.loads((args.drop / "expected" / "manifest.json").read_text())
    screening_date = date.fromisoformat(manifest["screening_date"])
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault(pseudonym.KEY_ENV, pseudonym.new_key())
    warehouse = bench._fresh_duckdb(args.out / "ingest.duckdb")
    run_id = start_run(warehouse, screening_date, bench.TRIALS)
    load_before = os.getloadavg()
    started = time.perf_counter()
    feeds: dict[str, Any] = {}
    for feed in args.feeds:
        # the bench's own step for one feed (its _ingest loops over the feeds the same way);
        # the spawned process's CPU time comes back to this one when the pool reaps it
        cpu_before = _children_cpu()
        child = bench._in_child(bench._ingest_child, warehouse, str(args.drop), feed, run_id)
        cpu = _children_cpu() - cpu_before
        counts = child["counts"]
        n_bytes = bench._feed_bytes(args.drop, feed)
        seconds = float(counts["seconds"])
        feeds[feed] = {
            "files": counts["files_new"],
            "mb": round(n_bytes / MB, 2),
            "records_in": counts["records_in"],
            "loaded": counts["loaded"],
            "quarantined": counts["quarantined"],
            "seconds": seconds,
            "mb_per_s": round(n_bytes / MB / seconds, 2) if seconds > 0 else None,
            "cpu_seconds": round(cpu, 1),
            "mb_per_cpu_s": round(n_bytes / MB / cpu, 2) if cpu > 0 else None,
            "peak_rss_mb": child["peak_rss_mb"],
        }
    result = {
        "commit": _commit(Path(trialscreen.__file__).parent),
        "package": str(Path(trialscreen.__file__).parent),
        "drop": str(args.drop),
        "patients": manifest.get("patients"),
        "machine": platform.node(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.perf_counter() - started, 1),
        "feeds": feeds,
    }
    text = json.dumps(result, indent=2)
    (args.out / "ingest.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
