"""The scale step of ``trialscreen bench``: two nights of the nightly job on a cached
population at a health system's size (issue 14 item 5, docs/benchmarks.md).

Night 1 is the first full load: ``trialscreen run``'s job (``pipeline.run_pipeline``: ingest,
dbt build with write-audit-publish, the quality gate, publish, reports) on a fresh DuckDB file
holding nothing. Night 2 is the next day's drop (``increment_drop``: one day of new lab results
for 2 % of the patients) on the same warehouse, built incrementally as a real second night is
(``pipeline.plan_build``). Each night runs in a spawned process of its own; a sampler thread
there reads the resident memory of that process and of every process under it (the ingest's
parse workers) twice a second, so each step's peak RSS is the whole job's, not one process's.
Wall and CPU seconds per night; wall seconds and peak RSS per step; the second night's time
against the first's.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from trialscreen.bench.measure import (
    TRIALS,
    _fresh_duckdb,
    _in_child,
    increment_drop,
    measure_sample,
    population,
)

_SAMPLE_SECONDS = 0.5


def _tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants, in MB (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/statm") as statm:
                pages = int(statm.read().split()[1])
            with open(f"/proc/{entry.name}/stat") as stat:
                # the command may hold spaces and parentheses: the fields after the last ')'
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
        pid = int(entry.name)
        parents[pid], rss[pid] = ppid, pages
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(rss.get(pid, 0) for pid in tree) * os.sysconf("SC_PAGE_SIZE") / 1e6


class StepRecorder:
    """A ``pipeline.RunProgress`` that times each step and samples the process tree's
    memory; the ingest is split per feed (a feed's step starts at its first file)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self._name: str | None = None
        self._started = 0.0
        self._peak: dict[str, float] = {}
        self._done = threading.Event()
        self._pid = os.getpid()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._done.wait(_SAMPLE_SECONDS):
            name = self._name
            if name is not None:
                mb = _tree_rss_mb(self._pid)
                self._peak[name] = max(self._peak.get(name, 0.0), mb)

    def _switch(self, name: str | None) -> None:
        now = time.perf_counter()
        if self._name is not None:
            self.steps.append(
                {
                    "step": self._name,
                    "seconds": round(now - self._started, 1),
                    "peak_rss_mb": round(self._peak.get(self._name, 0.0)),
                }
            )
        self._name, self._started = name, now

    def step(self, name: str) -> None:
        self._switch(name)

    def files(self, feed: str, n: int) -> None:
        if (
            self._name is not None
            and self._name.startswith("ingest")
            and not self._name.endswith(feed)
        ):
            self._switch(f"ingest {feed}")

    def dbt_event(self, event: Any) -> None:
        pass

    def finish(self) -> list[dict[str, Any]]:
        self._switch(None)
        self._done.set()
        return self.steps


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the joined parse workers
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _night_child(
    warehouse: str, drop: str, day: str, reports_dir: str, key: str, full_refresh: bool
) -> dict[str, Any]:
    from trialscreen import pseudonym
    from trialscreen.pipeline import run_pipeline

    os.environ.setdefault(pseudonym.KEY_ENV, key)
    recorder = StepRecorder()
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = run_pipeline(
        Path(drop),
        date.fromisoformat(day),
        warehouse,
        TRIALS,
        Path(reports_dir),
        progress=recorder,
        full_refresh=full_refresh,
    )
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    steps = recorder.finish()
    return {
        "screening_date": day,
        "status": result.status,
        "message": result.message,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": max((s["peak_rss_mb"] for s in steps), default=0),
        "steps": steps,
        "records_in": sum(c.records_in for c in result.feed_counts.values()),
        "loaded": sum(c.loaded for c in result.feed_counts.values()),
        "candidates": result.candidates,
    }


def _last_build(warehouse: str) -> dict[str, Any]:
    from trialscreen.pipeline import BUILD_STATE_TABLE
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(warehouse) as wh:
        rows = wh.query(
            f"select full_refresh, reason from {BUILD_STATE_TABLE} order by built_at desc limit 1"
        )
    return {"full_refresh": rows[0][0], "reason": rows[0][1]} if rows else {}


def _step_seconds(night: dict[str, Any], name: str) -> float | None:
    return next((s["seconds"] for s in night["steps"] if s["step"] == name), None)


def bench_scale(
    out: Path, patients: int, seed: int, *, tick: Callable[[str], None] = lambda _step: None
) -> dict[str, Any]:
    """Night 1 (first full load) and night 2 (the next day's increment) of the cached
    population on a fresh DuckDB file. ``ok`` is false when a night did not publish; its
    message names the failed model (the regression this step exists to catch: DuckDB's
    dict-surviving join at 300,000 patients, docs/decisions.md)."""
    from trialscreen import pseudonym

    tick(f"population {patients:,}")
    started = time.perf_counter()
    drop, generated, screening_date = population(out, patients, seed)
    second, _, second_day = increment_drop(out, patients, seed)
    generate_s = time.perf_counter() - started
    warehouse = _fresh_duckdb(out / f"scale_{patients}_{seed}.duckdb")
    key = os.environ.get(pseudonym.KEY_ENV) or pseudonym.new_key()
    nights = []
    for n, (night_drop, day) in enumerate(((drop, screening_date), (second, second_day)), 1):
        tick(f"night {n} ({patients:,} patients)")
        reports = out / f"scale_{patients}_{seed}_reports{n}"
        nights.append(
            _in_child(
                _night_child, warehouse, str(night_drop), day.isoformat(), str(reports), key, False
            )
        )
        nights[-1]["build_plan"] = _last_build(warehouse)
    tick(f"parsers vs peers ({patients:,} patients' files, sampled)")
    sample = measure_sample(out, drop)
    first, increment = nights
    full_build, incremental_build = (_step_seconds(n, "build") for n in nights)
    return {
        "patients": patients,
        "seed": seed,
        "population": {"dir": str(drop), "generated": generated, "seconds": round(generate_s, 1)},
        "warehouse": warehouse,
        "nights": nights,
        "sample": sample,
        "incremental_vs_full": round(increment["wall_seconds"] / first["wall_seconds"], 3),
        "incremental_vs_full_build": (
            round(incremental_build / full_build, 3)
            if full_build and incremental_build is not None
            else None
        ),
        "ok": all(n["status"] == "published" for n in nights),
    }
