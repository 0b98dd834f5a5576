"""No MRN, name or birth date leaves the PHI schemas (docs/specification.md#phi-rules: "No log line
carries an MRN, a
name or a birth date"; §8: Data Docs and reports are static HTML that people pass around).

One generated population — plus a few hand-made bad records carrying PHI, so that quarantine
and its error messages are exercised — goes through the whole pipeline (ingest → dbt → Great
Expectations → publish → reports) with every logger at DEBUG. Then the population's MRNs,
family and given names and birth dates are searched for in

* every log line: trialscreen's JSON log (``logs.configure(verbosity=2)``), the root logger
  (dbt, Great Expectations, SQLAlchemy ... at DEBUG; GX's own loggers are not quietened) and
  whatever dbt prints on stdout/stderr;
* every file under the reports directory: the report HTML/JSON, the index and all of the
  Great Expectations Data Docs;
* dbt's log and target directory of the run (the build step is pointed at a kept directory);
* ``quarantine.records.error``, ``audit.pipeline_runs.message``/``validation_result`` and every
  text column of the published ``marts`` schema (pseudonymized by contract).

Matching is word-boundary safe: MRNs as whole tokens, names of 4+ characters (case-sensitive,
bounded by non-alphanumerics), birth dates as YYYY-MM-DD and YYYYMMDD; JSON escapes
(``M\\u00fcller``) and HTML entities (``O&#x27;Brien``) are decoded before searching.

The Airflow task log is not checked here: tasks call the same functions and log through the
same loggers; the DAG tests cover the Airflow side.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import html
import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from trialscreen import logs, pseudonym, schema
from trialscreen.pipeline import run_pipeline
from trialscreen.synth import generate
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # whole pipeline on a generated population

KEY = "phi-hygiene-test-key"
SCREENING_DATE = date(2026, 11, 20)
PATIENTS, SEED = 120, 37  # the generator writes a bad record for patient 37 of each 150
MIN_NAME = 4

# hand-made records: PHI that must end up in raw/quarantine and nowhere else
EXTRA_CSV_PATIENTS = (
    "mrn,family_name,given_name,birth_date,sex,deceased_at\n"
    "MRNX000901,Quaresma,Bartholomew,1955-03-14,male,\n"
    "MRNX000902,Vandersloot,Evangeline,14/03/1957,female,\n"  # bad date -> quarantined
    ",Achterberg,Wilhelmina,1949-07-30,female,\n"  # no MRN -> quarantined
)
EXTRA_CSV_BROKEN = 'mrn,family_name,given_name,birth_date\n"MRNX000903,Fairweather,"Ottoline\n'
EXTRA_FHIR_PATIENTS = "\n".join(
    [
        json.dumps(
            {
                "resourceType": "Patient",
                "id": "phi-extra-1",
                "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRNX000904"}],
                "name": [{"family": "Zimmermann", "given": ["Theodora"]}],
                "gender": "female",
                "birthDate": "1962-31-12",  # not a date -> quarantined
            }
        ),
        '{"resourceType":"Patient","id":"phi-extra-2","name":[{"family":"Kettleborough"',
        json.dumps(
            {
                "resourceType": "Patient",
                "id": "phi-extra-3",
                "name": [{"family": "Pennywhistle", "given": ["Cordelia"]}],  # no identifier
                "birthDate": "1971-04-09",
            }
        ),
    ]
)
EXTRA_HL7 = "\r".join(
    [
        "MSH|^~\\&|LAB|HOSP|TRIALSCREEN|HOSP|20261110090000||ORU^R01|PHIX0001|P|2.5.1",
        "PID|1||MRNX000905^^^HOSP^MR||Montgomery^Seraphina||19580217|F",
        "OBR|1|PLX1|ORDX1^LAB|LABPANEL^Lab panel^L|||notatime",
        "OBX|1|NM|718-7^Hemoglobin^LN||12.1|g/dL|||||F|||notatime",
        "OBX|2|NM|||13.0|g/dL|||||F|||20261110080000",
    ]
)

# free text from source records that carries PHI and markup (docs/decisions.md, "Free text
# from source records"): it may reach `restricted` but never the analysts' marts, the report,
# Data Docs, logs, audit rows or quarantine errors. Every payload carries the marker XSS.
XSS = "tsxss"


def _script(n: int) -> str:
    return f"<script>{XSS}({n})</script>"


def _csv(header: str, *rows: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header.split(","))
    writer.writerows(rows)
    return out.getvalue()


# CSV patient MRNX000901 Quaresma Bartholomew 1955-03-14 (loaded above) gets free text with
# his own PHI in every free-text column of every CSV entity
PHI_901 = "Quaresma Bartholomew 1955-03-14 MRNX000901"
EXTRA_CSV_FREE_TEXT = {
    "conditions.extra.csv": _csv(
        "mrn,condition_id,code_system,code,display,clinical_status,verification_status,"
        "onset_date,recorded_date,abatement_date",
        [
            "MRNX000901",
            "phix-c1",
            "icd-10-cm",
            "C49.1",
            f"sarcoma {_script(1)} {PHI_901}",
            "active",
            "confirmed",
            "2025-01-10",
            "2025-01-10",
            "",
        ],
        [
            "MRNX000901",
            "phix-c2",
            "local",
            "X1",
            f"alveolar soft part sarcoma {_script(2)} {PHI_901}",
            "active",
            "confirmed",
            "2025-01-11",
            "2025-01-11",
            "",
        ],
        [
            "MRNX000901",
            "phix-c3",
            "icd-10-cm",
            "C78.0",
            f"lung mets {_script(3)} {PHI_901}",
            "active",
            "confirmed",
            "2025-03-01",
            "2025-03-01",
            "",
        ],
        [
            "MRNX000901",
            "phix-c4",
            "icd-10-cm",
            "B20",
            f"HIV {_script(4)} {PHI_901}",
            "active",
            "confirmed",
            "2020-01-01",
            "2020-01-01",
            "",
        ],
        [
            "MRNX000901",
            "phix-c5",
            "icd-10-cm",
            "R13.10",
            f"dysphagia {_script(5)} {PHI_901}",
            "active",
            "confirmed",
            "2026-01-01",
            "2026-01-01",
            "",
        ],
        [
            "MRNX000901",
            "phix-c6",
            "local",
            "X2",
            f"disease progression {_script(6)} {PHI_901}",
            "active",
            "confirmed",
            "2026-06-01",
            "2026-06-01",
            "",
        ],
    ),
    "medications.extra.csv": _csv(
        "mrn,medication_id,record_type,code_system,code,name,status,start_date,end_date",
        [
            "MRNX000901",
            "phix-m1",
            "request",
            "atc",
            "L01FF02",
            f"pembrolizumab {_script(7)} {PHI_901}",
            "completed",
            "2025-02-01T00:00:00Z",
            "",
        ],
        [
            "MRNX000901",
            "phix-m2",
            "statement",
            "atc",
            "J05AF07",
            f"tenofovir {_script(8)} {PHI_901}",
            "active",
            "2020-02-01T00:00:00Z",
            "",
        ],
    ),
    "lab_results.extra.csv": _csv(
        "mrn,result_id,loinc,local_code,test_name,value,unit,value_code,value_code_system,"
        "ref_low,ref_high,ref_range,abnormal_flag,status,order_id,collected_at,reported_at",
        [
            "MRNX000901",
            "phix-l1",
            "751-8",
            "",
            f"ANC {_script(9)} {PHI_901}",
            f"{_script(10)} {PHI_901}",
            "",
            "",
            "",
            "",
            "",
            f"{_script(11)} {PHI_901}",
            "",
            "final",
            "",
            "2026-11-10T08:00:00Z",
            "",
        ],
        [
            "MRNX000901",
            "phix-l2",
            "1742-6",
            "",
            "ALT",
            "30",
            _script(12),
            "",
            "",
            "",
            "",
            "",
            "",
            "final",
            "",
            "2026-11-10T08:00:00Z",
            "",
        ],
        [
            "MRNX000901",
            "phix-l3",
            "1920-8",
            "",
            "AST",
            "30",
            "U/L",
            "",
            "",
            "",
            "",
            "",
            "",
            _script(13),
            "",
            "2026-11-10T08:00:00Z",
            "",
        ],
    ),
    "tumor_measurements.extra.csv": _csv(
        "mrn,measurement_id,size_value,size_unit,method,body_site_code,body_site_text,status,"
        "measured_at",
        [
            "MRNX000901",
            "phix-t1",
            "25",
            "mm",
            f"{_script(14)} {PHI_901}",
            "",
            f"{_script(15)} {PHI_901}",
            "final",
            "2026-11-01T00:00:00Z",
        ],
    ),
}
# a FHIR patient whose free texts carry PHI: valueString, code.text, Condition code.text and
# display, medication text and display
PHI_906 = "Throckmorton Ermengarde 1960-05-06 MRNX000906"
_SUBJECT_906 = {"reference": "Patient/phi-extra-4"}
EXTRA_FHIR_PATIENT_906 = {
    "resourceType": "Patient",
    "id": "phi-extra-4",
    "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": "MRNX000906"}],
    "name": [{"family": "Throckmorton", "given": ["Ermengarde"]}],
    "gender": "female",
    "birthDate": "1960-05-06",
}
EXTRA_FHIR_FREE_TEXT = {
    "Observation.9.ndjson": [
        {
            "resourceType": "Observation",
            "id": "phix-o1",
            "status": "final",
            "category": [{"coding": [{"code": "laboratory"}]}],
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "751-8", "display": _script(16)}],
                "text": f"{_script(17)} {PHI_906}",
            },
            "subject": _SUBJECT_906,
            "effectiveDateTime": "2026-11-12T08:00:00Z",
            "valueString": f"{_script(18)} {PHI_906}",
            "referenceRange": [{"text": f"{_script(19)} {PHI_906}"}],
        },
        {
            "resourceType": "Observation",
            "id": "phix-o2",
            "status": f"{_script(20)}",
            "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
            "subject": _SUBJECT_906,
            "effectiveDateTime": "2026-11-12T08:00:00Z",
            "valueQuantity": {"value": 13.1, "unit": "g/dL"},
        },
    ],
    "Condition.9.ndjson": [
        {
            "resourceType": "Condition",
            "id": "phix-fc1",
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/sid/icd-10-cm",
                        "code": "C49.2",
                        "display": f"{_script(21)} {PHI_906}",
                    }
                ],
                "text": f"alveolar soft part sarcoma {_script(22)} {PHI_906}",
            },
            "subject": _SUBJECT_906,
            "onsetDateTime": "2025-05-01T00:00:00Z",
        }
    ],
    "MedicationRequest.9.ndjson": [
        {
            "resourceType": "MedicationRequest",
            "id": "phix-fm1",
            "status": "completed",
            "intent": "order",
            "medicationCodeableConcept": {
                "text": f"Keytruda {_script(23)} {PHI_906}",
                "coding": [
                    {
                        "system": "http://www.whocc.no/atc",
                        "code": "L01FF02",
                        "display": f"{_script(24)} {PHI_906}",
                    }
                ],
            },
            "subject": _SUBJECT_906,
            "authoredOn": "2025-06-01T00:00:00Z",
        }
    ],
}


def _obx(set_id: int, fields: dict[int, str]) -> str:
    """An OBX segment from {field number: value} (OBX-14 is the observation time)."""
    values = [fields.get(i, "") for i in range(1, 15)]
    values[0] = str(set_id)
    return "|".join(["OBX", *values])


_HL7_PHI = "Fitzwilliam Araminta 19630822 MRNX000907"
_AT = "20261110080000"
# an HL7 patient: OBX-5 ST text, OBX-11, CE texts, OBX-6 unit text, NTE with name/DOB/MRN
EXTRA_HL7_FREE_TEXT = "\r".join(
    [
        "MSH|^~\\&|LAB|HOSP|TRIALSCREEN|HOSP|20261110090000||ORU^R01|PHIX0002|P|2.5.1",
        "PID|1||MRNX000907^^^HOSP^MR||Fitzwilliam^Araminta||19630822|F",
        f"OBR|1|PLX2|ORDX2^LAB|LABPANEL^{_script(25)} Fitzwilliam^L|||{_AT}",
        _obx(
            1,
            {
                2: "ST",
                3: f"751-8^{_script(26)} Fitzwilliam^LN",
                5: f"{_script(27)} {_HL7_PHI}",
                7: f"{_script(28)} 19630822",
                11: "F",
                14: _AT,
            },
        ),
        f"NTE|1||Called {_HL7_PHI} {_script(29)}",
        _obx(
            2,
            {
                2: "NM",
                3: "1742-6^ALT^LN",
                5: "31",
                6: f"{_script(30)}^{_script(31)}^L",
                11: _script(32),
                14: _AT,
            },
        ),
        _obx(3, {2: "NM", 3: "1920-8^AST^LN", 5: "29", 6: "U/L", 11: _HL7_PHI, 14: _AT}),
        _obx(
            4,
            {
                2: "CE",
                3: "97509-4^Disease status^LN",
                5: f"271299001^{_script(33)} Araminta^SCT",
                11: "F",
                14: _AT,
            },
        ),
    ]
)
# file names carrying PHI (Synthea names its files after the patient; senders do worse)
PHI_FILE_NAMES = {
    "csv/Quaresma_Bartholomew_1955-03-14_MRNX000901.csv": "mrn,family_name\nMRNX000901,Q\n",
    "csv/conditions_Quaresma_1955-03-14.csv": "not,a,contract\n1,2,3\n",
    "fhir/Quaresma_Bartholomew_1955-03-14_MRNX000901.json": '{"resourceType": "Bundle", ',
    "hl7/Fitzwilliam_Araminta_19630822_MRNX000907.hl7": "MSH|broken\rPID|1||x\r",
}


# --- the run -----------------------------------------------------------------------------------


class _ListHandler(logging.Handler):
    """What pytest's caplog does, for a module-scoped fixture: keep every formatted record."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is still searched raw
            self.lines.append(f"{record.name} {record.msg!r} {record.args!r}")


