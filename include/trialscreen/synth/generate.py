"""Drive population -> writers -> oracle part by part and write ``expected/``.

Routes (per patient, drawn from the seed): ``fhir`` (everything FHIR, ~10 % of them as a
transaction bundle), ``fhir_hl7`` (FHIR demographics and clinical data, labs as HL7), ``csv``
(the CSV extract, labs as HL7 or CSV). The MRN ties the feeds together.

A population is drawn in parts (``synth.shard``): ``workers`` processes draw them, each into
``<out>/.synth/part-<k>/``, and the parts are then joined in order into ``fhir/``, ``hl7/``,
``csv/`` and ``expected/``. The number of workers never changes a byte. A run that stops
(a killed process, a session that ends) is resumed by the same call: parts already complete
under the same key are kept. ``<out>/.synth/key.json`` names what was generated (the
generator's fingerprint, size, seed, screening date, time zone); ``cache_key`` and
``is_complete`` are what a cache (``trialscreen bench``) compares before it reuses a drop.
"""

from __future__ import annotations

import ast
import csv
import fcntl
import hashlib
import io
import math
import os
import pickle
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from importlib.util import find_spec
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import orjson

from trialscreen.feeds.csv.contract import CSV_FILES
from trialscreen.synth import oracle
from trialscreen.synth.expected import EXPECTED_FILES, EXPECTED_HEADERS
from trialscreen.synth.model import pin_zone
from trialscreen.synth.shard import (
    HL7_SPOOL,
    PART_DONE,
    part_dir,
    write_part,
)
from trialscreen.synth.writers.fhir import RESOURCES
from trialscreen.synth.writers.hl7 import Hl7Writer

GENERATOR_VERSION = "1.0.0"
OUTPUT_DIRS = ("fhir", "hl7", "csv", "expected")
WORK_DIR = ".synth"
KEY_FILE = "key.json"
# The modules whose code decides the bytes of a population: their syntax trees (not their
# formatting or comments) make the generator's fingerprint, part of every cache key (a
# package: every module in its folder).
FINGERPRINTED = (
    "trialscreen.synth.catalogue",
    "trialscreen.synth.expected",
    "trialscreen.synth.generate",
    "trialscreen.synth.labshapes",
    "trialscreen.synth.model",
    "trialscreen.synth.oracle",
    "trialscreen.synth.population",
    "trialscreen.synth.shard",
    "trialscreen.synth.writers.csv",
    "trialscreen.synth.writers.fhir",
    "trialscreen.synth.writers.hl7",
    "trialscreen.feeds.csv.contract",
    "trialscreen.codesystems",
)


