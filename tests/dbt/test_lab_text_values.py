"""Issue 10 items 1-4: lab and observation results as laboratories send them (docs/decisions.md
"Lab values as laboratories send them").

Each shape as a baseline patient (test_criteria_scenarios) differing in one result, in each
feed that can carry it: the raw row as the parser lands it (HL7 ST/TX/FT -> value_text, FHIR
valueString -> value_text, valueCodeableConcept / HL7 CE -> value_code, CSV value text ->
value_text). One warehouse, shared with the other scenario modules (tests/dbt/conftest.py
``scenario_wh``); each case asserts the decided status and the value used,
and for an unreadable text that the text reaches only the coordinators' evidence.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from tests.dbt.test_criteria_scenarios import KEY, evaluation, ts
from tests.dbt.test_issue11_scenarios import Scenarios
from trialscreen import pseudonym

FEEDS = ("csv", "hl7", "fhir")
LOINC_URI = "http://loinc.org"
SNOMED_URI = "http://snomed.info/sct"
NCIT_URI = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"

_N = iter(range(1, 100_000))


def raw_obs(s: Scenarios, feed: str, mrn: str, loinc: str | None, day: str = "2026-10-31",
            **kw: Any) -> None:  # fmt: skip
    """One observation row of `feed` as its parser lands it (text values in value_text)."""
    n = next(_N)
    row: dict[str, Any] = {
        "source_file": f"{feed}/results-{n}", "source_position": n, "record_id": f"{feed}-r{n}",
        "record_hash": f"h-{feed}-{n}", "patient_ref": mrn, "mrn": mrn, "category": "laboratory",
        "loinc": loinc, "status": "final", "effective_at": ts(day), "issued_at": ts(day, 11),
        "order_id": f"ord-{n}",
    }  # fmt: skip
    if "value_text" in kw and "value_type" not in kw:
        row["value_type"] = "string"
    if "value_code" in kw and "value_type" not in kw:
        row["value_type"] = "coded"
    row.update(kw)
    if feed == "csv":
        s.rows["observations"].append(row)
    else:
        s.add(feed, "observations", row)


def hiv_on_art(s: Scenarios, mrn: str) -> None:
    s.baseline(mrn)
    s.cond(mrn, "icd-10-cm", "B20", onset="2015-01-01")
    s.med(mrn, "atc", "J05AR20", "2016-01-01", "active")


# (mrn, feed, criterion, expected status, expected value_numeric or None)
CASES: list[tuple[str, str, str, str, float | None]] = []


def case(mrn: str, feed: str, criterion: str, status: str, value: float | None) -> None:
    CASES.append((mrn, feed, criterion, status, value))


def build() -> Scenarios:
    s = Scenarios()
    s._n = 200_000  # record ids apart from the other modules sharing the build (conftest.py)
    for feed in FEEDS:
        f = feed.upper()
        # -- numbers inside text: thousands separators, flags, blanks, units, comparators
        s.baseline(f"{f}COMMA", platelets=True)
        raw_obs(s, feed, f"{f}COMMA", "777-3", value_text="150,000", value_unit="/uL")
        case(f"{f}COMMA", feed, "platelets", "met", 150.0)
        s.baseline(f"{f}FLAGH", hemoglobin=True)
        raw_obs(s, feed, f"{f}FLAGH", "718-7", value_text="12.5 H", value_unit="g/dL")
        case(f"{f}FLAGH", feed, "hemoglobin", "met", 12.5)
        s.baseline(f"{f}FLAGL", albumin=True)
        raw_obs(s, feed, f"{f}FLAGL", "1751-7", value_text="2.1 L", value_unit="g/dL")
        case(f"{f}FLAGL", feed, "albumin", "not_met", 2.1)
        s.baseline(f"{f}STAR", sodium=True)
        raw_obs(s, feed, f"{f}STAR", "2951-2", value_text="  128 * ", value_unit="mmol/L")
        case(f"{f}STAR", feed, "sodium", "not_met", 128.0)
        s.baseline(f"{f}UNITIN", anc=True)  # the unit only inside the text
        raw_obs(s, feed, f"{f}UNITIN", "751-8", value_text="2.1 K/uL")
        case(f"{f}UNITIN", feed, "anc", "met", 2.1)
        s.baseline(f"{f}UNITAGREE", anc=True)  # inside the text and sent, agreeing
        raw_obs(s, feed, f"{f}UNITAGREE", "751-8", value_text="1,850 cells/uL H",
                value_unit="/uL")  # fmt: skip
        case(f"{f}UNITAGREE", feed, "anc", "met", 1.85)
        s.baseline(f"{f}UNITCLASH", anc=True)  # disagreeing: neither is trusted
        raw_obs(s, feed, f"{f}UNITCLASH", "751-8", value_text="1,850 /uL", value_unit="K/uL")
        case(f"{f}UNITCLASH", feed, "anc", "unknown", None)
        s.baseline(f"{f}COMPARE", anc=True)
        raw_obs(s, feed, f"{f}COMPARE", "751-8", value_text=">= 2,000 cells/uL")
        case(f"{f}COMPARE", feed, "anc", "met", 2.0)
        s.baseline(f"{f}COMPAREX", anc=True)  # "<0.5" cannot tell against >= 1.0? it can: not met
        raw_obs(s, feed, f"{f}COMPAREX", "751-8", value_text="<0.5 K/uL")
        case(f"{f}COMPAREX", feed, "anc", "not_met", 0.5)
        s.baseline(f"{f}UNREAD", hemoglobin=True)  # unreadable: unknown, text restricted
        raw_obs(s, feed, f"{f}UNREAD", "718-7", value_text="see comment 7", value_unit="g/dL")
        case(f"{f}UNREAD", feed, "hemoglobin", "unknown", None)
        s.baseline(f"{f}EUROCOMMA", hemoglobin=True)  # 12,5: a decimal comma is not read
        raw_obs(s, feed, f"{f}EUROCOMMA", "718-7", value_text="12,5", value_unit="g/dL")
        case(f"{f}EUROCOMMA", feed, "hemoglobin", "unknown", None)
        # -- HIV-1 viral load as text and as coded answers
        for tag, text, status in (
            ("ND", "Not detected", "met"),
            ("TND", "TND", "met"),
            ("UNDET", "Undetectable.", "met"),
            ("LT20", "<20 copies/mL", "met"),
            ("DNQ", "DNQ", "unknown"),
            ("DET", "Detected", "unknown"),
            ("GARBLE", "specimen hemolysed", "unknown"),
            ("QUANT", "1,250 copies/mL", "not_met"),
        ):
            mrn = f"{f}VL{tag}"
            hiv_on_art(s, mrn)
            raw_obs(s, feed, mrn, "20447-9", day="2026-10-25", value_text=text)
            case(mrn, feed, "hiv", status, 1250.0 if tag == "QUANT" else None)
        mrn = f"{f}VLLLOQ"  # below the limit of quantification, the limit 20 in the range
        hiv_on_art(s, mrn)
        raw_obs(s, feed, mrn, "20447-9", day="2026-10-25", value_text="<LLOQ", ref_high=20.0,
                ref_text="<20")  # fmt: skip
        case(mrn, feed, "hiv", "met", None)
        mrn = f"{f}VLNOHIV"  # "Detected" is HIV on record even without a diagnosis code
        s.baseline(mrn)
        raw_obs(s, feed, mrn, "20447-9", day="2026-10-25", value_text="Detected")
        case(mrn, feed, "hiv", "unknown", None)
    for feed, system in (("fhir", LOINC_URI), ("hl7", "LN"), ("csv", "loinc")):
        f = feed.upper()
        mrn = f"{f}VLLA"
        hiv_on_art(s, mrn)
        raw_obs(s, feed, mrn, "20447-9", day="2026-10-25", value_code="LA11883-8",
                value_code_system=system, value_text="Not detected")  # fmt: skip
        case(mrn, feed, "hiv", "met", None)
        mrn = f"{f}VLSCT"
        hiv_on_art(s, mrn)
        raw_obs(s, feed, mrn, "20447-9", day="2026-10-25", value_code="260415000",
                value_code_system=SNOMED_URI if feed == "fhir" else "SCT")  # fmt: skip
        case(mrn, feed, "hiv", "met", None)
        # -- coded performance status (LOINC answer lists LL529-9, LL4986-7)
        for tag, loinc, code, status, score in (
            ("ECOG2", "89247-1", "LA9624-3", "met", 2.0),
            ("ECOG3", "89247-1", "LA9625-0", "not_met", 3.0),
            ("KPS70", "89243-0", "LA29178-3", "met", 70.0),
            ("KPS60", "89243-0", "LA29179-1", "not_met", 60.0),
        ):
            mrn = f"{f}{tag}"
            s.baseline(mrn, ecog=True)
            raw_obs(s, feed, mrn, loinc, day="2026-10-28", category="survey", value_code=code,
                    value_code_system=system)  # fmt: skip
            case(mrn, feed, "performance_status", status, score)
    # Lansky as the mCODE pediatric profile sends it: NCIt C38144 with an NCIt answer
    s.baseline("LANSKY60", birth="2014-01-10", ecog=True)
    raw_obs(s, "fhir", "LANSKY60", None, day="2026-10-28", category="survey",
            local_code="C38144", local_system=NCIT_URI, value_code="C69422",
            value_code_system=NCIT_URI)  # fmt: skip
    case("LANSKY60", "fhir", "performance_status", "not_met", 60.0)

    # -- every common code: the newest result decides whatever code it carries
    newer = {
        "anc": ("751-8", 3.0, "10*9/L", "753-4", 0.8, "10*9/L", 0.8),
        "platelets": ("777-3", 200, "10*9/L", "778-1", 50, "10*9/L", 50.0),
        "hemoglobin": ("718-7", 13.0, "g/dL", "59260-0", 5.0, "mmol/L", 8.06),
        "albumin": ("1751-7", 4.0, "g/dL", "61151-7", 20, "g/L", 2.0),
    }
    for analyte, (old, old_v, old_u, new, new_v, new_u, used) in newer.items():
        mrn = f"MANUAL{analyte.upper()}"
        s.baseline(mrn, **{analyte: True})
        s.obs(mrn, old, old_v, old_u, "2026-10-25")
        s.obs(mrn, new, new_v, new_u, "2026-10-30")
        case(mrn, "csv", analyte, "not_met", used)
    s.baseline("MANUALAST", ast=True)  # AST with P-5'-P, newer than the plain code
    s.obs("MANUALAST", "1920-8", 25, "U/L", "2026-10-25", ref_high=40)
    s.obs("MANUALAST", "30239-8", 200, "U/L", "2026-10-30", ref_high=40)
    case("MANUALAST", "csv", "ast", "not_met", 200.0)
    s.baseline("MANUALBILI", bilirubin=True)  # bilirubin in umol/L by its moles code
    s.obs("MANUALBILI", "1975-2", 0.8, "mg/dL", "2026-10-25", ref_high=1.2)
    s.obs("MANUALBILI", "14631-6", 68.4, None, "2026-10-30", ref_high=20.5)
    case("MANUALBILI", "csv", "bilirubin", "not_met", 4.0)
    # -- an unknown LOINC beside a local code the seed maps: the local mapping is used
    s.baseline("LOCALWINS", anc=True)
    raw_obs(s, "hl7", "LOCALWINS", "99999-9", local_code="ANC", local_system="L",
            value_type="quantity", value_numeric=0.4, value_unit="10*9/L")  # fmt: skip
    case("LOCALWINS", "hl7", "anc", "not_met", 0.4)
    # -- unit spellings
    for i, unit in enumerate(("K/µL", "10^3/mcL", "x10³/µL", "THOU/uL", "×10⁹/L")):
        mrn = f"PLTUNIT{i}"
        s.baseline(mrn, platelets=True)
        s.obs(mrn, "777-3", 90, unit, "2026-10-30")
        case(mrn, "csv", "platelets", "not_met", 90.0)
    s.baseline("ALTKAT", alt=True)  # 0.5 ukat/L = 30 U/L
    s.obs("ALTKAT", "1742-6", 0.5, "µkat/L", "2026-10-30", ref_high=0.75)
    case("ALTKAT", "csv", "alt", "met", 30.0)
    s.baseline("PLTFLOOR", platelets=True)  # 0.21 x10^9/L: a mislabelled unit
    s.obs("PLTFLOOR", "777-3", 0.21, "10*9/L", "2026-10-30")
    case("PLTFLOOR", "csv", "platelets", "unknown", None)
    # -- codes no seed maps: counted, not dropped
    s.baseline("UNMAPPED")
    raw_obs(s, "hl7", "UNMAPPED", "12345-6", value_type="quantity", value_numeric=1.0)
    raw_obs(s, "hl7", "UNMAPPED", "12345-6", value_type="quantity", value_numeric=2.0)
    raw_obs(s, "csv", "UNMAPPED", None, local_code="ZZTOP", value_type="quantity",
            value_numeric=1.0)  # fmt: skip
    raw_obs(s, "hl7", "UNMAPPED", "789-8", value_type="quantity", value_numeric=4.5)  # ignored
    return s


SCENARIOS = build()


@pytest.fixture(scope="module")
def wh(scenario_wh: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """The session's shared scenario warehouse (SCENARIOS are in it: tests/dbt/conftest.py)."""
    return scenario_wh


