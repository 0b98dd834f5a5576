"""``build_patient``: one patient's whole record from (seed, index, screening date),
dimension by dimension; the demographics, the identity shapes by index (test patients,
retired MRNs, blank HL7 demographics) and the deliberately bad records."""

from __future__ import annotations

from datetime import date, timedelta

from trialscreen.synth import catalogue as cat
from trialscreen.synth import labshapes
from trialscreen.synth.model import PatientRecord
from trialscreen.synth.population.assessments import _body, _performance, _tumor
from trialscreen.synth.population.builder import _Builder, _pick
from trialscreen.synth.population.conditions import _diagnosis, _extras
from trialscreen.synth.population.ehr_shapes import _issue11, _issue11_shape
from trialscreen.synth.population.hiv_and_ici import _hiv, _ici
from trialscreen.synth.population.labs import _labs

# Bad records (docs/specification.md#bad-input), one per selected patient: index % BAD_EVERY ==
# BAD_OFFSET.
BAD_KINDS = (
    "fhir_no_subject",
    "csv_no_mrn",
    "hl7_no_pid",
    "fhir_not_json",
    "csv_bad_date",
    "fhir_bad_date",
    "csv_no_code",
)
BAD_EVERY = 150
BAD_OFFSET = 37
# One test patient every TEST_EVERY patients (MRN prefix ZZTEST: never screened)
TEST_EVERY = 97
TEST_OFFSET = 41


def _demographics(b: _Builder) -> tuple[str, str, date, str]:
    r = b.r
    sex = _pick(r, (("male", 47), ("female", 47), ("other", 3), ("unknown", 3)))
    age_kind = _pick(
        r,
        (
            ("adult", 86),
            ("adolescent", 7),
            ("turns12_today", 2),
            ("turns12_tomorrow", 2),
            ("child", 1),
            ("young_adult", 2),
        ),
    )
    b.scenario["age"] = age_kind
    s = b.s
    if age_kind in ("turns12_today", "turns12_tomorrow"):
        try:
            birth = s.replace(year=s.year - 12)
        except ValueError:  # 29 February
            birth = s.replace(year=s.year - 12, day=28)
        if age_kind == "turns12_tomorrow":
            birth += timedelta(days=1)
    else:
        lo, hi = {
            "adult": (20, 84),
            "adolescent": (13, 17),
            "child": (6, 10),
            "young_adult": (18, 19),
        }[age_kind]
        birth = s - timedelta(days=r.randint(lo * 365 + 5, hi * 365 + 360))
    names = {"male": cat.GIVEN_MALE, "female": cat.GIVEN_FEMALE}.get(sex, cat.GIVEN_OTHER)
    return r.choice(cat.FAMILY_NAMES), r.choice(names), birth, sex


def _bad_record(b: _Builder, kind: str) -> None:
    """One record a parser must quarantine; the oracle ignores it (it never reaches a patient)."""
    a = cat.ANALYTES["anc"]
    o = b.add_obs("lab", a.loincs[0], b.at(0, 7, 0), order_id=b.order(), value="0.2", unit="10*9/L")
    o.bad = kind
    if kind == "csv_no_code":
        o.loinc = ""


def build_patient(seed: int, index: int, screening_date: date) -> PatientRecord:
    """Draw one patient's whole record from (seed, index, screening_date)."""
    b = _Builder(seed, index, screening_date)
    r = b.r
    route = _pick(r, (("fhir", 50), ("fhir_hl7", 25), ("csv", 25)))
    lab_feed = {"fhir": "fhir", "fhir_hl7": "hl7"}.get(route) or (
        "hl7" if r.random() < 0.6 else "csv"
    )
    bundle = route == "fhir" and r.random() < 0.1
    clean = r.random() < 0.45
    b.scenario["clean"] = str(clean)
    family, given, birth, sex = _demographics(b)
    s = screening_date
    age = s.year - birth.year - ((s.month, s.day) < (birth.month, birth.day))
    _diagnosis(b, clean)
    _extras(b, sex, age)
    overrides: dict[str, str] = {}
    if "gilbert" in b.scenario and r.random() < 0.8:
        overrides["bilirubin"] = "gilbert_high"
    elif not clean and r.random() < 0.03:
        overrides["bilirubin"] = "uln_implausible"
    if (b.scenario.get("metastasis") == "C78.7" and r.random() < 0.6) or (
        not clean and r.random() < 0.03
    ):
        overrides[r.choice(("ast", "alt"))] = "liver_high"
    sr, shape = _issue11_shape(seed, index)
    if shape in ("liver_abated", "liver_abated_later"):  # the 5 x ULN allowance decides
        overrides[sr.choice(("ast", "alt"))] = "liver_high"
    if shape in ("ici_ref_contained", "ici_ref_resource") and route == "fhir":
        bundle = bundle or sr.random() < 0.5  # the Medication as a bundle entry, too
    renal = (
        "ok"
        if clean
        else _pick(
            r,
            (
                ("ok", 60),
                ("cg_ok", 10),
                ("cg_bad", 6),
                ("no_height", 5),
                ("no_weight", 4),
                ("stale_weight", 4),
                ("height_as_minor", 3),
            ),
        )
    )
    b.scenario["renal"] = renal
    if renal != "ok":
        overrides["creatinine"] = "renal_very_high" if renal == "cg_bad" else "renal_high"
        if renal == "cg_bad":
            renal = "renal_very_high"
    _labs(b, clean, local_ok=lab_feed in ("hl7", "csv"), overrides=overrides)
    _body(b, age, renal)
    _performance(b, clean, age, csv=route == "csv")
    _tumor(b, clean, csv=route == "csv")
    _hiv(b, clean)
    _ici(b, clean)
    if shape is not None:
        _issue11(b, sr, shape)
    if index % BAD_EVERY == BAD_OFFSET:
        kind = BAD_KINDS[(index // BAD_EVERY) % len(BAD_KINDS)]
        b.scenario["bad_record"] = kind
        _bad_record(b, kind)
    # issue 10: lab values, codes and answers as laboratories send them (a stream of its own)
    labshapes.apply(b.obs, seed, index, lab_feed, b.scenario)
    # identity shapes by index only (no draw from the patient's random stream)
    test_patient = index % TEST_EVERY == TEST_OFFSET
    return PatientRecord(
        index=index,
        mrn=f"ZZTEST{index + 1:07d}" if test_patient else f"MRN{index + 1:07d}",
        test_patient=test_patient,
        hl7_blank_demographics=route == "fhir_hl7" and index % 5 == 2,
        retired_mrn=f"OLD{index + 1:07d}" if route == "csv" and index % 17 == 6 else None,
        fhir_id=b.uid(),
        family=family,
        given=given,
        birth_date=birth,
        sex=sex,
        route=route,
        lab_feed=lab_feed,
        bundle=bundle,
        obs=b.obs,
        conditions=b.conditions,
        meds=b.meds,
        scenario=b.scenario,
    )