@contextlib.contextmanager
def _everything_at_debug(mp: pytest.MonkeyPatch) -> Iterator[tuple[io.StringIO, _ListHandler]]:
    import trialscreen.validate.runner as validate_module

    stream = io.StringIO()
    handler = _ListHandler()
    root = logging.getLogger()
    names = ("", "dbt", "great_expectations", "sqlalchemy", "py.warnings")
    saved = {n: logging.getLogger(n).level for n in names}
    original_quiet = validate_module._quiet_gx

    def loud_gx() -> None:  # keep GX analytics off, but let its loggers talk
        original_quiet()
        logging.getLogger("great_expectations").setLevel(logging.DEBUG)

    mp.setattr(validate_module, "_quiet_gx", loud_gx)
    logs.configure(verbosity=2, stream=stream)
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield stream, handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        logs.configure(verbosity=0)


def _add_bad_records(drop: Path) -> None:
    (drop / "csv" / "patients.extra.csv").write_text(EXTRA_CSV_PATIENTS, encoding="utf-8")
    (drop / "csv" / "patients.broken.csv").write_text(EXTRA_CSV_BROKEN, encoding="utf-8")
    (drop / "fhir" / "Patient.9.ndjson").write_text(EXTRA_FHIR_PATIENTS + "\n", encoding="utf-8")
    (drop / "hl7" / "phi_extra.hl7").write_text(EXTRA_HL7 + "\r", encoding="utf-8")
    for name, text in EXTRA_CSV_FREE_TEXT.items():
        (drop / "csv" / name).write_text(text, encoding="utf-8")
    with (drop / "fhir" / "Patient.9.ndjson").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(EXTRA_FHIR_PATIENT_906) + "\n")
    for name, resources in EXTRA_FHIR_FREE_TEXT.items():
        lines = "".join(json.dumps(r) + "\n" for r in resources)
        (drop / "fhir" / name).write_text(lines, encoding="utf-8")
    (drop / "hl7" / "phi_free_text.hl7").write_text(EXTRA_HL7_FREE_TEXT + "\r", encoding="utf-8")
    for name, text in PHI_FILE_NAMES.items():
        (drop / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import trialscreen.transform as transform

    root = tmp_path_factory.mktemp("phi")
    drop, reports, dbt_dir = root / "drop", root / "reports", root / "dbt_artifacts"
    generate(patients=PATIENTS, seed=SEED, out=drop, screening_date=SCREENING_DATE)
    _add_bad_records(drop)
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    # keep dbt's log and target directories (the pipeline uses a temporary one)
    mp.setattr(
        transform,
        "seed_and_build",
        functools.partial(transform.seed_and_build, artifacts_dir=dbt_dir),
    )
    out, err = io.StringIO(), io.StringIO()
    try:
        with (
            _everything_at_debug(mp) as (stream, handler),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            result = run_pipeline(drop, SCREENING_DATE, root / "wh.duckdb", reports_dir=reports)
    finally:
        mp.undo()
    assert result.published, result.message
    return {
        "root": root,
        "drop": drop,
        "warehouse": root / "wh.duckdb",
        "reports": reports,
        "dbt": dbt_dir,
        "result": result,
        "trialscreen_log": stream.getvalue(),
        "root_log": handler.lines,
        "console": out.getvalue() + err.getvalue(),
    }


# --- the population's PHI ----------------------------------------------------------------------


def _fhir_patients(drop: Path) -> Iterator[dict[str, Any]]:
    for path in sorted((drop / "fhir").rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".ndjson":
            docs = []
            for line in text.splitlines():
                with contextlib.suppress(ValueError):
                    docs.append(json.loads(line))
        else:
            with contextlib.suppress(ValueError):
                bundle = json.loads(text)
                docs = [e.get("resource") or {} for e in bundle.get("entry") or []]
        for doc in docs:
            if isinstance(doc, dict) and doc.get("resourceType") == "Patient":
                yield doc


def _fhir_mrn(patient: dict[str, Any]) -> str:
    """docs/specification.md#fhir-r4: the identifier typed MR, else the first."""
    identifiers = [i for i in patient.get("identifier") or [] if isinstance(i, dict)]
    for ident in identifiers:
        codes = [c.get("code") for c in (ident.get("type") or {}).get("coding") or []]
        if "MR" in codes:
            return str(ident.get("value") or "")
    return str(identifiers[0].get("value") or "") if identifiers else ""


def _phi_from_drop(drop: Path) -> dict[str, set[str]]:
    mrns: set[str] = set()
    names: set[str] = set()
    births: set[str] = set()
    for p in _fhir_patients(drop):
        mrns.add(_fhir_mrn(p))
        for n in p.get("name") or []:
            names.add(n.get("family") or "")
            names |= set(n.get("given") or [])
        births.add(p.get("birthDate") or "")
    for path in (drop / "csv").glob("patients*.csv"):
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            for row in csv.DictReader(fh):
                mrns.add(row.get("mrn") or "")
                names |= {row.get("family_name") or "", row.get("given_name") or ""}
                births.add(row.get("birth_date") or "")
    for path in (drop / "hl7").rglob("*"):
        if not path.is_file():
            continue
        for segment in re.split(r"[\r\n]+", path.read_text(encoding="utf-8", errors="replace")):
            fields = segment.lstrip("\ufeff\x0b").split("|")
            if fields[0] != "PID" or len(fields) < 8:
                continue
            mrns |= {rep.split("^")[0] for rep in fields[3].split("~")}
            names |= set(fields[5].split("^")[:2])
            births.add(fields[7][:8])
    return {"mrns": mrns, "names": names, "births": births}


def _phi_from_warehouse(path: Path) -> dict[str, set[str]]:
    sql = " union all ".join(
        f"select mrn, family_name, given_name, cast(birth_date as varchar) "
        f"from raw.{schema.raw_table(feed, 'patients')}"
        for feed in schema.FEEDS
    )
    with Warehouse.connect(path) as wh:
        rows = wh.query(sql)
    return {
        "mrns": {r[0] for r in rows if r[0]},
        "names": {v for r in rows for v in r[1:3] if v},
        "births": {r[3] for r in rows if r[3]},
    }


def _birth_forms(value: str) -> set[str]:
    """A valid birth date as YYYY-MM-DD and YYYYMMDD; anything else is not a date."""
    digits = re.sub(r"[^0-9]", "", value)
    if len(digits) != 8:
        return set()
    try:
        day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return set()
    return {day.isoformat(), day.strftime("%Y%m%d")}


@pytest.fixture(scope="module")
def phi(run) -> dict[str, set[str]]:
    found = _phi_from_drop(run["drop"])
    landed = _phi_from_warehouse(run["warehouse"])
    mrns = {m.strip() for m in found["mrns"] | landed["mrns"] if m and len(m.strip()) >= 4}
    names = {n.strip() for n in found["names"] | landed["names"] if len(n.strip()) >= MIN_NAME}
    births = {f for b in found["births"] | landed["births"] if b for f in _birth_forms(b)}
    # the search has something real to find, including the hand-made records
    assert len(mrns) >= PATIENTS, len(mrns)
    assert {"MRNX000901", "MRNX000902", "MRNX000904", "MRNX000905"} <= mrns
    assert {"Quaresma", "Wilhelmina", "Zimmermann", "Seraphina", "Pennywhistle"} <= names
    assert {"1955-03-14", "19580217"} <= births
    # generated MRNs do not collide with synthea ids etc.: each is its own token
    return {"mrns": mrns, "names": names, "births": births}


# --- searching ---------------------------------------------------------------------------------


_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")  # inside a line that is not whole JSON


class PhiMatcher:
    """One regex over every value; a hit must stand alone (no letter or digit either side)."""

    def __init__(self, values: Iterable[str]) -> None:
        alternatives = sorted({v for v in values if v}, key=len, reverse=True)
        self.pattern = re.compile(
            r"(?<![^\W_])(?:" + "|".join(re.escape(v) for v in alternatives) + r")(?![^\W_])"
        )

    def find(self, text: str) -> set[str]:
        variants = {text, html.unescape(text)}
        with contextlib.suppress(ValueError):  # JSON escapes: M\u00fcller, O\u0027Brien
            variants.add(json.dumps(json.loads(text), ensure_ascii=False))
        variants |= {_UNICODE_ESCAPE.sub(lambda m: chr(int(m[1], 16)), v) for v in list(variants)}
        return {m.group(0) for v in variants for m in self.pattern.finditer(v)}


@pytest.fixture(scope="module")
def matcher(phi) -> PhiMatcher:
    return PhiMatcher(phi["mrns"] | phi["names"] | phi["births"])


def _leaks(matcher: PhiMatcher, items: Iterable[tuple[str, str]]) -> list[str]:
    leaks = []
    for where, text in items:
        hits = matcher.find(text)
        if hits:
            leaks.append(f"{where}: {sorted(hits)[:5]}")
    return leaks


def _files(folder: Path, binary: list[str] | None = None) -> Iterator[tuple[str, str]]:
    """Every file under ``folder`` as text; with ``binary`` given, files with NUL bytes are
    listed there instead of searched."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        name, data = str(path.relative_to(folder)), path.read_bytes()
        if binary is not None and b"\x00" in data:
            binary.append(name)
            continue
        yield name, data.decode("utf-8", errors="replace")


# --- the tests ---------------------------------------------------------------------------------


def test_the_matcher_finds_phi_it_should_and_nothing_else(matcher, phi) -> None:
    mrn = sorted(phi["mrns"])[0]
    assert matcher.find(f'{{"msg": "loaded {mrn}"}}') == {mrn}
    assert matcher.find(json.dumps({"msg": "Quaresma"})) == {"Quaresma"}
    assert matcher.find("<td>1955-03-14</td>") == {"1955-03-14"}
    assert matcher.find("<td>Zimmermann&#x27;s</td>") == {"Zimmermann"}
    escaped = PhiMatcher(["Müller", "O'Brien"])
    assert escaped.find('row=("M\\u00fcller", 1) {"msg": "O\\u0027Brien"') == {"Müller", "O'Brien"}
    assert escaped.find(json.dumps({"msg": "Müller"})) == {"Müller"}
    assert matcher.find(f"{mrn}0 X{mrn} Quaresmas 1955-03-145") == set()


def test_logs_were_captured_at_debug(run) -> None:
    lines = run["trialscreen_log"].splitlines()
    messages = {json.loads(line)["msg"] for line in lines}
    assert {"feed ingested", "validation finished", "published", "run finished"} <= messages
    assert logging.getLogger("trialscreen").getEffectiveLevel() == logging.WARNING  # restored
    assert len(run["root_log"]) > 0, "the root logger captured nothing"


def test_no_log_line_carries_phi(run, matcher) -> None:
    lines = [("trialscreen", line) for line in run["trialscreen_log"].splitlines()]
    lines += [("root", line) for line in run["root_log"]]
    lines += [("console", line) for line in run["console"].splitlines()]
    assert _leaks(matcher, lines) == []


def test_reports_and_data_docs_carry_no_phi(run, matcher) -> None:
    binary: list[str] = []
    files = list(_files(run["reports"], binary))
    names = [name for name, _ in files]
    assert any(n.endswith("report.html") for n in names)
    assert any("data_docs" in n and "validations" in n and n.endswith(".html") for n in names)
    # the only binary files are the fonts and images GX ships with every Data Docs site (a
    # font's metadata names its designer, "Marco ...", which is also a generated given name)
    site_static = "data_docs/gx/uncommitted/data_docs/local_site/static/"
    assert all(n.startswith(site_static) for n in binary), binary
    assert _leaks(matcher, files) == []


def test_dbt_logs_and_artifacts_carry_no_phi(run, matcher) -> None:
    files = list(_files(run["dbt"]))  # binary ones too (target/graph.gpickle)
    assert any(name.endswith("dbt.log") for name, _ in files)
    assert any(name.endswith("run_results.json") for name, _ in files)
    assert _leaks(matcher, files) == []


def test_quarantine_errors_and_run_rows_carry_no_phi(run, matcher) -> None:
    with Warehouse.connect(run["warehouse"]) as wh:
        quarantine = wh.query("select source_file, source_position, error from quarantine.records")
        runs = wh.query("select message, validation_result, feed_counts from audit.pipeline_runs")
    files = {r[0] for r in quarantine}
    # the hand-made bad records really reached quarantine (so their errors were searched)
    assert {"csv/patients.extra.csv", "csv/patients.broken.csv", "fhir/Patient.9.ndjson"} <= files
    assert "hl7/phi_extra.hl7" in files
    items = [(f"quarantine {f}:{p}", e or "") for f, p, e in quarantine]
    items += [("audit.pipeline_runs", " ".join(str(v or "") for v in r)) for r in runs]
    assert _leaks(matcher, items) == []


# criterion_evaluations.evidence_id of the `age` criterion is the patient record's id, which
# for the CSV feed (no separate patient id in the contract) is the MRN itself
KNOWN_MRN_COLUMNS = {("criterion_evaluations", "evidence_id")}


def _marts_text(run, columns_wanted) -> list[tuple[str, str]]:
    with Warehouse.connect(run["warehouse"]) as wh:
        columns = wh.query(
            "select table_name, column_name from information_schema.columns "
            "where table_schema = 'marts' and data_type in ('VARCHAR', 'TEXT') "
            "order by table_name, column_name"
        )
        assert columns, "no text column in marts"
        items = []
        for table, column in columns:
            if not columns_wanted((table, column)):
                continue
            values = wh.query(f"select distinct {column} from marts.{table}")
            items += [(f"marts.{table}.{column}", str(v[0])) for v in values if v[0] is not None]
    assert items
    return items


def test_published_marts_carry_no_phi(run, matcher) -> None:
    items = _marts_text(run, lambda tc: tc not in KNOWN_MRN_COLUMNS)
    assert _leaks(matcher, items) == []


def test_marts_evidence_ids_carry_no_mrn(run, matcher) -> None:
    items = _marts_text(run, lambda tc: tc in KNOWN_MRN_COLUMNS)
    assert _leaks(matcher, items) == []


# --- free text from source records and markup ------------------------------------------------


def _analysts_outputs(run) -> list[tuple[str, str]]:
    """Everything an analyst (or whoever they pass it to) reads: logs, console, the reports
    directory (report, index, Data Docs), dbt artifacts, audit rows, quarantine errors and
    every text column of the published marts."""
    items = [("trialscreen", line) for line in run["trialscreen_log"].splitlines()]
    items += [("root", line) for line in run["root_log"]]
    items += [("console", line) for line in run["console"].splitlines()]
    items += [(f"reports/{n}", t) for n, t in _files(run["reports"], [])]
    items += [(f"dbt/{n}", t) for n, t in _files(run["dbt"])]
    with Warehouse.connect(run["warehouse"]) as wh:
        items += [
            ("quarantine.error", str(e or ""))
            for (e,) in wh.query("select error from quarantine.records")
        ]
        items += [
            ("audit.pipeline_runs", " ".join(str(v or "") for v in r))
            for r in wh.query(
                "select message, validation_result, feed_counts from audit.pipeline_runs"
            )
        ]
    items += _marts_text(run, lambda tc: True)
    return items


def test_free_text_inputs_landed_in_raw(run) -> None:
    """The markup and PHI sent in free-text fields really reached raw (so the searches below
    had something to find)."""
    with Warehouse.connect(run["warehouse"]) as wh:
        raw = {
            f"{feed}.{column}": int(
                wh.scalar(f"select count(*) from raw.{feed}_{entity} where {column} like '%{XSS}%'")
            )
            for feed, entity, column in [
                ("csv", "conditions", "code_display"),
                ("csv", "medications", "code_text"),
                ("csv", "observations", "value_text"),
                ("fhir", "observations", "value_text"),
                ("fhir", "conditions", "code_text"),
                ("fhir", "medications", "code_text"),
                ("hl7", "observations", "value_text"),
                ("hl7", "observations", "status"),
            ]
        }
    assert all(raw.values()), raw


def test_no_free_text_from_source_records_reaches_analysts(run) -> None:
    """docs/decisions.md "Free text from source records": never in marts, the report, Data
    Docs, logs, audit rows or quarantine errors (escaped or not)."""
    leaks = [
        f"{where}: ...{text[max(0, text.find(XSS) - 60) : text.find(XSS) + 30]}..."
        for where, text in _analysts_outputs(run)
        if XSS in text
    ]
    assert leaks == [], "\n".join(leaks[:20])


def test_no_html_output_renders_markup_from_data(run) -> None:
    pages = [(n, t) for n, t in _files(run["reports"], []) if n.endswith((".html", ".htm"))]
    assert any(n.endswith("report.html") for n, _ in pages)
    unescaped = [n for n, t in pages if f"<script>{XSS}" in t.lower()]
    assert unescaped == []


def test_only_the_restricted_worklist_carries_identities(run, matcher) -> None:
    """Issue 12: the coordinators' worklist (page and snapshot) names patients, so it lives in
    its own directory beside the reports (never inside them), 0700 with 0600 files, and
    escapes markup from data; the reports and Data Docs above stay free of PHI."""
    folder = run["root"] / "worklist"
    files = dict(_files(folder, []))
    pages = [t for n, t in files.items() if n.endswith("worklist.html")]
    assert len(pages) == 1, sorted(files)
    assert matcher.find(pages[0]), "the worklist names no patient"
    assert f"<script>{XSS}" not in pages[0].lower()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.rglob("*") if p.is_file())
    assert not folder.resolve().is_relative_to(run["reports"].resolve())


def test_coordinators_still_see_the_source_text(run) -> None:
    """The coordinator-facing reason in `restricted` quotes the source text the analysts'
    reason only names (docs/decisions.md)."""
    with Warehouse.connect(run["warehouse"]) as wh:
        details = wh.query(
            "select criterion_id, reason, reason_detail from restricted.criterion_evidence "
            f"where reason_detail like '%{XSS}%'"
        )
    assert {r[0] for r in details} >= {"diagnosis_asps", "ici_refractory_progression"}
    assert all(XSS not in r[1] for r in details)


# --- database error texts ----------------------------------------------------------------------

DB_ERROR_PHI = ("MRNX000901", "Quaresma", "1955-03-14")


def _failing_step(kind: str):
    """A step that fails the way PostgreSQL does: the error text quotes the row."""
    import psycopg2.errors

    from trialscreen.transform import DbtBuildError

    detail = "DETAIL:  Failing row contains (MRNX000901, Quaresma, 1955-03-14, null)."
    if kind == "psycopg2":
        error: Exception = psycopg2.errors.NotNullViolation(
            'null value in column "sex" of relation "patient_keys" violates not-null '
            f"constraint\n{detail}"
        )
    else:
        error = DbtBuildError(
            "build",
            [
                (
                    "model.trialscreen.stg_csv__patients",
                    "Database Error in model stg_csv__patients | date/time field value out "
                    'of range: "1955-03-14" | ' + detail,
                )
            ],
        )

    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    return fail


@pytest.mark.parametrize("kind", ["psycopg2", "dbt"])
def test_database_error_texts_are_summarized_not_copied(tmp_path, kind) -> None:
    import trialscreen.pipeline as pipeline_module

    drop, reports = tmp_path / "drop", tmp_path / "reports"
    generate(patients=5, seed=SEED, out=drop, screening_date=SCREENING_DATE)
    mp = pytest.MonkeyPatch()
    mp.setenv(pseudonym.KEY_ENV, KEY)
    step = "prepare_build" if kind == "psycopg2" else "build"
    mp.setattr(pipeline_module, step, _failing_step(kind))
    out = io.StringIO()
    try:
        with _everything_at_debug(mp) as (stream, handler), contextlib.redirect_stdout(out):
            result = run_pipeline(drop, SCREENING_DATE, tmp_path / "wh.duckdb", reports_dir=reports)
    finally:
        mp.undo()
    assert result.status == "failed"
    assert result.message.startswith("NotNullViolation" if kind == "psycopg2" else "DbtBuildError")
    with Warehouse.connect(tmp_path / "wh.duckdb") as wh:
        (message,) = wh.query("select message from audit.pipeline_runs")[0]
    report = (reports / result.run_id / "report.html").read_text(encoding="utf-8")
    texts = [result.message, result.summary(), message, report, stream.getvalue(), out.getvalue()]
    texts += handler.lines
    leaks = [t[:200] for t in texts if any(v in t for v in DB_ERROR_PHI)]
    assert leaks == []
    if kind == "dbt":  # the failed model is named
        assert "stg_csv__patients" in result.message and "stg_csv__patients" in report
