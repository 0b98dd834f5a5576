"""A first night the end-to-end modules share instead of each running it again (the
fixture ``first_night`` is in tests/conftest.py).

Several modules start from the same night: the generated 40-patient drop (seed 41) screened
on 2026-11-20 by a fresh DuckDB warehouse, published (test_incremental_nights on both of its
sequences, test_build_failure, test_reader_during_run, test_unmapped_codes_ingest,
test_write_audit_publish). It is one pipeline run of ~60-90
CPU-seconds, the same every time, and what the modules assert is about the nights after it.
``first_night`` runs it once per ``pytest`` run (the xdist workers share it through a lock
file in the run's temporary root) and each module copies the warehouse, its published files
and the reports into its own folder (``FirstNight.copy_to``), so no module sees another's
later nights. The drop and the dbt project it was built with are read, never written.
"""

from __future__ import annotations

import fcntl
import pickle
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from trialscreen import pipeline, pseudonym
from trialscreen.pipeline import RunResult, run_pipeline
from trialscreen.synth import generate
from trialscreen.synth.generate import SynthSummary
from trialscreen.transform import DBT_PROJECT_DIR, PROJECT_DIR_ENV
from trialscreen.warehouse import published_file

FIRST_NIGHT_DATE = date(2026, 11, 20)
FIRST_NIGHT_KEY = "incremental-nights-test-key"
FIRST_NIGHT_RUN_ID = "incremental-night-1"
FIRST_NIGHT_PATIENTS, FIRST_NIGHT_SEED = 40, 41


def copy_duckdb_warehouse(source: Path, target: Path) -> None:
    """The warehouse file (with its write-ahead log) and its published files
    (``<stem>_published/``, named after the warehouse's own name) at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    # the last commits may still be in the write-ahead log, not yet checkpointed into the file
    wal = source.with_name(source.name + ".wal")
    if wal.is_file():
        shutil.copyfile(wal, target.with_name(target.name + ".wal"))
    published = published_file(source, "marts")
    assert published is not None
    copied = published_file(target, "marts")
    assert copied is not None
    if published.parent.is_dir():
        shutil.copytree(published.parent, copied.parent)


@contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    with lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class FirstNight:
    """The shared night: read it, copy it; never write to these paths. The drop and the
    project are there from the start; the night runs when a module first copies it (a module
    that needs only the drop, as on PostgreSQL, does not wait for it)."""

    root: Path
    key: str = FIRST_NIGHT_KEY
    run_id: str = FIRST_NIGHT_RUN_ID
    screening_date: date = FIRST_NIGHT_DATE
    patients: int = FIRST_NIGHT_PATIENTS
    seed: int = FIRST_NIGHT_SEED

    @property
    def drop(self) -> Path:
        """The generated drop the night ingests."""
        return self.root / "drop"

    @property
    def project(self) -> Path:
        """The copy of dbt_project/ the night is built with."""
        return self.root / "dbt_project"

    @property
    def warehouse(self) -> Path:
        return self.root / "wh" / "wh.duckdb"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def summary(self) -> SynthSummary:
        """The generator's summary of the drop (its expected outcome)."""
        summary: SynthSummary = pickle.loads((self.root / "summary.pickle").read_bytes())
        return summary

    @property
    def result(self) -> RunResult:
        """What ``run_pipeline`` returned for the night."""
        self._ensure()
        result: RunResult = pickle.loads((self.root / "result.pickle").read_bytes())
        return result

    def copy_to(self, warehouse: Path, reports: Path | None = None) -> Path:
        """The night's warehouse at ``warehouse`` (and its reports at ``reports``)."""
        self._ensure()
        copy_duckdb_warehouse(self.warehouse, warehouse)
        if reports is not None:
            shutil.copytree(self.reports, reports)
        return warehouse

    def _ensure(self) -> None:
        # a lock of its own: a worker that needs only the drop does not wait for the night
        with exclusive(self.root / "night.lock"):
            if not (self.root / "night_done").is_file():
                shutil.rmtree(self.warehouse.parent, ignore_errors=True)
                shutil.rmtree(self.reports, ignore_errors=True)
                self._run()
                (self.root / "night_done").touch()

    def _run(self) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(pseudonym.KEY_ENV, self.key)
            mp.setenv(PROJECT_DIR_ENV, str(self.project))
            mp.delenv(pipeline.TRANSFORM_URL_ENV, raising=False)
            result = run_pipeline(
                self.drop,
                self.screening_date,
                self.warehouse,
                reports_dir=self.reports,
                run_id=self.run_id,
            )
        assert result.published, result.message
        (self.root / "result.pickle").write_bytes(pickle.dumps(result))


def prepare(root: Path) -> None:
    summary = generate(
        patients=FIRST_NIGHT_PATIENTS,
        seed=FIRST_NIGHT_SEED,
        out=root / "drop",
        screening_date=FIRST_NIGHT_DATE,
    )
    (root / "summary.pickle").write_bytes(pickle.dumps(summary))
    # the project as it is now: its content is part of the build fingerprint, so a module's
    # next night builds incrementally only with the same content
    shutil.copytree(
        DBT_PROJECT_DIR,
        root / "dbt_project",
        ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"),
    )
