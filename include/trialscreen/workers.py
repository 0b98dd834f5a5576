"""Worker processes that end with the process that started them (docs/decisions.md, "Parse
workers end with the run").

Every pool of ours spawns its workers (no fork of a process holding DuckDB's or polars'
threads), and each worker asks Linux to kill it when the thread that started it ends: a run
killed by a scheduler's timeout (SIGTERM, then SIGKILL) or by an operator left its workers
working through what was queued to them, then waiting on the pool's queue for good, since each
worker holds that queue's other end too. Pools: the ingest's parse workers
(``ingest.parse.parse_pool``) and the bench's one-task children. ``trialscreen synth``'s part
writers are not among them yet: its module is part of the generator's fingerprint, so changing
it makes every cached population stale.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def spawn_pool(workers: int, then: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes that end with this one; each runs ``then`` (a
    module-level function: it is pickled by name) once it has started."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), then),
    )


def _start_worker(parent: int, then: Callable[[], None] | None) -> None:
    end_with_parent(parent)
    if then is not None:
        then()


def end_with_parent(parent: int) -> None:
    """Linux sends this process SIGKILL when the thread that started it ends
    (``PR_SET_PDEATHSIG``); it exits at once if ``parent`` had already ended. The pools submit
    from the thread that reads their results, which lives as long as the pool. Elsewhere than
    Linux a no-op."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        pr_set_pdeathsig = 1  # <linux/prctl.h>
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the call above
        os._exit(1)
