"""The flat CSV extract (docs/specification.md#csv-extract) in exactly the columns of
``csv_contract.CSV_FILES``.

Timestamps alternate between ``...Z`` and naive ISO text (naive = the hospital's wall clock,
``TRIALSCREEN_TIMEZONE``, as the contract reads it; docs/decisions.md "Local time"). A
condition with an extra coding (ICD-O-3 morphology beside the ICD-10-CM site) becomes one
row per code with the same statuses and onset, which is how flat extracts carry it.
Bad-record positions are 1-based data rows (the header is not counted).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from trialscreen.feeds.csv.contract import CSV_FILES
from trialscreen.synth.model import Obs, PatientRecord, iso_seconds, local_zone


def csv_ts(dt: datetime, naive: bool) -> str:
    if naive:  # a naive value is the hospital's wall clock
        return iso_seconds(dt.astimezone(local_zone()))
    return iso_seconds(dt.astimezone(UTC)) + "Z"


class CsvWriter:
    def __init__(
        self,
        root: Path,
        report_bad: Callable[[str, str, int, str, str], None],
        header: bool = True,
    ) -> None:
        """``header=False``: data rows only (a shard's piece, appended after the header)."""
        root.mkdir(parents=True, exist_ok=True)
        self.report_bad = report_bad
        self.files: dict[str, IO[str]] = {}
        self.writers: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        for stem, columns in CSV_FILES.items():
            fh = open(root / f"{stem}.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
            self.files[stem] = fh
            self.writers[stem] = csv.writer(fh, lineterminator="\n")
            if header:
                self.writers[stem].writerow(list(columns))
            self.rows[stem] = 0

    def _row(self, stem: str, values: dict[str, object]) -> int:
        self.writers[stem].writerow(
            ["" if values.get(c) is None else values[c] for c in CSV_FILES[stem]]
        )
        self.rows[stem] += 1
        return self.rows[stem]

    def _lab_row(self, p: PatientRecord, o: Obs, n: int) -> dict[str, object]:
        value = (
            f"{o.comparator or ''}{o.value}"
            if o.value is not None
            else (o.value_text if o.value_text is not None else (o.value_code_display or ""))
        )
        ref = f"{o.ref_low}-{o.ref_high}" if o.ref_low is not None and o.ref_high else None
        return {
            "mrn": p.mrn,
            "result_id": o.id,
            "loinc": None if o.local_code else o.loinc,
            "local_code": o.local_code,
            "test_name": o.display,
            "value": value,
            "unit": o.unit,
            "value_code": o.value_code,
            "value_code_system": (o.value_code_system or "snomed") if o.value_code else None,
            "ref_low": o.ref_low,
            "ref_high": o.ref_high,
            "ref_range": ref,
            "status": o.status,
            "order_id": o.order_id,
            "collected_at": csv_ts(o.effective, n % 3 == 1),
            "reported_at": csv_ts(o.issued, n % 3 == 1),
        }

    def write(self, p: PatientRecord, labs: bool) -> None:
        """Demographics and clinical entities; lab results too when ``labs``. A patient with a
        retired MRN: a patient row and the vitals under it, and the merge row."""
        for mrn in (p.mrn, p.retired_mrn) if p.retired_mrn else (p.mrn,):
            self._row(
                "patients",
                {
                    "mrn": mrn,
                    "family_name": p.family,
                    "given_name": p.given,
                    "birth_date": p.birth_date.isoformat(),
                    "sex": p.sex,
                },
            )
        if p.retired_mrn:
            self._row(
                "patient_merges",
                {"retired_mrn": p.retired_mrn, "surviving_mrn": p.mrn, "merged_at": "2020-01-01"},
            )
        for n, o in enumerate(p.obs):
            if o.bad is not None:
                continue
            naive = n % 3 == 1
            if o.kind in ("lab", "status"):
                if o.kind == "lab" and not labs:
                    continue
                self._row("lab_results", self._lab_row(p, o, n))
            elif o.kind == "vital":
                self._row(
                    "vitals",
                    {
                        "mrn": p.retired_mrn or p.mrn,
                        "vital_id": o.id,
                        "loinc": o.loinc,
                        "value": o.value,
                        "unit": o.unit,
                        "status": o.status,
                        "measured_at": csv_ts(o.effective, naive),
                    },
                )
            elif o.kind == "perf":
                scale = "ecog" if o.loinc == "89247-1" else (o.local_code or "karnofsky")
                self._row(
                    "performance_status",
                    {
                        "mrn": p.mrn,
                        "assessment_id": o.id,
                        "scale": scale,
                        "score": o.value,
                        "status": o.status,
                        "assessed_at": csv_ts(o.effective, naive),
                    },
                )
            elif o.kind == "tumor":
                self._row(
                    "tumor_measurements",
                    {
                        "mrn": p.mrn,
                        "measurement_id": o.id,
                        "size_value": o.value,
                        "size_unit": o.unit,
                        "method": o.method_code or o.method_text,
                        "body_site_code": o.body_site_code,
                        "body_site_text": o.body_site_text,
                        "short_axis_value": o.short_axis,
                        "status": o.status,
                        "measured_at": csv_ts(o.effective, naive),
                    },
                )
        for c in p.conditions:
            codes = [(c.system_uri or c.system, c.code, c.text or c.display)]
            codes += [(s, code, d) for s, code, d in c.extra_codings]
            for k, (system, code, display) in enumerate(codes):
                self._row(
                    "conditions",
                    {
                        "mrn": p.mrn,
                        "condition_id": c.id if k == 0 else f"{c.id}-{k}",
                        "code_system": system,
                        "code": code,
                        "display": display,
                        "clinical_status": c.clinical_status,
                        "verification_status": c.verification_status,
                        "onset_date": c.onset.isoformat(),
                        "recorded_date": c.onset.isoformat(),
                        "abatement_date": c.abatement.isoformat() if c.abatement else None,
                    },
                )
        for m in p.meds:
            self._row(
                "medications",
                {
                    "mrn": p.mrn,
                    "medication_id": m.id,
                    "record_type": m.record_type,
                    "code_system": m.system,
                    "code": m.code,
                    "name": m.name,
                    # a second coding (ATC beside an RxNorm product code); CSV has no
                    # medicationReference: a referenced drug's codes are the row's own
                    "alt_code_system": m.extra_codings[0][0] if m.extra_codings else None,
                    "alt_code": m.extra_codings[0][1] if m.extra_codings else None,
                    "intent": m.intent,
                    "status": m.status,
                    "start_date": csv_ts(m.start, False),
                    "end_date": csv_ts(m.end, False) if m.end else None,
                },
            )

    def write_labs(self, p: PatientRecord) -> None:
        """Only the lab results (a FHIR/HL7 patient whose lab feed is the CSV extract)."""
        for n, o in enumerate(p.obs):
            if o.kind == "lab" and o.bad is None:
                self._row("lab_results", self._lab_row(p, o, n))

    def write_bad(self, p: PatientRecord) -> None:
        for n, o in enumerate(p.obs):
            if o.bad is None or not o.bad.startswith("csv_"):
                continue
            row = self._lab_row(p, o, n)
            if o.bad == "csv_no_mrn":
                row["mrn"], why = None, "lab row without MRN"
            elif o.bad == "csv_bad_date":
                row["collected_at"], why = "2026-13-45T99:00", "unparseable collected_at"
            else:
                row["loinc"], row["local_code"], why = None, None, "lab row without a code"
            pos = self._row("lab_results", row)
            self.report_bad("csv", "csv/lab_results.csv", pos, o.id, why)

    def close(self) -> dict[str, int]:
        for fh in self.files.values():
            fh.close()
        return {f"csv/{stem}.csv": n for stem, n in self.rows.items()}
