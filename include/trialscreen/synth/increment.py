"""A nightly increment: one day of new lab results for a share of an existing population.

``increment(base, out, day, share)`` picks ``share`` of the base drop's screened patients
(deterministically from the base seed and ``day``), draws each of them again exactly as the
base drop has them, and adds one day of results collected on ``day``: a blood count (all
of them) and a chemistry panel (about half of them), mostly normal values, some failing
ones, in the canonical units. They go to the patient's own lab feed, so the increment is a
drop like any other night's: ``fhir/Observation.<day>.ndjson``, HL7 ``oru_batch_<n>`` files
numbered after the base drop's (message numbers continue too) and ``csv/lab_results.csv``.

``expected/`` holds the oracle for the patients of the increment on ``day`` (their whole
record plus the new results): ``criteria.csv``, ``candidates.csv``, ``values.csv`` in the
formats of a full drop, and ``increment.json`` (what was drawn). The other patients'
outcomes on ``day`` are not written: their records did not change, but windows slide and
birthdays pass, so their next-day outcome is ``generate`` at ``day`` (no cheaper way).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import random
import shutil
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from trialscreen.synth import catalogue as cat
from trialscreen.synth import oracle
from trialscreen.synth.expected import EXPECTED_HEADERS, write_outcome
from trialscreen.synth.generate import KEY_FILE, WORK_DIR
from trialscreen.synth.generate import fingerprint as base_fingerprint
from trialscreen.synth.model import Obs, pin_zone
from trialscreen.synth.population import build_patient
from trialscreen.synth.population.builder import _Builder
from trialscreen.synth.population.labs import _lab_value, _written
from trialscreen.synth.writers.csv import CsvWriter
from trialscreen.synth.writers.fhir import observation_resource
from trialscreen.synth.writers.hl7 import Hl7Writer

DEFAULT_SHARE = 0.02
# Order numbers of an increment: ORD<patient><n> with n from 500 + 10 x (days after the
# base screening date), clear of the base record's orders (which count from 1).
ORDER_BASE = 500


def fingerprint() -> str:
    """The base generator's fingerprint and this module's syntax tree: a cached increment is
    reused only under the same code (``trialscreen bench``)."""
    tree = ast.parse(Path(__file__).read_bytes())
    return hashlib.sha256(f"{base_fingerprint()}\0{ast.dump(tree)}".encode()).hexdigest()


def pick(patients: int, seed: int, day: date, share: float) -> list[int]:
    """The patient indexes of the increment (test patients left out: never screened)."""
    from trialscreen.synth.population import TEST_EVERY, TEST_OFFSET

    r = random.Random(f"trialscreen-synth-increment:{seed}:{day.isoformat()}")
    screened = [i for i in range(patients) if i % TEST_EVERY != TEST_OFFSET]
    k = min(len(screened), max(1, round(share * patients))) if patients else 0
    return sorted(r.sample(screened, k))


def new_results(seed: int, index: int, base_date: date, day: date) -> list[Obs]:
    """One day of results for patient ``index``: collected on ``day``, reported that day."""
    b = _Builder(seed, index, day)  # times relative to ``day``; the stream is replaced below
    b.r = random.Random(f"trialscreen-synth-increment:{seed}:{day.isoformat()}:{index}")
    b.n_orders = ORDER_BASE + 10 * (day - base_date).days
    r = b.r
    panels = [cat.CBC] + ([cat.CMP] if r.random() < 0.5 else [])
    for names in panels:
        order, when = b.order(), b.at(0)
        issued = when + timedelta(hours=r.randint(1, 4))
        for name in names:
            a = cat.ANALYTES[name]
            value = _lab_value(b, a, r.random() < 0.85)
            b.add_obs(
                "lab",
                a.loincs[0],
                when,
                order_id=order,
                issued=issued,
                **_written(b, a, value, a.units[0]),
            )
    return b.obs


def _base_key(base: Path) -> dict[str, Any]:
    try:
        key: dict[str, Any] = orjson.loads((base / WORK_DIR / KEY_FILE).read_bytes())
    except FileNotFoundError:
        raise ValueError(
            f"{base} has no {WORK_DIR}/{KEY_FILE}: not a drop written by trialscreen synth"
        ) from None
    if key.get("complete") is not True:
        raise ValueError(f"{base} is not complete (its generation was interrupted)")
    return key


def increment(
    base: Path, out: Path, day: date | None = None, share: float = DEFAULT_SHARE
) -> dict[str, Any]:
    """Write the increment of ``base`` for ``day`` (default: the day after its screening
    date) under ``out``; returns what ``expected/increment.json`` holds."""
    base, out = Path(base), Path(out)
    key = _base_key(base)
    seed, patients = int(key["seed"]), int(key["patients"])
    base_date = date.fromisoformat(key["screening_date"])
    day = day or base_date + timedelta(days=1)
    if day <= base_date:
        raise ValueError(f"the increment's day {day} must come after {base_date}")
    manifest = orjson.loads((base / "expected" / "manifest.json").read_bytes())
    hl7_files = sorted(n for n in manifest["files"] if n.startswith("hl7/"))
    for sub in ("fhir", "hl7", "csv", "expected"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True)
    chosen = pick(patients, seed, day, share)
    hl7 = Hl7Writer(out / "hl7", lambda *row: None)
    hl7.file_no = len(hl7_files)  # the lab system's batch and message numbers go on
    hl7.msg_no = sum(manifest["files"][n] for n in hl7_files)
    csvw = CsvWriter(out / "csv", lambda *row: None)
    per_feed: dict[str, int] = {"fhir": 0, "hl7": 0, "csv": 0}
    expected = out / "expected"
    fhir_name = f"Observation.{day:%Y%m%d}.ndjson"
    with (
        pin_zone(),
        open(out / "fhir" / fhir_name, "wb") as fhir,
        open(expected / "criteria.csv", "w", newline="") as f_crit,
        open(expected / "candidates.csv", "w", newline="") as f_cand,
        open(expected / "values.csv", "w", newline="") as f_val,
    ):
        w_crit = csv.writer(f_crit, lineterminator="\n")
        w_cand = csv.writer(f_cand, lineterminator="\n")
        w_val = csv.writer(f_val, lineterminator="\n")
        w_crit.writerow(EXPECTED_HEADERS["criteria.csv"])
        w_cand.writerow(EXPECTED_HEADERS["candidates.csv"])
        w_val.writerow(EXPECTED_HEADERS["values.csv"])
        for index in chosen:
            p = build_patient(seed, index, base_date)  # the record as the base drop has it
            new = new_results(seed, index, base_date, day)
            only_new = replace(p, obs=new)
            if p.lab_feed == "fhir":
                for i, o in enumerate(new):
                    line = orjson.dumps(observation_resource(o, f"Patient/{p.fhir_id}", i % 3))
                    fhir.write(line + b"\n")
            elif p.lab_feed == "hl7":
                hl7.write(only_new)
            else:
                csvw.write_labs(only_new)
            per_feed[p.lab_feed] += len(new)
            result = oracle.evaluate(replace(p, obs=[*p.obs, *new]), day)
            write_outcome(p.mrn, result, w_crit, w_cand, w_val)
    hl7.close()
    rows = csvw.close()
    for name, n in rows.items():  # an increment carries lab results only
        if n == 0:
            (out / name).unlink()
    files = {f"fhir/{fhir_name}": per_feed["fhir"], **hl7.counts}
    files.update((name, n) for name, n in rows.items() if n)
    if not per_feed["fhir"]:
        (out / "fhir" / fhir_name).unlink()
        del files[f"fhir/{fhir_name}"]
    summary = {
        "base": {k: v for k, v in key.items() if k != "complete"},
        "fingerprint": fingerprint(),
        "day": day.isoformat(),
        "share": share,
        "patients": len(chosen),
        "results_per_feed": per_feed,
        "files": dict(sorted(files.items())),
    }
    (expected / "increment.json").write_bytes(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return summary
