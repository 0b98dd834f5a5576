"""``trialscreen demo``: generate a population, run the nightly job on DuckDB, print where to look.

Everything lands under one directory (default ``./demo``): ``feeds/`` (the generated drop and
its expected outcomes), ``trialscreen.duckdb`` (the warehouse) and ``reports/``. The demo
makes its own pseudonym key when ``TRIALSCREEN_PSEUDONYM_KEY`` is unset and keeps it in
``demo/.pseudonym_key`` so a second demo run gives the same patient keys; a real deployment
sets the variable from its secret store.
"""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path

from trialscreen import pseudonym


def _demo_key(out: Path) -> None:
    if os.environ.get(pseudonym.KEY_ENV):
        return
    key_file = out / ".pseudonym_key"
    if not key_file.exists():
        key_file.write_text(pseudonym.new_key())
        key_file.chmod(0o600)
    os.environ[pseudonym.KEY_ENV] = key_file.read_text().strip()


def run_demo(patients: int, seed: int, out: Path, screening_date: date | None = None) -> int:
    from trialscreen.synth import generate

    out.mkdir(parents=True, exist_ok=True)
    _demo_key(out)
    screening_date = screening_date or date.today()
    feeds = out / "feeds"
    warehouse = out / "trialscreen.duckdb"
    reports = out / "reports"
    started = time.perf_counter()
    print(f"1/3 generating {patients} synthetic patients (seed {seed}) into {feeds}")
    generate(patients=patients, seed=seed, out=feeds, screening_date=screening_date)
    print(f"2/3 running the nightly job as of {screening_date} on {warehouse}")
    from trialscreen.pipeline import run_pipeline

    result = run_pipeline(
        input_dir=feeds, screening_date=screening_date, warehouse=warehouse, reports_dir=reports
    )
    print(result.summary())
    print(f"3/3 done in {time.perf_counter() - started:.0f} s. Where to look:")
    print(f"  warehouse     {warehouse}  (duckdb {warehouse} -c 'from marts.eligible_candidates')")
    for label, path in result.artifacts.items():
        print(f"  {label:13} {path}")
    print(f"  expected      {feeds / 'expected'}  (the generator's known answers)")
    return 0 if result.published else 1
