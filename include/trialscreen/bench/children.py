"""Measurement in a child process: each feed's ingest and the dbt build run in a fresh
spawned interpreter (``_in_child``), so the peak RSS it reports (``VmHWM``) belongs to
that step alone; ``_ingest`` lands every feed that way and tabulates its counts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trialscreen.bench.populations import MB, TRIALS, _feed_bytes
from trialscreen.schema import FEEDS
from trialscreen.workers import spawn_pool


def _rss_mb() -> float:
    """This process's own peak resident set size so far, in MB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's memory,
    which starts again at ``exec``. Not ``ru_maxrss``: Linux carries the parent's peak
    across fork+exec into it, so a spawned child would report the bench process's peak
    whenever that was higher (tests/test_gate_memory.py does the same). Elsewhere
    ``ru_maxrss`` (macOS reports bytes)."""
    from trialscreen.ingest import own_peak_rss_mb

    return own_peak_rss_mb()


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh spawned interpreter (one task, then it exits), so the
    peak RSS it reports belongs to that step alone and not to what ran before it."""
    with spawn_pool(1) as pool:
        return pool.submit(_guarded, fn, *args).result()


def _guarded(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Not every exception pickles back to the parent (dbt's do not): send its text."""
    try:
        return fn(*args)
    except Exception as exc:
        raise RuntimeError(f"{fn.__name__}: {type(exc).__name__}: {exc}") from None


def _ingest_child(warehouse: str, drop: str, feed: str, run_id: str) -> dict[str, Any]:
    from trialscreen.pipeline import ingest_feed

    baseline = _rss_mb()
    started = time.perf_counter()
    counts = ingest_feed(warehouse, Path(drop), feed, run_id)
    wall = time.perf_counter() - started
    row = counts.as_row()
    row["latest_record_at"] = str(row["latest_record_at"])
    return {
        "counts": row,
        "wall_seconds": round(wall, 3),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _rss_mb(),
        "worker_peak_rss_mb": counts.worker_peak_rss_mb,
    }


def _dbt_child(
    warehouse: str,
    screening_date: str,
    run_id: str,
    key: str,
    select: str | None,
) -> dict[str, Any]:
    from trialscreen import pseudonym
    from trialscreen.pipeline import prepare_build
    from trialscreen.transform import run_dbt

    os.environ.setdefault(pseudonym.KEY_ENV, key)
    baseline = _rss_mb()
    started = time.perf_counter()
    prepare_build(warehouse, TRIALS)
    prepare_s = time.perf_counter() - started
    dbt_vars = {"screening_date": screening_date, "run_id": run_id, "wap": False}
    selection = ["--select", *select.split()] if select else []

    started = time.perf_counter()
    run_dbt("seed", warehouse, args=["--full-refresh", *selection], dbt_vars=dbt_vars)
    seed_s = time.perf_counter() - started
    started = time.perf_counter()
    result = run_dbt("build", warehouse, args=selection, dbt_vars=dbt_vars)
    build_s = time.perf_counter() - started

    per_type: dict[str, float] = {}
    nodes: dict[str, int] = {}
    latest_node_s = 0.0
    each: list[tuple[float, str]] = []
    for node_result in result.result or []:
        node = node_result.node
        kind = str(getattr(node.resource_type, "value", node.resource_type))
        seconds = float(node_result.execution_time or 0.0)
        per_type[kind] = per_type.get(kind, 0.0) + seconds
        each.append((seconds, str(node.name)))
        nodes[kind] = nodes.get(kind, 0) + 1
        if kind == "model" and node.name == "int_labs__latest_in_window":
            latest_node_s = seconds
    return {
        "prepare_seconds": round(prepare_s, 3),
        "seed_seconds": round(seed_s, 3),
        "build_seconds": round(build_s, 3),
        "total_seconds": round(seed_s + build_s, 3),
        "build_elapsed_seconds": round(float(result.result.elapsed_time or 0.0), 3),
        "node_seconds": {k: round(v, 3) for k, v in sorted(per_type.items())},
        "nodes": dict(sorted(nodes.items())),
        # what dominates: the ten nodes that took longest (dbt's threads overlap them)
        "slowest_nodes": {name: round(t, 3) for t, name in sorted(each, reverse=True)[:10]},
        "latest_in_window_node_seconds": round(latest_node_s, 3),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _rss_mb(),
    }


def _ingest(warehouse: str, drop: Path, run_id: str, tick: Callable[[str], None]) -> dict[str, Any]:
    feeds: dict[str, Any] = {}
    for feed in FEEDS:
        tick(f"ingest {feed}")
        child = _in_child(_ingest_child, warehouse, str(drop), feed, run_id)
        counts = child["counts"]
        n_bytes = _feed_bytes(drop, feed)
        seconds = float(counts["seconds"])
        feeds[feed] = {
            "files": counts["files_new"],
            "mb": round(n_bytes / MB, 2),
            "records_in": counts["records_in"],
            "loaded": counts["loaded"],
            "duplicates_skipped": counts["duplicates_skipped"],
            "quarantined": counts["quarantined"],
            "seconds": seconds,
            "records_per_s": round(counts["records_in"] / seconds) if seconds > 0 else None,
            "mb_per_s": float(f"{n_bytes / MB / seconds:.3g}") if seconds > 0 else None,
            "peak_rss_mb": child["peak_rss_mb"],
            "worker_peak_rss_mb": child["worker_peak_rss_mb"],
            "baseline_rss_mb": child["baseline_rss_mb"],
        }
    return feeds
