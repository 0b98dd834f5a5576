"""What the bench measures on: the cached populations (``population``, the next night's
``increment_drop``), the drops cut from them (the Observation files of the end-to-end
ratio, the scale step's ``sample_drop``) and the fresh DuckDB file or PostgreSQL database
each measurement lands in.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

TRIALS = ["axiom"]
# Fixed so that a cached population stays valid from one day to the next.
SCREENING_DATE = date(2026, 11, 24)
PG_BENCH_DB = "trialscreen_bench"
MB = 1_000_000


def population(out: Path, patients: int, seed: int, workers: int = 2) -> tuple[Path, bool, date]:
    """The cached population for (patients, seed); generated only when missing or stale.

    Reused only when ``<drop>/.synth/key.json`` says it was generated to the end under the
    same key (the generator's code fingerprint, size, seed, screening date, time zone); a
    drop without that record (older generators) is generated again. An interrupted
    generation resumes from its finished parts (``synth.generate``)."""
    from trialscreen.synth import cache_key, generate, is_complete

    drop = out / f"pop_{patients}_{seed}"
    if is_complete(drop, cache_key(patients, seed, SCREENING_DATE)):
        return drop, False, SCREENING_DATE
    generate(patients=patients, seed=seed, out=drop, screening_date=SCREENING_DATE, workers=workers)
    return drop, True, SCREENING_DATE


def increment_drop(
    out: Path, patients: int, seed: int, share: float = 0.02
) -> tuple[Path, bool, date]:
    """The cached next night of the cached population: one day of new lab results for
    ``share`` of its patients, dated the day after ``SCREENING_DATE``
    (``<out>/pop_<n>_<seed>_night2``). Reused only when it was written by the same code from
    the same population; returns (drop, generated, its day = the night's screening date)."""
    from trialscreen.synth import cache_key
    from trialscreen.synth.increment import fingerprint, increment

    base, _, _ = population(out, patients, seed)
    drop = out / f"pop_{patients}_{seed}_night2"
    day = SCREENING_DATE + timedelta(days=1)
    held = drop / "expected" / "increment.json"
    if held.exists():
        meta = json.loads(held.read_text())
        if (
            meta.get("base") == cache_key(patients, seed, SCREENING_DATE)
            and meta.get("fingerprint") == fingerprint()
            and meta.get("share") == share
            and meta.get("day") == day.isoformat()
        ):
            return drop, False, day
    increment(base, drop, day, share)
    return drop, True, day


def _feed_bytes(drop: Path, feed: str) -> int:
    folder = drop / feed
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _fresh_duckdb(path: Path) -> str:
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    return str(path)


def _fresh_postgres(url: str) -> str:
    """Drop and recreate the bench's own database on the server of ``url``; its URL."""
    import psycopg2  # type: ignore[import-untyped]

    admin = psycopg2.connect(url)
    admin.autocommit = True  # create/drop database cannot run inside a transaction
    try:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists {PG_BENCH_DB}")
            cur.execute(f"create database {PG_BENCH_DB}")
    finally:
        admin.close()
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{PG_BENCH_DB}"))


def _observation_drop(out: Path, drop: Path) -> Path:
    """A drop holding only the population's FHIR Observation NDJSON files (hard links, else
    copies): the files the polars peer reads, for the end-to-end ratio."""
    import shutil

    subset = out / f"{drop.name}_observations"
    shutil.rmtree(subset, ignore_errors=True)
    (subset / "fhir").mkdir(parents=True)
    for path in sorted((drop / "fhir").glob("Observation*.ndjson*")):
        try:
            os.link(path, subset / "fhir" / path.name)
        except OSError:
            shutil.copyfile(path, subset / "fhir" / path.name)
    return subset


SAMPLE_BYTES = 256 * MB  # per feed, of the scale step's parser comparison


def _unpacked_size(path: Path) -> int:
    """Bytes a file holds once read: a gzip's size from its trailer (ISIZE, modulo 4 GiB)."""
    if path.suffix != ".gz":
        return path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return int.from_bytes(fh.read(4), "little")


def sample_drop(out: Path, drop: Path, budget: int = SAMPLE_BYTES) -> Path:
    """The first files of the drop's FHIR Observation NDJSON and of its HL7 feed, up to
    ``budget`` bytes each once read (at least one file each), as hard links in a drop of
    their own: the scale step compares the parsers with their peers on these, since the
    peers hold their input in memory and a million patients' feeds are 10 GB."""
    import shutil

    subset = out / f"{drop.name}_sample"
    shutil.rmtree(subset, ignore_errors=True)
    chosen = {
        "fhir": sorted((drop / "fhir").glob("Observation*.ndjson*")),
        "hl7": sorted(p for p in (drop / "hl7").glob("*") if p.suffix in (".hl7", ".txt")),
    }
    for feed, paths in chosen.items():
        (subset / feed).mkdir(parents=True)
        taken = 0
        for path in paths:
            if taken >= budget:
                break
            try:
                os.link(path, subset / feed / path.name)
            except OSError:
                shutil.copyfile(path, subset / feed / path.name)
            taken += _unpacked_size(path)
    return subset
