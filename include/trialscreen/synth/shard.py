"""One shard of a population: the patients of one Observation part, written on their own.

A population of ``n`` patients is cut into parts of ``chunk`` patients (``generate``'s
``chunk_size``); part ``k`` holds patients ``(k - 1) * chunk`` up to ``k * chunk``. Every
patient depends only on ``(seed, index, screening_date)``, so a part can be drawn in any
process at any time. What a part cannot know is how many records the parts before it wrote,
so it writes *pieces* that ``generate`` joins in part order:

* its own ``fhir/Observation.<k>.ndjson[.gz]`` (final as written) and the bundle files
  (straight into the drop: one file per patient);
* the other FHIR NDJSON files, the CSV files and the four expected CSV files without
  headers (joined by appending, in part order);
* the HL7 messages as a spool of slim patient records (lab results only): a message's
  number decides its version, timestamp style, terminator and file, so the messages are
  rendered once, in order, when the parts are joined;
* ``part.json``: record counts, routes, candidate counts and the bad records (CSV
  positions relative to the part, HL7 ones as placeholders).

A part is written into a folder of the process's own (``part-<k>.<pid>.tmp``) that is
renamed to ``part-<k>`` when it is complete, so an interrupted part never looks complete
and is drawn again from scratch.
"""

from __future__ import annotations

import csv
import os
import pickle
import shutil
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import IO, Any

import orjson

from trialscreen.synth import oracle
from trialscreen.synth.expected import EXPECTED_FILES, write_outcome
from trialscreen.synth.model import PatientRecord, pin_zone
from trialscreen.synth.population import build_patient
from trialscreen.synth.writers.csv import CsvWriter
from trialscreen.synth.writers.fhir import FhirWriter

HL7_SPOOL = "hl7.spool"
PART_DONE = "part.json"


def part_dir(work: Path, part: int) -> Path:
    return work / f"part-{part:05d}"


class _Hl7Spool:
    """Keeps what the HL7 writer needs of a patient, in patient order, for the join."""

    def __init__(self, path: Path, bad_rows: list[list[Any]]) -> None:
        self.fh: IO[bytes] = open(path, "wb")  # noqa: SIM115
        self.bad_rows = bad_rows
        self.patients = 0

    def add(self, p: PatientRecord, write: bool) -> None:
        bad = any(o.bad == "hl7_no_pid" for o in p.obs)
        if not write and not bad:
            return
        slim = replace(p, obs=[o for o in p.obs if o.kind == "lab"], conditions=[], meds=[],
                       scenario={})  # fmt: skip
        pickle.dump((slim, write), self.fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.patients += 1
        if bad:  # the position and message id are known when the message is rendered
            self.bad_rows.append(["hl7", "", 0, "", "message without PID segment"])

    def close(self) -> None:
        self.fh.close()


def write_part(
    out: str, work: str, seed: int, screening_date: str, patients: int, chunk: int, part: int
) -> dict[str, Any]:
    """Draw part ``part`` of the population into ``work/part-<k>`` (bundles into ``out``) and
    return what ``part.json`` holds. Arguments are plain values: this runs in a pool."""
    s = date.fromisoformat(screening_date)
    final = part_dir(Path(work), part)
    here = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    if here.exists():
        shutil.rmtree(here)
    (here / "expected").mkdir(parents=True)
    bad_rows: list[list[Any]] = []

    def report_bad(feed: str, file: str, position: int, record_id: str, why: str) -> None:
        bad_rows.append([feed, file, position, record_id, why])

    fhir = FhirWriter(here / "fhir", report_bad, bundles=Path(out) / "fhir" / "bundles",
                      first_part=part)  # fmt: skip
    hl7 = _Hl7Spool(here / HL7_SPOOL, bad_rows)
    csvw = CsvWriter(here / "csv", report_bad, header=False)
    cand_counts: dict[str, Counter[str]] = {c: Counter() for c in oracle.CRITERIA}
    routes: Counter[str] = Counter()
    start, stop = (part - 1) * chunk, min(part * chunk, patients)
    names = [here / "expected" / n for n in EXPECTED_FILES]
    with (
        pin_zone(),
        open(names[0], "w", newline="") as f_crit,
        open(names[1], "w", newline="") as f_cand,
        open(names[2], "w", newline="") as f_val,
        open(names[3], "w", newline="") as f_scen,
    ):
        w_crit = csv.writer(f_crit, lineterminator="\n")
        w_cand = csv.writer(f_cand, lineterminator="\n")
        w_val = csv.writer(f_val, lineterminator="\n")
        w_scen = csv.writer(f_scen, lineterminator="\n")
        fhir.new_part()
        for index in range(start, stop):
            p = build_patient(seed, index, s)
            routes[p.route if not p.bundle else "fhir_bundle"] += 1
            if p.route == "fhir":
                fhir.write(p, clinical=True, labs=True)
            elif p.route == "fhir_hl7":
                fhir.write(p, clinical=True, labs=False)
            else:
                csvw.write(p, labs=p.lab_feed == "csv")
            fhir.write_bad(p)
            hl7.add(p, write=p.route == "fhir_hl7" or (p.route == "csv" and p.lab_feed == "hl7"))
            csvw.write_bad(p)
            if p.test_patient:  # never screened: no expected outcome
                continue
            result = oracle.evaluate(p, s)
            write_outcome(p.mrn, result, w_crit, w_cand, w_val)
            for cohort, status in result.candidates.items():
                cand_counts[cohort][status] += 1
            w_scen.writerow(
                [
                    p.mrn,
                    p.route,
                    p.lab_feed,
                    int(p.bundle),
                    orjson.dumps(p.scenario, option=orjson.OPT_SORT_KEYS).decode(),
                ]
            )
    fhir.close()
    hl7.close()
    summary = {
        "part": part,
        "first": start,
        "stop": stop,
        "files": {**fhir.counts, **csvw.close()},
        "hl7_patients": hl7.patients,
        "routes": dict(routes),
        "candidates": {c: dict(n) for c, n in cand_counts.items()},
        "bad_rows": bad_rows,
    }
    (here / PART_DONE).write_bytes(orjson.dumps(summary))
    if final.exists():  # drawn meanwhile by a process of an interrupted run: same bytes
        shutil.rmtree(final)
    os.rename(here, final)  # the part is complete only once it has its own name
    return summary