@pytest.mark.parametrize(("mrn", "feed", "criterion", "status", "value"), CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])  # fmt: skip
def test_shape_decides(wh, mrn, feed, criterion, status, value):
    row = evaluation(wh, mrn, criterion)
    assert row["status"] == status, row["reason"]
    if value is not None:
        assert row["value_numeric"] == pytest.approx(value, rel=1e-3), row["reason"]
    if criterion == "hiv" and status == "met":
        assert row["evidence_source"] == feed, row


def _detail(con: duckdb.DuckDBPyConnection, mrn: str, criterion: str) -> str | None:
    key = pseudonym.patient_key(mrn, KEY)
    got = con.execute(
        "select reason_detail from restricted.criterion_evidence"
        " where patient_key = ? and criterion_id = ? limit 1",
        [key, criterion],
    ).fetchone()
    return got[0] if got else None


@pytest.mark.parametrize("feed", FEEDS)
def test_unreadable_text_reaches_only_the_coordinators(wh, feed):
    f = feed.upper()
    lab = evaluation(wh, f"{f}UNREAD", "hemoglobin")
    assert "see comment" not in lab["reason"] and "text withheld" in lab["reason"]
    assert '"see comment 7"' in (_detail(wh, f"{f}UNREAD", "hemoglobin") or "")
    hiv = evaluation(wh, f"{f}VLGARBLE", "hiv")
    assert "hemolysed" not in hiv["reason"] and "non_numeric" in hiv["reason"]
    assert "specimen hemolysed" in (_detail(wh, f"{f}VLGARBLE", "hiv") or "")


