"""What a person at a terminal sees while a command works; nothing anywhere else.

``trialscreen run`` on a terminal prints a banner as each step of the run begins (ingest,
build, validate, publish, reports) and a line with its elapsed time when it ends; below
them a live line shows the step's progress: the files handled per feed during ingest, the dbt
nodes finished during the build (counted from dbt's ``NodeFinished`` events). Off a terminal
(cron, CI, Airflow, a pipe) nothing is printed: :func:`run_progress` returns ``None``.

Everything goes to stderr, so stdout keeps the run's summary. Only step names, feed names,
dbt node names and counts are shown: never a file name (Synthea names bundles after the
patient) nor a record.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

# the steps of trialscreen.pipeline.run_pipeline, in order, with what each one does
STEPS = {
    "ingest": "land the drop's new files in raw/quarantine",
    "build": "pseudonym keys, trial tables, dbt seed + build into the candidate schemas",
    "validate": "quality gate on the landed feeds and the candidate tables",
    "publish": "candidate tables replace the published ones",
    "reports": "screening report, Data Docs, dbt docs",
}
_DBT_FAILED = {"error", "fail", "runtime error"}


def on_terminal(stream: TextIO | None = None) -> bool:
    """Progress is drawn only when stderr is a terminal (a person is watching)."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def _seconds(elapsed: float) -> str:
    if elapsed < 60:
        return f"{elapsed:.1f} s"
    minutes, seconds = divmod(round(elapsed), 60)
    return f"{minutes} min {seconds:02d} s"


def _bar(console: Console, transient: bool, disable: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        disable=disable,
    )


@contextmanager
def _logs_through(console: Console) -> Iterator[None]:
    """Route trialscreen's log handlers (``-v``) through the live display's console, so a
    log line prints above the progress line instead of through it."""
    handlers = [
        h
        for h in logging.getLogger("trialscreen").handlers
        if isinstance(h, logging.StreamHandler) and h.stream is console.file
    ]
    proxy = sys.stderr  # rich's Live replaces sys.stderr with a proxy that prints above it
    for handler in handlers:
        handler.setStream(proxy)
    try:
        yield
    finally:
        for handler in handlers:
            handler.setStream(console.file)


class TerminalRunProgress:
    """A :class:`trialscreen.pipeline.RunProgress` drawn on a terminal (use as a context)."""

    def __init__(self, console: Console, files_per_feed: dict[str, int]) -> None:
        self.console = console
        self._totals = dict(files_per_feed)
        self._bar = _bar(console, transient=True)
        self._lock = threading.Lock()  # dbt fires events from its threads
        self._logs: Any = None
        self._started = time.perf_counter()
        self._step: str | None = None
        self._step_started = 0.0
        self._task: TaskID | None = None
        self._dbt_nodes = 0
        self._dbt_failed = 0

    def __enter__(self) -> TerminalRunProgress:
        self._bar.start()
        self._logs = _logs_through(self.console)
        self._logs.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._end_step(interrupted=kind is not None)
        self._logs.__exit__(kind, exc, tb)
        self._bar.stop()
        elapsed = _seconds(time.perf_counter() - self._started)
        self.console.print(f"run took {elapsed}", highlight=False)

    # --- RunProgress ------------------------------------------------------------------

    def step(self, name: str) -> None:
        with self._lock:
            self._end_step()
            order = list(STEPS)
            number = f"{order.index(name) + 1}/{len(order)}" if name in STEPS else "-"
            what = STEPS.get(name, "")
            self.console.print(f"[{number}] {name}: {what}", highlight=False, markup=False)
            self._step, self._step_started = name, time.perf_counter()
            total = sum(self._totals.values()) if name == "ingest" else None
            self._task = self._bar.add_task(name, total=total)
            self._dbt_nodes = self._dbt_failed = 0

    def files(self, feed: str, n: int) -> None:
        with self._lock:
            if self._task is not None:
                self._bar.update(self._task, advance=n, description=f"ingest {feed} files")

    def dbt_event(self, event: Any) -> None:
        name = event.info.name
        if name not in ("ConcurrencyLine", "NodeFinished"):
            return
        with self._lock:
            if self._task is None:
                return
            if name == "ConcurrencyLine":  # a dbt invocation starts: its node count
                total = int(event.data.node_count)
                self._bar.reset(self._task, total=total, description="dbt")
                return
            node = event.data.node_info
            self._dbt_nodes += 1
            if str(event.data.run_result.status).lower() in _DBT_FAILED:
                self._dbt_failed += 1
            described = f"dbt {node.resource_type} {node.node_name}"
            self._bar.update(self._task, advance=1, description=described)

    # ----------------------------------------------------------------------------------

    def _end_step(self, interrupted: bool = False) -> None:
        if self._step is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        detail = ""
        if self._dbt_nodes:
            detail = f": {self._dbt_nodes} dbt nodes, {self._dbt_failed} failed"
        elif self._step == "ingest":
            detail = f": {sum(self._totals.values())} files in the drop"
        verb = "stopped after" if interrupted else "done in"
        elapsed = _seconds(time.perf_counter() - self._step_started)
        self.console.print(f"      {self._step} {verb} {elapsed}{detail}", highlight=False)
        self._step, self._task = None, None


def run_progress(
    files_per_feed: dict[str, int], stream: TextIO | None = None
) -> TerminalRunProgress | None:
    """Progress for ``trialscreen run``: drawn on ``stream`` (stderr) when it is a terminal,
    else ``None`` (the run prints nothing but its summary)."""
    stream = stream or sys.stderr
    if not on_terminal(stream):
        return None
    return TerminalRunProgress(Console(file=stream), files_per_feed)


@contextmanager
def counter(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar for one long loop (synth, ingest) on a terminal; silent otherwise."""
    with _bar(Console(file=sys.stderr), transient=False, disable=not on_terminal()) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
