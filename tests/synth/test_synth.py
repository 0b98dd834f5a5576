"""The synthetic population: deterministic, covering every reachable status, well-formed."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from trialscreen.feeds.csv.contract import CSV_FILES
from trialscreen.synth import generate
from trialscreen.synth.model import Cond, Med, Obs, PatientRecord
from trialscreen.synth.oracle import CRITERIA, VALUE_COLUMNS, candidate_status, evaluate
from trialscreen.synth.population import TEST_EVERY, TEST_OFFSET

SCREENING = date(2026, 11, 15)

# Statuses each criterion can reach under docs/clinical-rules.md#axiom (ici never not_met;
# review-only items).
REACHABLE: dict[str, set[str]] = {
    "age": {"met", "not_met"},
    "diagnosis_sts": {"met", "review", "not_met"},
    "diagnosis_asps": {"met", "review", "not_met"},
    "ici_refractory_progression": {"met", "review"},
    "measurable_disease": {"met", "not_met", "unknown"},
    "performance_status": {"met", "not_met", "unknown", "review"},
    **{
        a: {"met", "not_met", "unknown"}
        for a in (
            "anc",
            "platelets",
            "hemoglobin",
            "bilirubin",
            "ast",
            "alt",
            "renal",
            "albumin",
            "sodium",
        )
    },
    # undetectable viral load, no active ART on record: review (issue 11)
    "hiv": {"met", "not_met", "unknown", "review"},
    **{
        r: {"review"}
        for r in ("research_biopsy", "informed_consent", "contraception", "swallow_pills")
    },
}


@pytest.fixture(scope="session")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "pop"
    generate(1000, 7, out, SCREENING)
    return out


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _ndjson_lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.splitlines()


def test_same_seed_gives_byte_identical_files(population: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(1000, 7, again, SCREENING)
    assert _digest(again) == _digest(population)


def test_different_seed_gives_different_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(300, 1, a, SCREENING)
    generate(300, 2, b, SCREENING)
    da, db = _digest(a), _digest(b)
    assert da["expected/criteria.csv"] != db["expected/criteria.csv"]
    assert da["fhir/Patient.ndjson"] != db["fhir/Patient.ndjson"]


def test_every_criterion_reaches_each_reachable_status(population: Path) -> None:
    seen: dict[tuple[str, str], Counter[str]] = {}
    for row in _rows(population / "expected" / "criteria.csv"):
        seen.setdefault((row["cohort_id"], row["criterion_id"]), Counter())[row["status"]] += 1
    missing = {}
    for cohort, ids in CRITERIA.items():
        for cid in ids:
            got = set(seen[(cohort, cid)])
            assert got <= REACHABLE[cid], (cohort, cid, got)
            if REACHABLE[cid] - got:
                missing[(cohort, cid)] = REACHABLE[cid] - got
    assert not missing, f"statuses never produced: {missing}"


def test_expected_files_are_consistent(population: Path) -> None:
    crit = _rows(population / "expected" / "criteria.csv")
    cand = _rows(population / "expected" / "candidates.csv")
    values = _rows(population / "expected" / "values.csv")
    keys = Counter((r["mrn"], r["cohort_id"], r["criterion_id"]) for r in crit)
    assert max(keys.values()) == 1
    mrns = sorted({r["mrn"] for r in crit})
    # test patients (MRN prefix ZZTEST) are never screened: no expected outcome
    screened = sum(1 for i in range(1000) if i % TEST_EVERY != TEST_OFFSET)
    assert len(mrns) == screened < 1000
    assert not any(m.startswith("ZZTEST") for m in mrns)
    assert len(keys) == screened * sum(len(ids) for ids in CRITERIA.values())
    assert all(r["trial_id"] == "axiom" for r in crit)
    by_patient: dict[tuple[str, str], list[str]] = {}
    for r in crit:
        by_patient.setdefault((r["mrn"], r["cohort_id"]), []).append(r["status"])
    assert len(cand) == 2 * screened
    for r in cand:
        assert r["candidate_status"] == candidate_status(by_patient[(r["mrn"], r["cohort_id"])])
    statuses = Counter(r["candidate_status"] for r in cand)
    assert set(statuses) == {"ineligible", "missing_data", "ready_for_review"}
    assert [c for c in values[0] if c != "mrn"] == list(VALUE_COLUMNS)
    assert len(values) == screened
    manifest = json.loads((population / "expected" / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["patients"] == 1000
    assert manifest["screening_date"] == SCREENING.isoformat()


def test_fhir_ndjson_lines_carry_what_the_parser_needs(population: Path) -> None:
    bad = {
        (r["file"], int(r["position"]))
        for r in _rows(population / "expected" / "bad_records.csv")
        if r["feed"] == "fhir"
    }
    files = sorted((population / "fhir").glob("*.ndjson*"))
    assert any(f.name.endswith(".ndjson.gz") for f in files)
    assert any(f.name.startswith("Observation.2") for f in files)
    mrns = set()
    for f in files:
        rel = f"fhir/{f.name}"
        for n, line in enumerate(_ndjson_lines(f), start=1):
            if (rel, n) in bad:
                continue
            r = json.loads(line)
            assert r["resourceType"] == f.name.split(".")[0]
            assert r["id"]
            if r["resourceType"] == "Patient":
                mr = [
                    i
                    for i in r["identifier"]
                    if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR"
                ]
                assert len(mr) == 1
                mrns.add(mr[0]["value"])
                assert r["birthDate"]
                continue
            if r["resourceType"] == "Medication":  # a drug a medicationReference names
                assert r["code"]["coding"]
                continue
            assert r["subject"]["reference"].startswith("Patient/")
            if r["resourceType"] == "Observation":
                assert r["code"]["coding"][0]["system"] == "http://loinc.org"
                assert r["status"]
                assert "effectiveDateTime" in r or "effectivePeriod" in r
                # an mCODE tumour size may come as components only (no value[x])
                assert any(k.startswith("value") for k in r) or "component" in r
    assert mrns
    for bundle in (population / "fhir" / "bundles").glob("*.json"):
        b = json.loads(bundle.read_bytes())
        assert b["resourceType"] == "Bundle" and b["type"] == "transaction"
        for e in b["entry"]:
            assert e["fullUrl"].startswith("urn:uuid:")
            assert e["request"]["method"] == "POST"


def test_hl7_files_split_into_messages_starting_with_msh(population: Path) -> None:
    files = sorted((population / "hl7").iterdir())
    assert files
    terminators = Counter()
    for f in files:
        text = f.read_bytes().decode("utf-8").lstrip("\ufeff")
        text = text.replace("\x0b", "").replace("\x1c", "")
        terminators.update(k for k in ("\r\n", "\r") if k in text)
        segments = [s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s]
        messages = []
        for seg in segments:
            if seg.startswith("MSH|"):
                messages.append([seg])
            else:
                assert messages, f"{f.name}: a segment before the first MSH"
                messages[-1].append(seg)
        for m in messages:
            assert m[0].startswith("MSH|^~\\&|")
            assert any(s.startswith("OBX|") for s in m)
            assert m[0].split("|")[11] in ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
    assert terminators["\r\n"] and terminators["\r"]


def test_csv_headers_match_the_contract(population: Path) -> None:
    for stem, columns in CSV_FILES.items():
        with open(population / "csv" / f"{stem}.csv", newline="", encoding="utf-8") as fh:
            assert next(csv.reader(fh)) == list(columns)


def test_bad_records_cover_every_kind_and_point_at_real_positions(population: Path) -> None:
    rows = _rows(population / "expected" / "bad_records.csv")
    assert {r["feed"] for r in rows} == {"fhir", "hl7", "csv"}
    assert len(rows) == 7
    for r in rows:
        path = population / r["file"]
        pos = int(r["position"])
        if r["feed"] == "csv":
            data_rows = _rows(path)
            assert data_rows[pos - 1]["result_id"] == r["record_id"]
        elif r["feed"] == "fhir":
            assert r["record_id"].encode() in _ndjson_lines(path)[pos - 1]


# --- oracle rules on hand-built records ------------------------------------------------------


def _patient(
    obs: list[Obs],
    conds: list[Cond] | None = None,
    meds: list[Med] | None = None,
    sex: str = "male",
    birth: date = date(1970, 1, 1),
) -> PatientRecord:
    return PatientRecord(
        index=0,
        mrn="MRN0000001",
        fhir_id="x",
        family="F",
        given="G",
        birth_date=birth,
        sex=sex,
        route="fhir",
        lab_feed="fhir",
        bundle=False,
        obs=obs,
        conditions=conds or [],
        meds=meds or [],
    )


def _lab(loinc: str, value: str, unit: str, day: int, hour: int = 8, **kw: object) -> Obs:
    when = datetime(2026, 11, day, hour, tzinfo=UTC)
    return Obs(
        id=f"{loinc}-{day}-{hour}-{value}",
        kind="lab",
        loinc=loinc,
        display="",
        effective=when,
        issued=kw.pop("issued", when),
        value=value,
        unit=unit,  # type: ignore[arg-type]
        **kw,
    )  # type: ignore[arg-type]


def _status(p: PatientRecord, criterion: str) -> str:
    return next(s for c, cid, s, _ in evaluate(p, SCREENING).criteria if cid == criterion)


def test_oracle_unmappable_latest_result_is_unknown_not_the_older_value() -> None:
    p = _patient([_lab("718-7", "13", "g/dL", 1), _lab("718-7", "13", "g/mL", 2)])
    assert _status(p, "hemoglobin") == "unknown"


def test_oracle_comparator_decides_only_when_it_decides() -> None:
    assert _status(_patient([_lab("751-8", "5.0", "10*9/L", 3, comparator=">")]), "anc") == "met"
    assert (
        _status(_patient([_lab("751-8", "0.5", "10*9/L", 3, comparator="<")]), "anc") == "not_met"
    )
    assert (
        _status(_patient([_lab("751-8", "2.0", "10*9/L", 3, comparator="<")]), "anc") == "unknown"
    )


def test_oracle_window_is_inclusive_on_utc_dates() -> None:
    inside = _lab("777-3", "150", "10*9/L", 1)
    inside.effective = datetime(2026, 10, 18, 0, 5, tzinfo=UTC)  # S - 28 days
    outside = _lab("777-3", "150", "10*9/L", 1)
    outside.effective = datetime(2026, 10, 17, 23, 55, tzinfo=UTC)
    assert _status(_patient([inside]), "platelets") == "met"
    assert _status(_patient([outside]), "platelets") == "unknown"
    late = _lab("777-3", "50", "10*9/L", 15, hour=23)  # on S, late evening: counts
    assert _status(_patient([inside, late]), "platelets") == "not_met"


def test_oracle_renal_falls_back_to_normalized_cockcroft_gault() -> None:
    creat = _lab("2160-0", "2.0", "mg/dL", 10)  # 1.67 x institutional ULN 1.2
    weight = Obs(
        id="w",
        kind="vital",
        loinc="29463-7",
        display="",
        value="80",
        unit="kg",
        effective=datetime(2026, 11, 1, tzinfo=UTC),
        issued=datetime(2026, 11, 1, tzinfo=UTC),
    )
    height = Obs(
        id="h",
        kind="vital",
        loinc="8302-2",
        display="",
        value="180",
        unit="cm",
        effective=datetime(2020, 1, 1, tzinfo=UTC),
        issued=datetime(2020, 1, 1, tzinfo=UTC),
    )
    p = _patient([creat, weight, height], birth=date(1970, 1, 1))
    out = evaluate(p, SCREENING)
    # male, 56 y: (140-56)*80/(72*2.0) = 46.67 mL/min; BSA 2.0 -> 40.37 mL/min/1.73 m2
    assert out.values["crcl_ml_min"] == pytest.approx(46.667, abs=1e-3)
    assert out.values["crcl_ml_min_1_73m2"] == pytest.approx(40.367, abs=1e-3)
    assert _status(p, "renal") == "met"
    assert _status(_patient([creat, weight]), "renal") == "unknown"  # no height


def test_oracle_same_day_ecog_and_karnofsky_disagreeing_is_review() -> None:
    ecog = Obs(
        id="e",
        kind="perf",
        loinc="89247-1",
        display="",
        value="2",
        effective=datetime(2026, 11, 10, 9, tzinfo=UTC),
        issued=datetime(2026, 11, 10, 9, tzinfo=UTC),
    )
    kps = Obs(
        id="k",
        kind="perf",
        loinc="89243-0",
        display="",
        value="60",
        effective=datetime(2026, 11, 10, 14, tzinfo=UTC),
        issued=datetime(2026, 11, 10, 14, tzinfo=UTC),
    )
    assert _status(_patient([ecog, kps]), "performance_status") == "review"
    assert _status(_patient([ecog]), "performance_status") == "met"


def _parser(module: str, name: str):  # type: ignore[no-untyped-def]
    mod = pytest.importorskip(module)
    fn = getattr(mod, name, None)
    if fn is None:
        pytest.skip(f"{module}.{name} not available yet")
    return fn


def _bad_positions(population: Path) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for r in _rows(population / "expected" / "bad_records.csv"):
        out.setdefault(r["file"], set()).add(int(r["position"]))
    return out


def test_round_trip_fhir_and_csv_parsers_load_every_record_and_quarantine_the_bad(
    population: Path,
) -> None:
    """Each NDJSON line / CSV row is one record; only the listed bad ones are quarantined."""
    parsers = {
        "fhir": _parser("trialscreen.feeds.fhir", "parse_fhir_file"),
        "csv": _parser("trialscreen.feeds.csv", "parse_csv_file"),
    }
    files = json.loads((population / "expected" / "manifest.json").read_text())["files"]
    bad = _bad_positions(population)
    for rel, records in files.items():
        feed = rel.split("/", 1)[0]
        if feed not in parsers or "/bundles/" in rel:
            continue
        parsed = parsers[feed](population / rel, population)
        if rel.startswith("fhir/Medication."):  # drugs a medicationReference names: codings
            assert parsed.ignored == {"Medication": records}, rel
            assert parsed.codings.height >= records, rel
            continue
        assert parsed.records_in == records, rel
        quarantined = set(parsed.quarantined["source_position"].to_list())
        assert quarantined == bad.get(rel, set()), rel
        assert parsed.rows_out == records - len(bad.get(rel, set())), rel


def test_round_trip_hl7_parser_quarantines_only_the_message_without_pid(population: Path) -> None:
    parse = _parser("trialscreen.feeds.hl7v2", "parse_hl7_file")
    bad = _bad_positions(population)
    messages = 0
    for path in sorted((population / "hl7").iterdir()):
        rel = f"hl7/{path.name}"
        parsed = parse(path, population)
        quarantined = set(parsed.quarantined["source_position"].to_list())
        assert quarantined == bad.get(rel, set()), rel
        obs = parsed.tables["observations"]
        messages += obs["source_position"].n_unique()
    assert messages > 0
