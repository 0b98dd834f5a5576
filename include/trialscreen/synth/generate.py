"""Drive population -> writers -> oracle in chunks and write ``expected/``.

Routes (per patient, drawn from the seed): ``fhir`` (everything FHIR, ~10 % of them as a
transaction bundle), ``fhir_hl7`` (FHIR demographics and clinical data, labs as HL7), ``csv``
(the CSV extract, labs as HL7 or CSV). The MRN ties the feeds together.
"""

from __future__ import annotations

import csv
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson

from trialscreen.synth import oracle
from trialscreen.synth.population import build_patient
from trialscreen.synth.writers.csv import CsvWriter
from trialscreen.synth.writers.fhir import FhirWriter
from trialscreen.synth.writers.hl7 import Hl7Writer

GENERATOR_VERSION = "1.0.0"
OUTPUT_DIRS = ("fhir", "hl7", "csv", "expected")


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


def _fmt(v: float | int | None) -> str:
    if v is None:
        return ""
    if isinstance(v, int):
        return str(v)
    return f"{v:.4f}".rstrip("0").rstrip(".")


def generate(
    patients: int,
    seed: int,
    out: Path,
    screening_date: date,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a population of ``patients`` under ``out`` and its expected outcome.

    Same (patients, seed, screening_date) -> byte-identical files. Previous output in the
    four owned subfolders (fhir, hl7, csv, expected) is replaced.
    """
    started = time.perf_counter()
    out = Path(out)
    for sub in OUTPUT_DIRS:
        if (out / sub).exists():
            shutil.rmtree(out / sub)
    expected = out / "expected"
    expected.mkdir(parents=True)
    bad_rows: list[tuple[str, str, int, str, str]] = []

    def report_bad(feed: str, file: str, position: int, record_id: str, why: str) -> None:
        bad_rows.append((feed, file, position, record_id, why))

    fhir = FhirWriter(out / "fhir", report_bad)
    hl7 = Hl7Writer(out / "hl7", report_bad)
    csvw = CsvWriter(out / "csv", report_bad)
    chunk = max(250, math.ceil(patients / 20))
    cand_counts: dict[str, Counter[str]] = {c: Counter() for c in oracle.CRITERIA}
    routes: Counter[str] = Counter()

    with (
        open(expected / "criteria.csv", "w", newline="") as f_crit,
        open(expected / "candidates.csv", "w", newline="") as f_cand,
        open(expected / "values.csv", "w", newline="") as f_val,
        open(expected / "scenarios.csv", "w", newline="") as f_scen,
    ):
        w_crit = csv.writer(f_crit, lineterminator="\n")
        w_cand = csv.writer(f_cand, lineterminator="\n")
        w_val = csv.writer(f_val, lineterminator="\n")
        w_scen = csv.writer(f_scen, lineterminator="\n")
        w_crit.writerow(["mrn", "trial_id", "cohort_id", "criterion_id", "status", "reason",
                         "valid_until", "margin", "missing_item"])  # fmt: skip
        w_cand.writerow(["mrn", "trial_id", "cohort_id", "candidate_status", "rescreen_by",
                         "sole_missing_criterion"])  # fmt: skip
        w_val.writerow(["mrn", *oracle.VALUE_COLUMNS])
        w_scen.writerow(["mrn", "route", "lab_feed", "bundle", "scenario"])
        for start in range(0, patients, chunk):
            fhir.new_part()
            for index in range(start, min(start + chunk, patients)):
                p = build_patient(seed, index, screening_date)
                routes[p.route if not p.bundle else "fhir_bundle"] += 1
                if p.route == "fhir":
                    fhir.write(p, clinical=True, labs=True)
                elif p.route == "fhir_hl7":
                    fhir.write(p, clinical=True, labs=False)
                    hl7.write(p)
                else:
                    csvw.write(p, labs=p.lab_feed == "csv")
                    if p.lab_feed == "hl7":
                        hl7.write(p)
                fhir.write_bad(p)
                hl7.write_bad(p)
                csvw.write_bad(p)
                if p.test_patient:  # never screened: no expected outcome
                    continue
                result = oracle.evaluate(p, screening_date)
                for cohort, cid, status, reason in result.criteria:
                    co = result.coordination[cid]
                    w_crit.writerow(
                        [p.mrn, oracle.TRIAL_ID, cohort, cid, status, reason,
                         co.valid_until or "", _fmt(co.margin), co.missing_item or ""]
                    )  # fmt: skip
                for cohort, status in result.candidates.items():
                    w_cand.writerow(
                        [p.mrn, oracle.TRIAL_ID, cohort, status,
                         result.rescreen_by[cohort] or "", result.sole_missing[cohort] or ""]
                    )  # fmt: skip
                    cand_counts[cohort][status] += 1
                w_val.writerow([p.mrn, *(_fmt(result.values[c]) for c in oracle.VALUE_COLUMNS)])
                w_scen.writerow(
                    [
                        p.mrn,
                        p.route,
                        p.lab_feed,
                        int(p.bundle),
                        orjson.dumps(p.scenario, option=orjson.OPT_SORT_KEYS).decode(),
                    ]
                )
            if progress is not None:
                progress(min(start + chunk, patients))

    fhir.close()
    hl7.close()
    files = {**fhir.counts, **hl7.counts, **csvw.close()}
    with open(expected / "bad_records.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["feed", "file", "position", "record_id", "reason"])
        w.writerows(bad_rows)
    candidates = {c: dict(sorted(n.items())) for c, n in cand_counts.items()}
    per_feed: dict[str, int] = Counter()
    for name, n in files.items():
        per_feed[name.split("/", 1)[0]] += n
    manifest = {
        "generator": "trialscreen.synth",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "patients": patients,
        "screening_date": screening_date.isoformat(),
        "trial_id": oracle.TRIAL_ID,
        "routes": dict(sorted(routes.items())),
        "records_per_feed": dict(sorted(per_feed.items())),
        "files": dict(sorted(files.items())),
        "bad_records": len(bad_rows),
        "bad_records_per_feed": dict(sorted(Counter(r[0] for r in bad_rows).items())),
        "candidates": candidates,
        "institutional_uln": oracle.INSTITUTIONAL_ULN,
    }
    (expected / "manifest.json").write_bytes(
        orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    )
    return SynthSummary(
        out=out,
        patients=patients,
        seed=seed,
        screening_date=screening_date,
        files=dict(sorted(files.items())),
        bad_records=len(bad_rows),
        candidates=candidates,
        routes=dict(sorted(routes.items())),
        seconds=time.perf_counter() - started,
    )