@dataclass(frozen=True)
class SynthSummary:
    out: Path
    patients: int
    seed: int
    screening_date: date
    files: dict[str, int]  # relative path -> records (lines, messages, rows, bundle entries)
    bad_records: int
    candidates: dict[str, dict[str, int]]  # cohort -> candidate_status -> patients
    routes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def fingerprint() -> str:
    """sha256 over the syntax trees of ``FINGERPRINTED``: any change to what the generator
    does changes it; reformatting or a comment does not."""
    h = hashlib.sha256()
    for name, origin in _modules(FINGERPRINTED):
        tree = ast.parse(origin.read_bytes())
        h.update(name.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return h.hexdigest()


def _modules(names: Iterable[str]) -> list[tuple[str, Path]]:
    """(name, file) of each module; a package stands for every module in its folder, so a
    module added to it later is fingerprinted without a new entry here."""
    found: list[tuple[str, Path]] = []
    for name in names:
        spec = find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        if spec.submodule_search_locations is None:
            found.append((name, origin))
            continue
        for path in sorted(origin.parent.glob("*.py")):
            found.append((name if path.stem == "__init__" else f"{name}.{path.stem}", path))
    return found


def cache_key(patients: int, seed: int, screening_date: date) -> dict[str, Any]:
    """What decides every byte of a population: equal keys, equal files."""
    with pin_zone() as zone:
        timezone = zone.key
    return {
        "generator_version": GENERATOR_VERSION,
        "fingerprint": fingerprint(),
        "patients": patients,
        "seed": seed,
        "screening_date": screening_date.isoformat(),
        "timezone": timezone,
    }


def _read_key(out: Path) -> dict[str, Any] | None:
    try:
        key: dict[str, Any] = orjson.loads((out / WORK_DIR / KEY_FILE).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return key


def is_complete(out: Path, key: dict[str, Any]) -> bool:
    """The drop under ``out`` was generated to the end under exactly ``key``."""
    held = _read_key(Path(out))
    return (
        held is not None
        and held.get("complete") is True
        and {k: held.get(k) for k in key} == key
        and (Path(out) / "expected" / "manifest.json").exists()
    )


def chunk_size(patients: int) -> int:
    """Patients per part (one FHIR Observation part each): 20 parts, at least 250 patients."""
    return max(250, math.ceil(patients / 20))


def _write_key(out: Path, key: dict[str, Any]) -> None:
    tmp = out / WORK_DIR / (KEY_FILE + ".tmp")
    tmp.write_bytes(orjson.dumps(key, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    os.replace(tmp, out / WORK_DIR / KEY_FILE)


def _start(out: Path, key: dict[str, Any]) -> bool:
    """Prepare ``out``: keep a matching unfinished run's parts (True), else start clean."""
    work = out / WORK_DIR
    held = _read_key(out)
    if held is not None and held.get("complete") is False and held == {**key, "complete": False}:
        for stale in work.glob("part-*.tmp"):  # parts a stopped process left half-written
            shutil.rmtree(stale)
        return True
    for sub in OUTPUT_DIRS:
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    _write_key(out, {**key, "complete": False})
    return False


def _done_parts(work: Path, parts: int) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    for part in range(1, parts + 1):
        path = part_dir(work, part) / PART_DONE
        if path.exists():
            done[part] = orjson.loads(path.read_bytes())
    return done


def _header(columns: Iterable[str]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(list(columns))
    return buf.getvalue().encode()


def _join(target: Path, header: bytes, pieces: list[Path]) -> None:
    with open(target, "wb") as fh:
        fh.write(header)
        for piece in pieces:
            with open(piece, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 20)


def _merge(out: Path, work: Path, key: dict[str, Any], summaries: list[dict[str, Any]]) -> Any:
    """Join the parts (in order) into the drop; returns the manifest's parts."""
    dirs = [part_dir(work, s["part"]) for s in summaries]
    for sub in ("fhir", "hl7", "csv", "expected"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    files: dict[str, int] = {}
    for s in summaries:  # Observation parts and bundles are whole; the rest are pieces
        for name, n in s["files"].items():
            files[name] = files.get(name, 0) + n
    for name in EXPECTED_FILES:
        _join(out / "expected" / name, _header(EXPECTED_HEADERS[name]),
              [d / "expected" / name for d in dirs])  # fmt: skip
    for name in RESOURCES:
        _join(out / "fhir" / f"{name}.ndjson", b"", [d / "fhir" / f"{name}.ndjson" for d in dirs])
    for d in dirs:
        for obs in d.joinpath("fhir").glob("Observation.*"):
            target = out / "fhir" / obs.name
            target.unlink(missing_ok=True)
            os.link(obs, target)
    for stem, columns in CSV_FILES.items():
        _join(
            out / "csv" / f"{stem}.csv", _header(columns), [d / "csv" / f"{stem}.csv" for d in dirs]
        )
    # HL7: rendered here, in patient order, by the one writer a single pass would use
    hl7_bad: list[list[Any]] = []
    hl7 = Hl7Writer(out / "hl7", lambda *row: hl7_bad.append(list(row)))
    with pin_zone():
        for s, d in zip(summaries, dirs, strict=True):
            with open(d / HL7_SPOOL, "rb") as fh:
                for _ in range(s["hl7_patients"]):
                    p, write = pickle.load(fh)  # noqa: S301 (our own spool, written above)
                    if write:
                        hl7.write(p)
                    hl7.write_bad(p)
    hl7.close()
    files.update(hl7.counts)
    bad_rows: list[list[Any]] = []
    hl7_next = iter(hl7_bad)
    csv_offset = 0
    for s in summaries:
        for row in s["bad_rows"]:
            if row[0] == "hl7":
                row = next(hl7_next)
            elif row[0] == "csv":
                row = [*row[:2], row[2] + csv_offset, *row[3:]]
            bad_rows.append(row)
        csv_offset += s["files"]["csv/lab_results.csv"]
    with open(out / "expected" / "bad_records.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["feed", "file", "position", "record_id", "reason"])
        w.writerows(bad_rows)
    routes: Counter[str] = Counter()
    cand_counts: dict[str, Counter[str]] = {c: Counter() for c in oracle.CRITERIA}
    for s in summaries:
        routes.update(s["routes"])
        for cohort, n in s["candidates"].items():
            cand_counts[cohort].update(n)
    candidates = {c: dict(sorted(n.items())) for c, n in cand_counts.items()}
    per_feed: dict[str, int] = Counter()
    for name, n in files.items():
        per_feed[name.split("/", 1)[0]] += n
    manifest = {
        "generator": "trialscreen.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": key["seed"],
        "patients": key["patients"],
        "screening_date": key["screening_date"],
        "trial_id": oracle.TRIAL_ID,
        "routes": dict(sorted(routes.items())),
        "records_per_feed": dict(sorted(per_feed.items())),
        "files": dict(sorted(files.items())),
        "bad_records": len(bad_rows),
        "bad_records_per_feed": dict(sorted(Counter(r[0] for r in bad_rows).items())),
        "candidates": candidates,
        "institutional_uln": oracle.INSTITUTIONAL_ULN,
    }
    (out / "expected" / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return files, bad_rows, candidates, routes


def generate(
    patients: int,
    seed: int,
    out: Path,
    screening_date: date,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> SynthSummary:
    """Write a population of ``patients`` under ``out`` and its expected outcome.

    Same (patients, seed, screening_date, hospital time zone) -> byte-identical files,
    whatever ``workers`` is. Previous output in the four owned subfolders (fhir, hl7, csv,
    expected) is replaced, except that an unfinished run of the same key is resumed.
    """
    started = time.perf_counter()
    out = Path(out)
    key = cache_key(patients, seed, screening_date)
    out.mkdir(parents=True, exist_ok=True)
    lock = os.open(out, os.O_RDONLY)  # a lock on the folder itself: one writer at a time
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another trialscreen synth is writing {out}") from None
        return _generate(out, key, started, progress, workers)
    finally:
        os.close(lock)


def _generate(
    out: Path,
    key: dict[str, Any],
    started: float,
    progress: Callable[[int], None] | None,
    workers: int,
) -> SynthSummary:
    patients, seed = key["patients"], key["seed"]
    screening_date = date.fromisoformat(key["screening_date"])
    _start(out, key)
    work = out / WORK_DIR
    (out / "fhir" / "bundles").mkdir(parents=True, exist_ok=True)
    chunk = chunk_size(patients)
    parts = math.ceil(patients / chunk)
    done = _done_parts(work, parts)
    todo = [k for k in range(1, parts + 1) if k not in done]
    finished = sum(s["stop"] - s["first"] for s in done.values())
    args = (str(out), str(work), seed, screening_date.isoformat(), patients, chunk)
    if progress is not None and finished:
        progress(finished)
    if workers <= 1 or len(todo) <= 1:
        for k in todo:
            done[k] = write_part(*args, k)
            finished += done[k]["stop"] - done[k]["first"]
            if progress is not None:
                progress(finished)
    else:
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=get_context("spawn")) as pool:
            pending = {pool.submit(write_part, *args, k) for k in todo}
            while pending:
                complete, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in complete:
                    s = future.result()
                    done[s["part"]] = s
                    finished += s["stop"] - s["first"]
                    if progress is not None:
                        progress(finished)
    summaries = [done[k] for k in range(1, parts + 1)]
    files, bad_rows, candidates, routes = _merge(out, work, key, summaries)
    for k in range(1, parts + 1):
        shutil.rmtree(part_dir(work, k))
    seconds = time.perf_counter() - started
    _write_key(out, {**key, "complete": True})  # no timings: equal keys, equal bytes
    return SynthSummary(
        out=out,
        patients=patients,
        seed=seed,
        screening_date=screening_date,
        files=dict(sorted(files.items())),
        bad_records=len(bad_rows),
        candidates=candidates,
        routes=dict(sorted(routes.items())),
        seconds=seconds,
    )
