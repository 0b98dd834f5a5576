"""The expected outcome: docs/clinical-rules.md written out as plainly as possible, patient by
patient.

This is the known answer the dbt pipeline is compared against, so it deliberately shares no
code with the pipeline (or with the generator's tables): units, codes and plausibility
ranges are spelled out again here. Records flagged ``bad`` (quarantined by the feeds) are
skipped, as if absent.

Interpretation choices (each one also commented where it is applied):

1. Windows are inclusive on local calendar dates in the hospital time zone
   (``TRIALSCREEN_TIMEZONE``, default UTC): S-28 <= local date(effective) <= S. A result at
   22:30 local time on S counts; anything dated after S is ignored.
2. Counting statuses: final, amended, corrected. preliminary/registered are ignored,
   cancelled/entered-in-error excluded. A correction shares the order, the observation time
   and is issued later, so "latest, ties by later issued" and "C supersedes F" agree.
3. Latest per analyte = max by (effective time, issued time, worse value); "worse" is the
   lower value for lower-limit criteria and the higher for ×ULN ones. In a tie a usable result
   comes before an unusable one (docs/clinical-rules.md), then the worse value.
4. The latest result decides even when it is unusable (unmappable unit, implausible value):
   the criterion is then unknown, never an older value (docs/clinical-rules.md#unusable-results).
5. Comparator results decide only when every value they allow falls on one side.
   values.csv reports the comparator's bound as the value (``<0.5`` -> 0.5).
6. ULN = the result's own reference high (converted with the result's unit) when it lies in
   the plausible-ULN range below, else the institutional ULN (bilirubin 1.2 mg/dL,
   AST 40 U/L, ALT 40 U/L, creatinine 1.2 mg/dL). ×ULN = value / ULN.
7. Renal: met when creatinine <= 1.5×ULN; otherwise Cockcroft-Gault normalized
   (actual weight, Mosteller BSA) >= 30 -> met, < 30 -> not_met; unknown when weight, height
   or a usable creatinine is missing. A creatinine with a comparator that does not decide by
   itself is unknown (no CG from a bound). CrCl values are reported whenever computable,
   except for sex other/unknown (two values; the criterion decides only when male and
   female formulas agree) and for comparator creatinine.
8. Weight: latest in 90 days. Height: adults (>= 18 at S) the latest measured at age >= 18
   on any date <= S; minors the latest within 365 days.
9. Performance: the latest assessment *date* in the 28-day window; on that date the latest
   ECOG and the latest Karnofsky/Lansky are judged on their own scale (ECOG <= 2, KPS >= 70);
   both present and disagreeing -> review. values.csv ``ecog`` / ``karnofsky`` = the scores
   the decision used (the latest of each scale on that latest date), so a displayed value
   never contradicts the status beside it.
10. Measurable disease: any counting measurement in 28 days measurable -> met; every one
    decided not measurable -> not_met; otherwise (or none in the window) -> unknown. Methods:
    CT/MR (DICOM or SNOMED 77477000/113091000) and caliper/physical exam (text, 5880005)
    10 mm, chest x-ray (CR/DX, 399208008) 20 mm; ultrasound/PET (US/PT, 16310003/82918005)
    never decide; no method: >= 20 mm measurable, < 10 mm not, between undecided. Nodal
    (a lymph node SNOMED site or "lymph node" in the site text): short axis (else the value,
    unless it is an mCODE longest-dimension component) >= 15 mm, whatever the method; a
    component longest dimension without short axis decides only when < 15 mm.
11. Diagnosis: codes only for STS (ICD-10-CM C48*/C49*, ICD-O-3 sarcoma morphologies below);
    ASPS = ICD-O-3 9581/3 or the text in code.text / any coding display. ICD-O-3 in any
    spelling (95813, M9581/3, M-95813); behaviour /6 is the listed /3 morphology, metastatic.
    Advanced = a counting C77-C79, SNOMED secondary neoplasm or ICD-O-3 /6 condition (no
    stage codes are generated). ICD-10 under its OID is ICD-10-CM. A condition counts when
    verification is not refuted / entered-in-error, onset <= S, and - unless it is HIV or
    Gilbert (lifelong) - its clinical status is absent/active/recurrence/relapse and it was
    not abated on or before S. ASPS coded only by site (C48/C49, no ICD-O-3 anywhere) -> review.
12. HIV: HIV = counting B20/Z21 or any detectable viral load on/before S (any date). Then the
    latest viral load in 28 days decides: none or undeterminable (``<N``, N > 50) -> unknown;
    detectable -> not_met; undetectable -> met with an active ART (ATC J05A*), else review.
    Active ART: status active, or a statement whose period has no end / ends on or after S
    (not cancelled/entered-in-error/draft/not-taken/on-hold), started on or before S, and not
    a proposal/plan request. Undetectable without active ART -> review (issue 11).
13. ICI: prior ICI = a medication record (any status but cancelled/draft/entered-in-error/
    not-done/not-taken, on-hold included; no proposal/plan request) started on/before S, by
    any of its codings (also behind a medicationReference): RxNorm ingredient or SBD/SCD
    product, ATC L01FF*/L01FX04/L01FY02 and the exact pre-2022 L01XC codes, or name/brand text.
    Progression = counting 97509-4 = SNOMED 271299001 after the first ICI start and on/before
    S (progression conditions are not generated, so not looked for).
14. Age: whole years at S from the birth date (a birthday on S counts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from trialscreen.synth import catalogue as cat
from trialscreen.synth.model import Cond, Med, Obs, PatientRecord, local_zone

TRIAL_ID = "axiom"
CRITERIA: dict[str, tuple[str, ...]] = {
    "safety_run_in": (
        "age",
        "diagnosis_sts",
        "measurable_disease",
        "performance_status",
        "anc",
        "platelets",
        "hemoglobin",
        "bilirubin",
        "ast",
        "alt",
        "renal",
        "albumin",
        "sodium",
        "hiv",
        "informed_consent",
        "contraception",
        "swallow_pills",
    ),
    "asps": (
        "age",
        "diagnosis_asps",
        "ici_refractory_progression",
        "measurable_disease",
        "performance_status",
        "anc",
        "platelets",
        "hemoglobin",
        "bilirubin",
        "ast",
        "alt",
        "renal",
        "albumin",
        "sodium",
        "hiv",
        "research_biopsy",
        "informed_consent",
        "contraception",
        "swallow_pills",
    ),
}
VALUE_COLUMNS = (
    "age_years",
    "ecog",
    "karnofsky",
    "anc",
    "platelets",
    "hemoglobin",
    "bilirubin_x_uln",
    "ast_x_uln",
    "alt_x_uln",
    "creatinine_x_uln",
    "crcl_ml_min",
    "crcl_ml_min_1_73m2",
    "albumin",
    "sodium",
)

ANALYTE_OF_LOINC = {
    "751-8": "anc",
    "26499-4": "anc",
    "777-3": "platelets",
    "26515-7": "platelets",
    "718-7": "hemoglobin",
    "1975-2": "bilirubin",
    "42719-5": "bilirubin",
    "1920-8": "ast",
    "1742-6": "alt",
    "2160-0": "creatinine",
    "38483-4": "creatinine",
    "14682-9": "creatinine",
    "1751-7": "albumin",
    "2951-2": "sodium",
    "2947-0": "sodium",
    "29463-7": "weight",
    "8302-2": "height",
    "89247-1": "ecog",
    "89243-0": "karnofsky",
    "20447-9": "viral_load",
    "25836-8": "viral_load",
    "29541-0": "viral_load_log10",
    "21889-1": "tumor_size",
    "97509-4": "disease_status",
}
LOCAL_CODE_TO_LOINC = {
    "HGB": "718-7",
    "PLT": "777-3",
    "ANC": "751-8",
    "CREAT": "2160-0",
    "TBIL": "1975-2",
    "AST": "1920-8",
    "ALT": "1742-6",
    "ALB": "1751-7",
    "NA": "2951-2",
    "HIVVL": "20447-9",
}
_CELLS = {
    "10*3/uL": 1.0,
    "10*9/L": 1.0,
    "K/uL": 1.0,
    "x10E3/uL": 1.0,
    "10^9/L": 1.0,
    "G/L": 1.0,
    "/uL": 0.001,
    "cells/uL": 0.001,
    "{cells}/uL": 0.001,
}
# unit spelling -> factor to the canonical unit (docs/specification.md#canonical-units; factors:
# seed unit_conversions)
UNIT_TO_CANONICAL: dict[str, dict[str, float]] = {
    "anc": _CELLS,
    "platelets": _CELLS,
    "hemoglobin": {"g/dL": 1.0, "g/dl": 1.0, "gm/dl": 1.0, "g/L": 0.1, "mmol/L": 1 / 0.6206},
    "bilirubin": {"mg/dL": 1.0, "mg/dl": 1.0, "umol/L": 1 / 17.1, "µmol/L": 1 / 17.1},
    "ast": {"U/L": 1.0, "IU/L": 1.0, "[IU]/L": 1.0, "u/l": 1.0},
    "alt": {"U/L": 1.0, "IU/L": 1.0, "[IU]/L": 1.0, "u/l": 1.0},
    "creatinine": {"mg/dL": 1.0, "mg/dl": 1.0, "umol/L": 1 / 88.4, "µmol/L": 1 / 88.4},
    "albumin": {"g/dL": 1.0, "g/dl": 1.0, "g/L": 0.1},
    "sodium": {"mmol/L": 1.0, "mEq/L": 1.0, "meq/L": 1.0},
    "weight": {"kg": 1.0, "g": 0.001, "[lb_av]": 0.45359237, "lb": 0.45359237},
    "height": {"cm": 1.0, "m": 100.0, "[in_i]": 2.54, "in": 2.54},
}
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "anc": (0.0, 100.0),
    "platelets": (1.0, 2000.0),  # floor: seed plausibility_ranges (detection limit)
    "hemoglobin": (1.0, 25.0),
    "bilirubin": (0.0, 50.0),
    "ast": (0.0, 10000.0),
    "alt": (0.0, 10000.0),
    "creatinine": (0.1, 30.0),
    "albumin": (0.5, 7.0),
    "sodium": (90.0, 200.0),
    "weight": (2.0, 400.0),
    "height": (40.0, 250.0),
}
PLAUSIBLE_ULN = {
    "bilirubin": (0.5, 2.0),
    "ast": (20.0, 100.0),
    "alt": (20.0, 100.0),
    "creatinine": (0.5, 2.0),
}
INSTITUTIONAL_ULN = {"bilirubin": 1.2, "ast": 40.0, "alt": 40.0, "creatinine": 1.2}
LOWER_LIMITS = {"anc": 1.0, "platelets": 100.0, "hemoglobin": 9.0, "albumin": 2.5, "sodium": 130.0}
SARCOMA_MORPHOLOGY = {
    "8800/3",
    "8801/3",
    "8802/3",
    "8803/3",
    "8804/3",
    "8805/3",
    "8810/3",
    "8830/3",
    "8850/3",
    "8851/3",
    "8852/3",
    "8854/3",
    "8858/3",
    "8890/3",
    "8891/3",
    "8894/3",
    "8900/3",
    "8901/3",
    "8910/3",
    "8912/3",
    "8920/3",
    "9040/3",
    "9041/3",
    "9043/3",
    "9120/3",
    "9260/3",
    "9364/3",
    "9581/3",
}
ICI_RXNORM = {"1547545", "1597876", "1792776"}
ICI_NAMES = (
    "pembrolizumab",
    "nivolumab",
    "atezolizumab",
    "durvalumab",
    "avelumab",
    "cemiplimab",
    "dostarlimab",
    "ipilimumab",
    "relatlimab",
    "tislelizumab",
    "toripalimab",
    "retifanlimab",
    "opdivo",
    "keytruda",
    "imfinzi",
    "bavencio",
    "tecentriq",
    "libtayo",
    "jemperli",
    "yervoy",
    "opdualag",
    "tevimbra",
    "loqtorzi",
    "zynyz",
)
COUNTING = {"final", "amended", "corrected"}
NOT_PRIOR_THERAPY = {"cancelled", "draft", "entered-in-error", "not-done", "not-taken"}
# pre-2022 ATC codes of the ICIs, exactly (L01XC also holds bevacizumab L01XC07, olaratumab)
ICI_ATC_OLD = {"L01XC11", "L01XC17", "L01XC18", "L01XC28", "L01XC31", "L01XC32"}
# concepts the trial treats as lifelong (seed condition_concepts): HIV, Gilbert syndrome
LIFELONG_ICD = ("B20", "Z21", "E804")
# issue 11: RxNorm product codes of the ICIs (SBD/SCD -> ingredient), SNOMED concepts, the
# system URIs/OIDs a source sends instead of the short name, request intents that give nothing
ICI_RXNORM_PRODUCTS = {"1876356", "1946832", "1946840", "1719773"}
HIV_SNOMED = {"86406008", "165816005"}
METASTASIS_SNOMED = {"128462008", "94381002"}
LIVER_METASTASIS_SNOMED = {"94381002"}
SYSTEM_ALIASES = {
    "urn:oid:2.16.840.1.113883.6.90": "icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd-10-cm",
    "http://hl7.org/fhir/sid/icd-10": "icd-10-cm",
    "urn:oid:2.16.840.1.113883.6.43.1": "icd-o-3",
    "http://terminology.hl7.org/CodeSystem/icd-o-3": "icd-o-3",
}
NOT_GIVEN_INTENTS = {"proposal", "plan"}


@dataclass
class Reading:
    """The value chosen for one analyte, or why there is none."""

    obs: Obs | None = None
    value: float | None = None  # canonical units (the bound for a comparator result)
    comparator: str | None = None
    problem: str | None = None  # set when the value cannot be used

    @property
    def usable(self) -> bool:
        return self.obs is not None and self.problem is None


@dataclass(frozen=True)
class Coordination:
    """What a coordinator reads beside a status (issue 12; docs/decisions.md "Margins, near
    flips and valid_until"): the last screening date the evidence counts, the margin to the
    limit in the criterion's own direction (positive = meets), and for an unknown the item
    that would decide it (a key of seed criterion_next_steps)."""

    valid_until: date | None = None
    margin: float | None = None
    missing_item: str | None = None


@dataclass
class Outcome:
    criteria: list[tuple[str, str, str, str]] = field(
        default_factory=list
    )  # cohort, id, status, reason
    candidates: dict[str, str] = field(default_factory=dict)
    values: dict[str, float | int | None] = field(default_factory=dict)
    coordination: dict[str, Coordination] = field(default_factory=dict)  # by criterion id
    rescreen_by: dict[str, date | None] = field(default_factory=dict)  # by cohort
    sole_missing: dict[str, str | None] = field(default_factory=dict)  # by cohort


# --- values as laboratories send them (issue 10; docs/decisions.md "Lab values as
# laboratories send them"), read here independently of the generator's labels --------------

# other codes of each analyte (seed loinc_analytes: manual counts, moles/volume, method codes)
ANALYTE_OF_LOINC.update(
    {code: "anc" for code in ("753-4",)}
    | {code: "platelets" for code in ("778-1",)}
    | {c: "hemoglobin" for c in ("20509-6", "55782-7", "30313-1", "30350-3", "59260-0", "93846-4")}
    | {code: "bilirubin" for code in ("14631-6", "77137-8")}
    | {code: "ast" for code in ("30239-8", "88112-8")}
    | {code: "alt" for code in ("1743-4", "1744-2", "76625-3", "77144-4")}
    | {code: "creatinine" for code in ("77140-2", "59826-8")}
    | {code: "albumin" for code in ("61151-7", "61152-5", "2862-1")}
)
# unit spellings of seed unit_aliases beyond the ones above (factors: seed unit_conversions;
# 1 ukat/L = 60 U/L)
_THOUSAND_PER_UL = ("K/µL", "K/μL", "K/mcL", "K/cumm", "10^3/mcL", "10^3/µL", "x10³/µL",
                    "x10^3/mcL", "x10E3/µL", "×10^3/µL", "10³/µL", "thou/mcL", "×10⁹/L",
                    "x10⁹/L", "x10^9/L", "×10^9/L", "10⁹/L", "Gpt/L")  # fmt: skip
_PER_UL = ("/mcL", "/µL", "/mm³", "cells/mcL", "cells/µL", "cells/cumm")
for _a in ("anc", "platelets"):
    UNIT_TO_CANONICAL[_a] = {
        **UNIT_TO_CANONICAL[_a],
        **dict.fromkeys(_THOUSAND_PER_UL, 1.0),
        **dict.fromkeys(_PER_UL, 0.001),
    }
for _a, _f in (("bilirubin", 1 / 17.1), ("creatinine", 1 / 88.4)):
    UNIT_TO_CANONICAL[_a] = {**UNIT_TO_CANONICAL[_a], "mcmol/L": _f, "μmol/L": _f}
for _a in ("ast", "alt"):
    UNIT_TO_CANONICAL[_a] = {
        **UNIT_TO_CANONICAL[_a],
        **dict.fromkeys(("ukat/L", "µkat/L", "μkat/L", "mckat/L"), 60.0),
    }
VL_UNITS = {"{copies}/mL": 1.0, "copies/mL": 1.0, "cp/mL": 1.0}
# printed abnormal flags (seed abnormal_flags), matched case-insensitively
FLAGS = {"h", "l", "hh", "ll", "a", "aa", "n", "hu", "lu", "*", "**", "!", "!!", "(h)", "(l)",
         "[h]", "[l]", "(hh)", "(ll)", "(a)", "high", "low", "crit", "critical", "abn",
         "abnormal", "*h", "*l", "h*", "l*"}  # fmt: skip
# "not detected" in the spellings of seed qualitative_results (HIV-1 RNA), lowercased
VL_NOT_DETECTED = {"not detected", "hiv-1 rna not detected", "hiv 1 rna not detected",
                   "undetected", "target not detected", "tnd", "none detected", "nd",
                   "undetectable", "not detectable", "below detection limit",
                   "below the limit of detection"}  # fmt: skip
VL_NOT_DETECTED_CODES = {"260415000", "LA11883-8"}
# LOINC answer codes of ECOG (LL529-9) and Karnofsky (LL4986-7): seed coded_scores
SCORE_ANSWERS = {
    **{("ecog", f"LA962{d}"): n for n, d in enumerate(("2-7", "3-5", "4-3", "5-0", "6-8", "7-6"))},
    **{("karnofsky", f"LA291{k}"): 100 - 10 * i for i, k in enumerate(
        ("75-9", "76-7", "77-5", "78-3", "79-1", "80-9", "81-7", "82-5", "83-3", "84-1"))},
    ("karnofsky", "LA9627-6"): 0,
}  # fmt: skip
_NUMBER_IN_TEXT = re.compile(
    r"^(<=|>=|<|>|=)? *([0-9]{1,3}(?:,[0-9]{3})+(?:[.][0-9]+)?|[0-9]+(?:[.][0-9]*)?|[.][0-9]+)"
    r" *(.*)$"
)


def _clean_text(text: str) -> str:
    for blank in ("\t", "\n", "\r", "\u00a0"):
        text = text.replace(blank, " ")
    text = text.replace("≤", "<=").replace("≥", ">=")
    return re.sub(" +", " ", text).strip()


_LOWERED: dict[int, tuple[dict[str, float], dict[str, float]]] = {}


def _unit_factor(units: dict[str, float], unit: str | None) -> float | None:
    """Factor to the canonical unit of a unit spelling, matched case-insensitively."""
    if unit is None:
        return None
    held = _LOWERED.get(id(units))
    if held is None or held[0] is not units:  # the lower-cased spellings, once per table
        held = _LOWERED[id(units)] = (units, {k.lower(): f for k, f in units.items()})
    return held[1].get(unit.lower())


def _read_text(units: dict[str, float], text: str) -> tuple[float, str | None, str | None] | None:
    """(number, comparator, unit inside the text) of a value sent as text, None when it cannot
    be read: a comparator, a number with thousands separators (groups of three only), then
    nothing, a printed flag, a unit, or a unit and a flag. A unit must be one known for the
    analyte."""
    m = _NUMBER_IN_TEXT.match(_clean_text(text))
    if m is None:
        return None
    comparator = m.group(1) if m.group(1) in ("<", "<=", ">", ">=") else None
    number = float(m.group(2).replace(",", ""))
    rest = m.group(3).strip()
    head, _, last = rest.rpartition(" ")
    if not rest or rest.lower() in FLAGS:
        unit = None
    elif last.lower() in FLAGS:
        unit = head.strip() or None
    else:
        unit = rest
    if unit is not None and _unit_factor(units, unit) is None:
        return None
    return number, comparator, unit


def _score(o: Obs) -> int | None:
    """An ECOG/Karnofsky score sent as a number or as a LOINC answer code."""
    if o.value is not None:
        return int(o.value)
    analyte = _analyte(o)
    return SCORE_ANSWERS.get((analyte or "", o.value_code or ""))


# --- helpers --------------------------------------------------------------------------------


_LOCAL_DATES: dict[datetime, date] = {}  # cleared per patient (evaluate)


def _local(at: datetime) -> date:
    """The local calendar date of an instant in the hospital time zone."""
    d = _LOCAL_DATES.get(at)
    if d is None:
        d = _LOCAL_DATES[at] = at.astimezone(local_zone()).date()
    return d


def _utc_date(o: Obs) -> date:  # the name predates local time: the hospital's local date
    return _local(o.effective)


def _loinc(o: Obs) -> str:
    return o.loinc or LOCAL_CODE_TO_LOINC.get(o.local_code or "", "")


def _analyte(o: Obs) -> str | None:
    return ANALYTE_OF_LOINC.get(_loinc(o))


def _in_window(o: Obs, s: date, days: int) -> bool:
    d = _utc_date(o)
    return s - timedelta(days=days) <= d <= s


def _age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def _norm_icd(code: str | None) -> str:
    return (code or "").replace(".", "").upper()


def _sent_unit(analyte: str, o: Obs) -> str | None:
    """The unit the value is in: the unit sent, else a unit inside a text value."""
    if o.unit is None and o.value_text is not None:
        read = _read_text(UNIT_TO_CANONICAL[analyte], o.value_text)
        return read[2] if read else None
    return o.unit


def _convert(analyte: str, o: Obs) -> Reading:
    factors = UNIT_TO_CANONICAL[analyte]
    value, comparator = o.value, o.comparator
    if o.value_text is not None:  # a number inside a text (issue 10)
        read = _read_text(factors, o.value_text)
        if read is None:
            return Reading(o, problem="text value cannot be read")
        number, comparator, text_unit = read
        if (
            text_unit is not None
            and o.unit is not None
            and _unit_factor(factors, text_unit) != _unit_factor(factors, o.unit)
        ):
            return Reading(o, problem="the unit in the text disagrees with the unit sent")
        value = repr(number)
    if value is None:
        return Reading(o, problem="no numeric value")
    factor = _unit_factor(factors, _sent_unit(analyte, o))
    if factor is None:
        return Reading(o, problem=f"unit {o.unit!r} cannot be converted")
    converted = float(value) * factor
    lo, hi = PLAUSIBLE[analyte]
    if not lo <= converted <= hi:
        return Reading(o, value=converted, comparator=comparator, problem="implausible value")
    return Reading(o, value=converted, comparator=comparator)


def _latest(obs: Iterable[Obs], analyte: str, s: date, days: int) -> Reading:
    """Most recent counting result in the window; ties: later issued, then worse value."""
    candidates = [
        o for o in obs if _analyte(o) == analyte and o.status in COUNTING and _in_window(o, s, days)
    ]
    if not candidates:
        return Reading(problem=f"no result in the last {days} days")
    low_is_bad = analyte in LOWER_LIMITS

    def key(o: Obs) -> tuple[object, ...]:
        r = _convert(analyte, o)
        # in a tie a usable result comes before an unusable one, then the worse value
        # (docs/clinical-rules.md "The latest result in the window")
        usable = r.usable and r.value is not None
        worse = (-r.value if low_is_bad else r.value) if usable else 0.0  # type: ignore[operator]
        return (o.effective, o.issued, usable, worse)

    return _convert(analyte, max(candidates, key=key))


def _at_least(r: Reading, limit: float) -> str:
    """met / not_met / unknown for value >= limit, honouring a comparator (choice 5)."""
    assert r.value is not None
    v, c = r.value, r.comparator
    if c in (None, "="):
        return "met" if v >= limit else "not_met"
    if c in (">", ">="):
        return "met" if v >= limit else "unknown"
    if c == "<":
        return "not_met" if v <= limit else "unknown"
    if c == "<=":
        return "not_met" if v < limit else "unknown"
    return "unknown"


def _at_most(value: float, comparator: str | None, limit: float) -> str:
    """met / not_met / unknown for value <= limit, honouring a comparator."""
    if comparator in (None, "="):
        return "met" if value <= limit else "not_met"
    if comparator in ("<", "<="):
        return "met" if value <= limit else "unknown"
    if comparator == ">":
        return "not_met" if value >= limit else "unknown"
    if comparator == ">=":
        return "not_met" if value > limit else "unknown"
    return "unknown"


def _uln(analyte: str, r: Reading) -> tuple[float, str]:
    o = r.obs
    assert o is not None
    factor = _unit_factor(UNIT_TO_CANONICAL[analyte], _sent_unit(analyte, o))
    if o.ref_high not in (None, "") and factor is not None:
        high = float(o.ref_high) * factor  # type: ignore[arg-type]
        lo, hi = PLAUSIBLE_ULN[analyte]
        if lo <= high <= hi:
            return high, "result reference range"
    return INSTITUTIONAL_ULN[analyte], "institutional"


def _lifelong(c: Cond) -> bool:
    return any(
        (sy == "icd-10-cm" and co.startswith(LIFELONG_ICD)) or (sy == "snomed" and co in HIV_SNOMED)
        for sy, co in _codes(c)
    )


def _counting_conditions(conds: Iterable[Cond], s: date) -> list[Cond]:
    """Not refuted, onset by S, and active and not abated by S - unless the concept is
    lifelong (then any clinical status and abatement)."""
    return [
        c
        for c in conds
        if c.verification_status not in ("refuted", "entered-in-error")
        and c.onset <= s
        and (
            _lifelong(c)
            or (
                c.clinical_status in (None, "active", "recurrence", "relapse")
                and (c.abatement is None or c.abatement > s)
            )
        )
    ]


def _norm_icdo3(code: str) -> str:
    """ICD-O-3 morphology spellings (9581/3, 95813, M9581/3, M-95813) as NNNN/B."""
    bare = code.strip().upper().replace(" ", "").replace("-", "")
    bare = bare[1:] if bare.startswith("M") else bare
    return f"{bare[:4]}/{bare[4]}" if len(bare) == 5 and "/" not in bare else bare


_NORM_CODE = {"icd-10-cm": _norm_icd, "icd-o-3": _norm_icdo3}


def _codes(c: Cond) -> list[tuple[str, str]]:
    first = SYSTEM_ALIASES.get(c.system_uri or "", c.system)  # an OID is the same system
    out = [(first, c.code or "")] + [(sy, co) for sy, co, _ in c.extra_codings]
    norm = _NORM_CODE
    return [(sy, norm[sy](co) if sy in norm else co) for sy, co in out]


def _morphology(code: str, listed: set[str]) -> bool:
    """A listed /3 morphology, or the same morphology with behaviour /6 (metastatic site)."""
    return code in listed or (code.endswith("/6") and code[:-1] + "3" in listed)


def _has_snomed(conds: Iterable[Cond], codes: set[str]) -> bool:
    return any(sy == "snomed" and co in codes for c in conds for sy, co in _codes(c))


def _advanced(conds: list[Cond]) -> bool:
    """Metastasis: ICD-10 C77-C79, SNOMED secondary neoplasm, or ICD-O-3 behaviour /6."""
    return (
        _has_icd(conds, "C77", "C78", "C79")
        or _has_snomed(conds, METASTASIS_SNOMED)
        or any(sy == "icd-o-3" and co.endswith("/6") for c in conds for sy, co in _codes(c))
    )


def _texts(c: Cond) -> list[str]:
    return [t.lower() for t in [c.text, c.display, *(d for _, _, d in c.extra_codings)] if t]


def _has_icd(conds: Iterable[Cond], *prefixes: str) -> bool:
    return any(sy == "icd-10-cm" and co.startswith(prefixes) for c in conds for sy, co in _codes(c))


def _is_ici(m: Med) -> bool:
    """Every coding (also behind a medicationReference): RxNorm ingredient or product, ATC, or
    a generic/brand name in the text or a coding's display."""
    for system, code in [(m.system, m.code or ""), *((s, c) for s, c, _ in m.extra_codings)]:
        if system == "rxnorm" and (code in ICI_RXNORM or code in ICI_RXNORM_PRODUCTS):
            return True
        if system == "atc" and (
            code.startswith("L01FF") or code in ("L01FX04", "L01FY02") or code in ICI_ATC_OLD
        ):
            return True
    texts = [m.name, *(d for _, _, d in m.extra_codings)]
    return any(n in t.lower() for t in texts for n in ICI_NAMES)


def _given(m: Med) -> bool:
    """Therapy given: not cancelled/draft/entered in error/not done/not taken, and not a
    request that is only a proposal or a plan (on-hold counts as exposure)."""
    return m.status not in NOT_PRIOR_THERAPY and m.intent not in NOT_GIVEN_INTENTS


# --- criteria -------------------------------------------------------------------------------


class _Evaluator:
    def __init__(self, p: PatientRecord, s: date) -> None:
        self.p = p
        self.s = s
        self.obs = [o for o in p.obs if o.bad is None]  # quarantined records never arrive
        # the same records grouped by analyte (in record order): _latest scans one group
        self.analytes = [_analyte(o) for o in self.obs]
        self.by_analyte: dict[str | None, list[Obs]] = {}
        for o, a in zip(self.obs, self.analytes, strict=True):
            self.by_analyte.setdefault(a, []).append(o)
        self.conds = _counting_conditions(p.conditions, s)
        self.age = _age_on(p.birth_date, s)
        self.values: dict[str, float | int | None] = {c: None for c in VALUE_COLUMNS}
        self.values["age_years"] = self.age
        self.coord: dict[str, Coordination] = {}

    def _of(self, analyte: str) -> list[Obs]:
        return self.by_analyte.get(analyte, [])

    def _of_any(self, analytes: tuple[str, ...]) -> list[Obs]:
        """The records of any of ``analytes``, in record order."""
        return [o for o, a in zip(self.obs, self.analytes, strict=True) if a in analytes]

    def _until(self, o: Obs | None, days: int) -> date | None:
        return _utc_date(o) + timedelta(days=days) if o is not None else None

    def lower_limit(self, analyte: str) -> tuple[str, str]:
        r = _latest(self._of(analyte), analyte, self.s, 28)
        if not r.usable:
            self.coord[analyte] = Coordination(missing_item=analyte)
            return "unknown", f"{analyte}: {r.problem}"
        self.values[analyte] = r.value
        status = _at_least(r, LOWER_LIMITS[analyte])
        assert r.value is not None
        self.coord[analyte] = Coordination(
            valid_until=self._until(r.obs, 28) if status != "unknown" else None,
            margin=r.value - LOWER_LIMITS[analyte],
            missing_item=analyte if status == "unknown" else None,
        )
        return status, f"{analyte} {r.comparator or ''}{r.value:g} vs >= {LOWER_LIMITS[analyte]:g}"

    def x_uln(self, analyte: str, limit: float, why: str) -> tuple[str, str]:
        r = _latest(self._of(analyte), analyte, self.s, 28)
        if not r.usable or r.value is None:
            self.coord[analyte] = Coordination(missing_item=analyte)
            return "unknown", f"{analyte}: {r.problem}"
        uln, source = _uln(analyte, r)
        ratio = r.value / uln
        col = "creatinine_x_uln" if analyte == "creatinine" else f"{analyte}_x_uln"
        self.values[col] = ratio
        status = _at_most(ratio, r.comparator, limit)
        self.coord[analyte] = Coordination(
            valid_until=self._until(r.obs, 28) if status != "unknown" else None,
            margin=limit * uln - r.value,
            missing_item=analyte if status == "unknown" else None,
        )
        return status, f"{analyte} {ratio:.2f}xULN (ULN {uln:g}, {source}) vs <= {limit:g}xULN{why}"

    def renal(self) -> tuple[str, str]:
        status, reason = self._renal()
        if status == "unknown":
            self.coord["renal"] = Coordination(missing_item=self._renal_missing)
        return status, reason

    _renal_missing = "creatinine"

    def _renal(self) -> tuple[str, str]:
        cr = _latest(self._of("creatinine"), "creatinine", self.s, 28)
        if not cr.usable or cr.value is None:
            return "unknown", f"creatinine: {cr.problem}"
        by_creatinine, reason = self.x_uln("creatinine", 1.5, "")
        crcl, norm, cg_reason = self.cockcroft_gault(cr)
        by_cr = self.coord["creatinine"]
        if by_creatinine == "met":
            self.coord["renal"] = by_cr
            return "met", reason
        if cr.comparator is not None:
            return "unknown", reason + "; comparator creatinine, no CG"
        if norm is None:
            self._renal_missing = cg_reason.split(":")[0]  # weight | height
            return "unknown", reason + f"; CG not computable ({cg_reason})"
        # decided by both arms or by CG: the earliest expiry of creatinine, weight and (under
        # the adult age) height
        weight = _latest(self._of("weight"), "weight", self.s, 90)
        inputs = [self._until(cr.obs, 28), self._until(weight.obs, 90)]
        if self.age < 18:
            inputs.append(self._until(self.height().obs, 365))
        until = min(d for d in inputs if d is not None)
        lo, hi = min(norm), max(norm)
        if lo >= 30:
            self.coord["renal"] = Coordination(valid_until=until, margin=lo - 30)
            return "met", reason + f"; CG {lo:.1f} mL/min/1.73m2 >= 30{cg_reason}"
        if hi < 30:
            # neither arm met: the creatinine arm is the one reported
            self.coord["renal"] = Coordination(valid_until=until, margin=by_cr.margin)
            return "not_met", reason + f"; CG {hi:.1f} mL/min/1.73m2 < 30{cg_reason}"
        self._renal_missing = "sex"
        return "unknown", reason + "; CG male/female disagree for sex " + self.p.sex

    def cockcroft_gault(self, cr: Reading) -> tuple[list[float] | None, list[float] | None, str]:
        """CrCl (mL/min) and normalized (mL/min/1.73 m²) per applicable sex factor."""
        if cr.comparator is not None or cr.value is None:
            return None, None, "comparator creatinine"
        w = _latest(self._of("weight"), "weight", self.s, 90)
        if not w.usable or w.value is None:
            return None, None, f"weight: {w.problem}"
        factors = {"male": [1.0], "female": [0.85]}.get(self.p.sex, [1.0, 0.85])
        crcl = [(140 - self.age) * w.value / (72 * cr.value) * f for f in factors]
        note = "; under 18: CG is an extrapolation" if self.age < 18 else ""
        if len(crcl) == 1:
            self.values["crcl_ml_min"] = crcl[0]
        h = self.height()
        if not h.usable or h.value is None:
            return crcl, None, f"height: {h.problem}"
        bsa = math.sqrt(h.value * w.value / 3600)  # Mosteller
        norm = [c * 1.73 / bsa for c in crcl]
        if len(norm) == 1:
            self.values["crcl_ml_min_1_73m2"] = norm[0]
        return crcl, norm, note

    def height(self) -> Reading:
        if self.age >= 18:
            eligible = [
                o
                for o in self._of("height")
                if o.status in COUNTING
                and _utc_date(o) <= self.s
                and _age_on(self.p.birth_date, _utc_date(o)) >= 18
            ]
            return _latest(eligible, "height", self.s, 365 * 200)
        return _latest(self._of("height"), "height", self.s, 365)

    def performance(self) -> tuple[str, str]:
        scored = [
            o
            for o in self._of_any(("ecog", "karnofsky"))
            if o.status in COUNTING and _in_window(o, self.s, 28) and _score(o) is not None
        ]
        if not scored:
            self.coord["performance_status"] = Coordination(missing_item="performance_status")
            return "unknown", "no performance status in the last 28 days"
        last_day = max(_utc_date(o) for o in scored)
        outcomes: dict[str, bool] = {}
        scores: dict[str, int] = {}
        for scale in ("ecog", "karnofsky"):
            same_day = [o for o in scored if _analyte(o) == scale and _utc_date(o) == last_day]
            if same_day:
                o = max(same_day, key=lambda o: (o.effective, o.issued))
                score = _score(o)
                self.values[scale] = score
                if score is not None:
                    outcomes[scale] = score <= 2 if scale == "ecog" else score >= 70
                    scores[scale] = score
        self.coord["performance_status"] = Coordination(
            valid_until=last_day + timedelta(days=28),
            margin=2.0 - scores["ecog"] if "ecog" in scores else scores["karnofsky"] - 70.0,
        )
        if len(set(outcomes.values())) > 1:
            return "review", f"ECOG and Karnofsky on {last_day} disagree"
        ok = next(iter(outcomes.values()))
        return ("met" if ok else "not_met"), f"{'/'.join(outcomes)} on {last_day}"

    def measurable(self) -> tuple[str, str]:
        lesions = [
            o
            for o in self._of("tumor_size")
            if o.status in COUNTING and _in_window(o, self.s, 28) and o.value is not None
        ]
        if not lesions:
            self.coord["measurable_disease"] = Coordination(missing_item="tumor_measurement")
            return "unknown", "no tumor measurement in the last 28 days"
        decided = [_lesion_status(o) for o in lesions]
        self.coord["measurable_disease"] = _lesion_coordination(lesions, decided)
        if "measurable" in decided:
            return "met", f"{decided.count('measurable')} of {len(decided)} measurable"
        if all(d == "not_measurable" for d in decided):
            return "not_met", f"0 of {len(decided)} measurable"
        return "unknown", f"0 of {len(decided)} measurable, {decided.count('undecided')} undecided"

    def diagnosis(self, asps: bool) -> tuple[str, str]:
        text_only = False
        if asps:
            coded = any(
                sy == "icd-o-3" and _morphology(co, {"9581/3"})
                for c in self.conds
                for sy, co in _codes(c)
            )
            text = any("alveolar soft part sarcoma" in t for c in self.conds for t in _texts(c))
            found, text_only = coded or text, text and not coded
        else:
            found = _has_icd(self.conds, "C48", "C49") or any(
                sy == "icd-o-3" and _morphology(co, SARCOMA_MORPHOLOGY)
                for c in self.conds
                for sy, co in _codes(c)
            )
        name = "ASPS" if asps else "soft tissue sarcoma"
        if not found and asps and _has_icd(self.conds, "C48", "C49"):
            histology = any(
                sy == "icd-o-3"
                for c in self.p.conditions
                if c.verification_status not in ("refuted", "entered-in-error")
                for sy, _ in _codes(c)
            )
            if not histology:
                return "review", "sarcoma coded only by site: histology to be confirmed"
        if not found:
            return "not_met", f"no {name} diagnosis"
        flag = " (text-matched)" if text_only else ""
        if _advanced(self.conds):
            return "met", f"{name}{flag} with metastasis"
        return "review", f"{name}{flag} without coded advanced disease: clinician to confirm"

    def hiv(self) -> tuple[str, str]:
        vls = [
            o
            for o in self._of_any(("viral_load", "viral_load_log10"))
            if o.status in COUNTING and _utc_date(o) <= self.s
        ]
        has_dx = _has_icd(self.conds, "B20", "Z21") or _has_snomed(self.conds, HIV_SNOMED)
        has_positive = any(_vl_class(o) == "detectable" for o in vls)
        if not (has_dx or has_positive):
            return "met", "no HIV on record"
        recent = [o for o in vls if _in_window(o, self.s, 28)]
        if not recent:
            self.coord["hiv"] = Coordination(missing_item="hiv_viral_load")
            return "unknown", "HIV without a viral load in the last 28 days"
        latest = max(recent, key=lambda o: (o.effective, o.issued))
        cls = _vl_class(latest)
        if cls == "unknown":
            self.coord["hiv"] = Coordination(missing_item="hiv_viral_load")
            return "unknown", "viral load cannot be classified (e.g. <N with N > 50)"
        copies = _vl_copies(latest)
        self.coord["hiv"] = Coordination(
            valid_until=self._until(latest, 28),
            margin=None if copies is None else 50.0 - copies,
        )
        if cls == "detectable":
            return "not_met", "detectable HIV viral load"
        if self.active_art():
            return "met", "HIV, undetectable viral load on active ART"
        # absence is not evidence: ART may be dispensed outside (issue 11)
        return "review", "HIV, undetectable viral load, no ART on record: confirm ART"

    def active_art(self) -> bool:
        for m in self.p.meds:
            if not (m.system == "atc" and (m.code or "").startswith("J05A")):
                continue
            if _local(m.start) > self.s or not _given(m):
                continue
            if m.status == "active":
                return True
            if (
                m.record_type == "statement"
                and m.status not in NOT_PRIOR_THERAPY
                and m.status != "on-hold"  # exposure, not active therapy
                and (m.end is None or _local(m.end) >= self.s)
            ):
                return True
        return False

    def ici(self) -> tuple[str, str]:
        starts = [
            m.start for m in self.p.meds if _is_ici(m) and _given(m) and _local(m.start) <= self.s
        ]
        if not starts:
            return "met", "no prior immune checkpoint inhibitor: clause does not apply"
        first = min(starts)
        progressed = any(
            o.value_code == "271299001"
            and o.status in COUNTING
            and o.effective > first
            and _utc_date(o) <= self.s
            for o in self._of("disease_status")
        )
        if progressed:
            return "met", "progression recorded after the first ICI"
        return "review", "prior ICI without recorded progression: physician's rationale needed"

    def review_items(self) -> dict[str, str]:
        pregnancy = any(
            (sy == "icd-10-cm" and co.startswith("Z33")) or (sy == "snomed" and co == "77386006")
            for c in self.conds
            for sy, co in _codes(c)
        )
        swallow = [
            co
            for c in self.conds
            for sy, co in _codes(c)
            if sy == "icd-10-cm" and (co.startswith("R13") or co == "Z931")
        ]
        return {
            "informed_consent": "consent is obtained by a person",
            "contraception": "coded pregnancy on record"
            if pregnancy
            else "willingness to be confirmed",
            "swallow_pills": ("coded " + ",".join(swallow))
            if swallow
            else "ability to be confirmed",
            "research_biopsy": "willingness to be confirmed",
        }


def _vl_copies(o: Obs) -> float | None:
    """The viral load in copies/mL the marts show (the bound of a comparator result); None for
    a qualitative answer."""
    if o.value_code is not None:
        return None
    value = o.value
    if o.value_text is not None:
        read = _read_text(VL_UNITS, o.value_text)
        if read is None:
            return None
        value = repr(read[0])
    if value is None:
        return None
    n = float(value)
    return 10**n if _analyte(o) == "viral_load_log10" else n


def _vl_class(o: Obs) -> str:
    """undetectable / detectable / unknown (docs/clinical-rules.md#hiv-status)."""
    if o.value_code is not None:
        return "undetectable" if o.value_code in VL_NOT_DETECTED_CODES else "unknown"
    value, c = o.value, o.comparator
    if o.value_text is not None:  # a qualitative answer or a number inside a text (issue 10)
        if _clean_text(o.value_text).lower().rstrip(".") in VL_NOT_DETECTED:
            return "undetectable"
        read = _read_text(VL_UNITS, o.value_text)
        if read is None:
            return "unknown"
        value, c = repr(read[0]), read[1]
    if value is None:
        return "unknown"
    n = float(value)
    if _analyte(o) == "viral_load_log10":
        n = 10**n
    if c in (None, "="):
        return "undetectable" if n < 50 else "detectable"
    if c == "<":
        return "undetectable" if n <= 50 else "unknown"
    if c == "<=":
        return "undetectable" if n < 50 else "unknown"
    return "detectable" if n >= 50 else "unknown"


def evaluate(p: PatientRecord, screening_date: date) -> Outcome:
    """Every criterion of both cohorts, the candidate status and the derived values."""
    _LOCAL_DATES.clear()  # one patient's instants; the zone cannot change within a patient
    e = _Evaluator(p, screening_date)
    gilbert = _has_icd(e.conds, "E804")
    liver = _has_icd(e.conds, "C787") or _has_snomed(e.conds, LIVER_METASTASIS_SNOMED)
    shared: dict[str, tuple[str, str]] = {
        "age": ("met", f"age {e.age} >= 12") if e.age >= 12 else ("not_met", f"age {e.age} < 12"),
        "measurable_disease": e.measurable(),
        "performance_status": e.performance(),
        "anc": e.lower_limit("anc"),
        "platelets": e.lower_limit("platelets"),
        "hemoglobin": e.lower_limit("hemoglobin"),
        "bilirubin": e.x_uln("bilirubin", 3.0 if gilbert else 1.5, " (Gilbert)" if gilbert else ""),
        "ast": e.x_uln("ast", 5.0 if liver else 2.5, " (liver metastases)" if liver else ""),
        "alt": e.x_uln("alt", 5.0 if liver else 2.5, " (liver metastases)" if liver else ""),
        "renal": e.renal(),
        "albumin": e.lower_limit("albumin"),
        "sodium": e.lower_limit("sodium"),
        "hiv": e.hiv(),
        "diagnosis_sts": e.diagnosis(asps=False),
        "diagnosis_asps": e.diagnosis(asps=True),
        "ici_refractory_progression": e.ici(),
    }
    for cid, reason in e.review_items().items():
        shared[cid] = ("review", reason)
    e.coord["age"] = Coordination(margin=float(e.age - 12))
    out = Outcome(values=e.values)
    for cohort, ids in CRITERIA.items():
        statuses = []
        for cid in ids:
            status, reason = shared[cid]
            out.criteria.append((cohort, cid, status, reason))
            statuses.append(status)
            out.coordination[cid] = e.coord.get(cid, Coordination())
        out.candidates[cohort] = candidate_status(statuses)
        expiries = [out.coordination[c].valid_until for c in ids]
        out.rescreen_by[cohort] = min((d for d in expiries if d is not None), default=None)
        unknown = [c for c, st in zip(ids, statuses, strict=True) if st == "unknown"]
        out.sole_missing[cohort] = (
            unknown[0] if len(unknown) == 1 and "not_met" not in statuses else None
        )
    return out


def candidate_status(statuses: Iterable[str]) -> str:
    """Candidate status: any not_met -> ineligible; else any unknown -> missing_data; else ready."""
    s = list(statuses)
    if "not_met" in s:
        return "ineligible"
    if "unknown" in s:
        return "missing_data"
    return "ready_for_review"


_METHOD_MIN = {"CT": 10.0, "MR": 10.0, "77477000": 10.0, "113091000": 10.0, "5880005": 10.0,
               "CR": 20.0, "DX": 20.0, "399208008": 20.0}  # fmt: skip
_METHOD_NOT_ACCEPTED = {"US", "PT", "16310003", "82918005"}


def _lesion_coordination(lesions: list[Obs], decided: list[str]) -> Coordination:
    """The lesion the marts report (measurable first, then undecided, then not measurable;
    the largest, then the latest) gives the expiry, margin and missing item."""
    order = {"measurable": 0, "undecided": 1, "not_measurable": 2}
    chosen, status = min(
        zip(lesions, decided, strict=True),
        key=lambda pair: (order[pair[1]], -_lesion_mm(pair[0]), -pair[0].effective.timestamp()),
    )
    if status == "undecided" and "measurable" not in decided:
        code = chosen.method_code
        caliper = bool(chosen.method_text and "caliper" in chosen.method_text.lower())
        if code in _METHOD_NOT_ACCEPTED:
            missing = "imaging_accepted_method"
        elif code not in _METHOD_MIN and not caliper:
            missing = "imaging_method"
        else:
            missing = "short_axis"
        return Coordination(missing_item=missing)
    limit = _lesion_limit(chosen)
    return Coordination(
        valid_until=_utc_date(chosen) + timedelta(days=28),
        margin=None if limit is None else _lesion_mm(chosen) - limit,
    )


def _lesion_mm(o: Obs) -> float:
    scale = 10.0 if o.unit == "cm" else 1.0
    if o.short_axis is not None and _nodal(o):
        return float(o.short_axis) * scale
    return float(o.value) * scale  # type: ignore[arg-type]


def _nodal(o: Obs) -> bool:
    return (
        o.body_site_code in cat.LYMPH_NODE_CODES or "lymph node" in (o.body_site_text or "").lower()
    )


def _lesion_limit(o: Obs) -> float | None:
    """The RECIST minimum the marts compare with: by an accepted method only."""
    code = o.method_code
    limit = _METHOD_MIN.get(code or "")
    if limit is None and o.method_text and "caliper" in o.method_text.lower():
        limit = 10.0
    if limit is None:
        return None
    return 15.0 if _nodal(o) else limit


def _lesion_status(o: Obs) -> str:
    """measurable | not_measurable | undecided for one tumor measurement (RECIST 1.1)."""
    scale = 10.0 if o.unit == "cm" else 1.0
    mm = float(o.value) * scale  # type: ignore[arg-type]
    code = o.method_code
    if code in _METHOD_NOT_ACCEPTED:
        return "undecided"
    limit = _METHOD_MIN.get(code or "")
    if limit is None and o.method_text and "caliper" in o.method_text.lower():
        limit = 10.0
    nodal = (
        o.body_site_code in cat.LYMPH_NODE_CODES or "lymph node" in (o.body_site_text or "").lower()
    )
    if nodal:
        if o.short_axis is not None:
            return "measurable" if float(o.short_axis) * scale >= 15.0 else "not_measurable"
        if o.size_as_component:  # the longest dimension: the short axis is no longer
            return "not_measurable" if mm < 15.0 else "undecided"
        return "measurable" if mm >= 15.0 else "not_measurable"
    if limit is not None:
        return "measurable" if mm >= limit else "not_measurable"
    if mm >= 20.0:
        return "measurable"
    return "not_measurable" if mm < 10.0 else "undecided"