def test_no_sender_text_in_any_mart(wh):
    for (table,) in wh.execute(
        "select table_name from information_schema.tables where table_schema = 'marts'"
    ).fetchall():
        text = str(wh.execute(f"select * from marts.{table}").fetchall())
        for sent in ("see comment", "hemolysed", "12,5"):
            assert sent not in text, (table, sent)


def test_qualitative_reasons_say_what_was_reported(wh):
    assert "viral load not detected on" in evaluation(wh, "HL7VLTND", "hiv")["reason"]
    lloq = evaluation(wh, "CSVVLLLOQ", "hiv")["reason"]
    assert "below the limit of quantification" in lloq and "undetectable" in lloq
    assert "not quantified" in evaluation(wh, "FHIRVLDET", "hiv")["reason"]
    assert "HIV-1 RNA detected on" in evaluation(wh, "CSVVLNOHIV", "hiv")["reason"]


def test_unmapped_codes_are_counted_per_feed_and_code(wh):
    rows = wh.execute(
        "select feed, code_system, code, observation_count from marts.dq_unmapped_codes"
        " order by feed, code"
    ).fetchall()
    assert ("hl7", "loinc", "12345-6", 2) in rows
    assert ("csv", "local", "ZZTOP", 1) in rows
    codes = {r[2] for r in rows}
    assert "789-8" not in codes  # on the ignore list
    assert "99999-9" not in codes  # its local code ANC is mapped
    assert "753-4" not in codes and "C38144" not in codes
    columns = [r[0] for r in wh.execute("describe marts.dq_unmapped_codes").fetchall()]
    assert columns == ["run_id", "feed", "code_system", "code", "observation_count"]
