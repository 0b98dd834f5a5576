"""Lab results as laboratories send them (issue 10 item 7): a deterministic share of the
population gets its results rewritten the way real feeds carry them, without changing what
they say. Drawn from a stream of its own (``trialscreen-synth-issue10:<seed>:<index>``) so
the other dimensions keep their draws.

* numbers as text (HL7 ST/TX, FHIR valueString, CSV value): thousands separators, a printed
  flag after the number, surrounding blanks, the unit inside the text, a comparator inside the
  text; now and then a text no contract reads (a decimal comma, "see comment");
* unit spellings of seed unit_aliases (K/µL, 10^3/mcL, cells/mcL, mcmol/L, µkat/L ...);
* other LOINC codes of the same analyte (seed loinc_analytes: manual counts, BCG/BCP albumin,
  AST/ALT with or without P-5'-P, moles/volume codes in their unit);
* a manual ANC (753-4) newer than the automated one;
* viral loads as "Not detected", "TND", "Undetectable", "<20 copies/mL", or coded
  LA11883-8 (LOINC) / 260415000 (SNOMED);
* ECOG / Karnofsky as LOINC answer codes (seed coded_scores), rendered by the lab feed when it
  is HL7 (CE/CWE) or CSV (lab_results value_code), else as FHIR valueCodeableConcept;
* a few results under codes no seed maps (counted in marts.dq_unmapped_codes).

The oracle never reads the labels: it parses ``Obs.value_text`` and reads the codes itself.
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from trialscreen.synth.model import Obs

SHARE = 0.35

# analyte of the generator's codes and the other codes of seed loinc_analytes; a code with a
# unit family only replaces a result reported in that family
_ANALYTE = {
    "751-8": "anc", "26499-4": "anc", "777-3": "platelets", "26515-7": "platelets",
    "718-7": "hemoglobin", "1975-2": "bilirubin", "42719-5": "bilirubin", "1920-8": "ast",
    "1742-6": "alt", "2160-0": "creatinine", "38483-4": "creatinine", "14682-9": "creatinine",
    "1751-7": "albumin", "2951-2": "sodium", "2947-0": "sodium",
}  # fmt: skip
_MOLAR = {"umol/L", "µmol/L", "mmol/L"}
VARIANTS: dict[str, tuple[tuple[str, str, bool | None], ...]] = {
    "anc": (("753-4", "Neutrophils [#/volume] in Blood by Manual count", None),),
    "platelets": (("778-1", "Platelets [#/volume] in Blood by Manual count", None),),
    "hemoglobin": (
        ("20509-6", "Hemoglobin [Mass/volume] in Blood by calculation", False),
        ("55782-7", "Hemoglobin [Mass/volume] in Blood by Oximetry", False),
        ("30313-1", "Hemoglobin [Mass/volume] in Arterial blood", False),
        ("30350-3", "Hemoglobin [Mass/volume] in Venous blood", False),
        ("59260-0", "Hemoglobin [Moles/volume] in Blood", True),
        ("93846-4", "Hemoglobin [Moles/volume] in Venous blood", True),
    ),
    "bilirubin": (
        ("14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma", True),
        ("77137-8", "Bilirubin.total [Moles/volume] in Serum, Plasma or Blood", True),
    ),
    "ast": (
        ("30239-8", "AST [Enzymatic activity/volume] in S/P by With P-5'-P", None),
        ("88112-8", "AST [Enzymatic activity/volume] in S/P by No P-5'-P", None),
    ),
    "alt": (
        ("1743-4", "ALT [Enzymatic activity/volume] in S/P by With P-5'-P", None),
        ("1744-2", "ALT [Enzymatic activity/volume] in S/P by No P-5'-P", None),
        ("76625-3", "ALT [Enzymatic activity/volume] in Blood", None),
        ("77144-4", "ALT [Enzymatic activity/volume] in Serum, Plasma or Blood", None),
    ),
    "creatinine": (
        ("77140-2", "Creatinine [Moles/volume] in Serum, Plasma or Blood", True),
        ("59826-8", "Creatinine [Moles/volume] in Blood", True),
    ),
    "albumin": (
        ("61151-7", "Albumin [Mass/volume] in Serum or Plasma by BCG dye binding", False),
        ("61152-5", "Albumin [Mass/volume] in Serum or Plasma by BCP dye binding", False),
        ("2862-1", "Albumin [Mass/volume] in Serum or Plasma by Electrophoresis", False),
    ),
    "sodium": (("2947-0", "Sodium [Moles/volume] in Blood", None),),
}
# unit spelling -> spellings of seed unit_aliases for the same UCUM unit, and katal: the
# value in U/L becomes µkat/L (1 µkat/L = 60 U/L, seed unit_conversions)
RESPELL: dict[str, tuple[str, ...]] = {
    "10*3/uL": ("K/µL", "10^3/mcL", "x10³/µL", "thou/mcL", "K/mcL", "×10^3/µL"),
    "K/uL": ("K/µL", "K/mcL", "10³/µL", "K/cumm"),
    "x10E3/uL": ("x10^3/mcL", "x10E3/µL", "10^3/µL"),
    "10*9/L": ("×10⁹/L", "x10^9/L", "10⁹/L", "Gpt/L"),
    "10^9/L": ("x10⁹/L", "×10^9/L"),
    "/uL": ("/mcL", "/µL", "/mm³"),
    "cells/uL": ("cells/mcL", "cells/µL", "cells/cumm"),
    "{cells}/uL": ("cells/mcL", "/mcL"),
    "umol/L": ("mcmol/L", "µmol/l", "μmol/L"),
    "mmol/L": ("mmol/l",),
}
KATAL = ("µkat/L", "ukat/L", "mckat/L", "μkat/L")
# printed flags (seed abnormal_flags) as a lab prints them beside the value
HIGH_FLAGS = ("H", "(H)", "HIGH", "*H", "H*", "[H]")
LOW_FLAGS = ("L", "(L)", "LOW", "*L", "[L]")
OTHER_FLAGS = ("*", "!", "A", "ABN")


def _flag(o: Obs, value: str, r: random.Random) -> str:
    v = float(value)
    if o.ref_high is not None and v > float(o.ref_high):
        return r.choice(HIGH_FLAGS)
    if o.ref_low is not None and v < float(o.ref_low):
        return r.choice(LOW_FLAGS)
    return "N" if o.ref_high is not None else r.choice(OTHER_FLAGS)


NOT_DETECTED_TEXTS = (
    "Not detected",
    "NOT DETECTED",
    "TND",
    "Undetectable",
    "Target not detected",
    "undetected",
    "Not detected.",
)
LOINC_NOT_DETECTED = ("LA11883-8", "Not detected")
SNOMED_NOT_DETECTED = ("260415000", "Not detected")
ECOG_ANSWERS = {
    0: "LA9622-7", 1: "LA9623-5", 2: "LA9624-3", 3: "LA9625-0", 4: "LA9626-8", 5: "LA9627-6",
}  # fmt: skip
KARNOFSKY_ANSWERS = {
    100: "LA29175-9", 90: "LA29176-7", 80: "LA29177-5", 70: "LA29178-3", 60: "LA29179-1",
    50: "LA29180-9", 40: "LA29181-7", 30: "LA29182-5", 20: "LA29183-3", 10: "LA29184-1",
}  # fmt: skip
# codes no seed maps (neither loinc_analytes nor ignored_observation_codes): counted unmapped
UNMAPPED = (
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "98", None),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "4.1", None),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", "9.4", None),
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "104", "GLU"),
)
VL_CODES = {"20447-9", "25836-8"}


def _number(value: str, comparator: str | None, r: random.Random) -> str:
    space = " " if comparator and r.random() < 0.5 else ""
    return f"{comparator}{space}{value}" if comparator else value


def _thousands(value: str) -> str | None:
    whole, dot, frac = value.partition(".")
    if whole.startswith("-") or len(whole) < 4:
        return None
    return f"{int(whole):,}" + (dot + frac if dot else "")


def _text_form(o: Obs, r: random.Random, fhir: bool) -> None:
    """Render o's value as text (what it says is unchanged, except an unreadable text).
    ``fhir``: a valueString has no unit of its own, so the unit is always inside the text."""
    assert o.value is not None
    form = r.choice(("thousands", "flag", "blanks", "unit", "unit_flag", "unit_kept", "flag"))
    if r.random() < 0.06:
        form = "unreadable"
    if fhir and form in ("flag", "blanks", "unit_kept"):
        form = "unit_flag" if form == "flag" else "unit"
    if form.startswith("unit") and (not o.unit or " " in o.unit):
        form = "flag"
    v = o.value
    if form == "thousands":
        t = _thousands(v)
        form, v = ("thousands", t) if t is not None else ("flag", v)
    if fhir and form == "flag" and o.unit and " " not in o.unit:  # no unit in a valueString
        form = "unit_flag"
    num = _number(v, o.comparator, r)
    if fhir and form == "thousands" and o.unit:
        num = f"{num} {o.unit}"
    if form == "flag":
        text = f"{num} {_flag(o, o.value, r)}"
    elif form == "blanks":
        text = r.choice((f"  {num} ", f"{num}\t", f"\u00a0{num}", f" {num}  "))
    elif form.startswith("unit"):
        text = f"{num} {o.unit}"
        if form == "unit_flag":
            text += f" {_flag(o, o.value, r)}"
        if form != "unit_kept":
            o.unit = None  # the unit only in the text
    elif form == "unreadable":
        whole, dot, frac = v.partition(".")
        text = (
            f"{whole},{frac}"
            if dot and 0 < len(frac) < 3
            else r.choice(("see comment", f"{v} see comment", "pending"))
        )
    else:
        text = num
    if fhir:
        o.unit = None
    o.value_text, o.value, o.comparator = text, None, None


def _respell(o: Obs, r: random.Random) -> None:
    assert o.value is not None
    if o.unit in ("U/L", "IU/L", "[IU]/L", "u/l") and not o.comparator:
        o.unit = r.choice(KATAL)
        o.value = f"{float(o.value) / 60:.2f}"
        if o.ref_high is not None:
            o.ref_high = f"{float(o.ref_high) / 60:.2f}"
        if o.ref_low is not None:
            o.ref_low = f"{float(o.ref_low) / 60:.2f}"
    elif o.unit in RESPELL:
        o.unit = r.choice(RESPELL[o.unit])


def _new_obs(r: random.Random, template: Obs, **kw: object) -> Obs:
    o = Obs(
        id=str(uuid.UUID(int=r.getrandbits(128), version=4)),
        kind="lab",
        loinc=template.loinc,
        display=template.display,
        effective=template.effective,
        issued=template.issued,
    )
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def apply(obs: list[Obs], seed: int, index: int, lab_feed: str, scenario: dict[str, str]) -> None:
    r = random.Random(f"trialscreen-synth-issue10:{seed}:{index}")
    if r.random() >= SHARE:
        return
    shapes: list[str] = []
    # other codes of the analyte, one choice per (order, code) so a correction keeps its code
    recoded: dict[tuple[str | None, str], tuple[str, str] | None] = {}
    for o in obs:
        analyte = _ANALYTE.get(o.loinc)
        if o.kind != "lab" or o.bad is not None or analyte is None or o.local_code:
            continue
        key = (o.order_id, o.loinc)
        if key not in recoded:
            molar = o.unit in _MOLAR
            fits = [(c, d) for c, d, m in VARIANTS[analyte] if m is None or m == molar]
            recoded[key] = r.choice(fits) if fits and r.random() < 0.25 else None
        if recoded[key] is not None:
            o.loinc, o.display = recoded[key]  # type: ignore[misc]
            shapes.append("code_variant")
    for o in obs:
        if o.kind != "lab" or o.bad is not None or o.value is None:
            continue
        if o.loinc in VL_CODES:
            shapes += _viral_load(o, r, lab_feed == "fhir")
            continue
        if o.loinc not in _ANALYTE and o.loinc not in {c for v in VARIANTS.values() for c, *_ in v}:
            continue
        x = r.random()
        if x < 0.15:
            _respell(o, r)
            shapes.append("unit_spelling")
        if 0.1 < x < 0.4:
            _text_form(o, r, lab_feed == "fhir")
            shapes.append("text")
    for o in obs:  # coded "not detected": as a LOINC answer, or as text
        if o.kind == "lab" and o.value_code == SNOMED_NOT_DETECTED[0] and r.random() < 0.7:
            shapes.append(_not_detected(o, r))
    # ECOG / Karnofsky as LOINC answer codes
    for o in obs:
        if o.kind != "perf" or o.value is None or o.local_code or r.random() >= 0.6:
            continue
        answers = ECOG_ANSWERS if o.loinc == "89247-1" else KARNOFSKY_ANSWERS
        code = answers.get(int(o.value))
        if code is None:
            continue
        o.value_code, o.value_code_display = code, f"{o.display}: {o.value}"
        o.value_code_system, o.value = "loinc", None
        if lab_feed != "fhir":
            o.kind = "lab"  # sent by the lab feed: HL7 CE/CWE or a CSV lab_results row
        shapes.append("coded_score")
    # a manual ANC newer than the newest automated one
    ancs = [o for o in obs if o.kind == "lab" and o.bad is None and o.loinc == "751-8"]
    if ancs and r.random() < 0.5:
        last = max(ancs, key=lambda o: o.effective)
        when = last.effective + timedelta(hours=r.randint(2, 40))
        value = f"{r.uniform(0.2, 0.8) if r.random() < 0.4 else r.uniform(1.8, 6.5):.1f}"
        obs.append(
            _new_obs(
                r,
                last,
                loinc="753-4",
                display="Neutrophils [#/volume] in Blood by Manual count",
                effective=when,
                issued=when + timedelta(hours=r.randint(1, 4)),
                value=value,
                unit=r.choice(("10*9/L", "K/uL", "10*3/uL")),
                order_id=f"MAN{index + 1:08d}",
            )
        )
        shapes.append("manual_anc")
    if r.random() < 0.3:  # results under codes no seed maps
        for code, display, unit, value, local in r.sample(UNMAPPED, r.randint(1, 2)):
            template = next((o for o in obs if o.kind == "lab" and o.bad is None), None)
            if template is None:
                break
            obs.append(
                _new_obs(
                    r,
                    template,
                    loinc=code,
                    display=display,
                    value=value,
                    unit=unit,
                    local_code=local if lab_feed != "fhir" else None,
                    order_id=template.order_id,
                )
            )
            shapes.append("unmapped_code")
    if shapes:
        scenario["issue10"] = ",".join(sorted(set(shapes)))


def _not_detected(o: Obs, r: random.Random) -> str:
    """Not detected as LOINC LA11883-8, SNOMED 260415000 or text (the value is dropped)."""
    o.value, o.comparator, o.unit = None, None, None
    o.value_code, o.value_code_display, o.value_code_system = None, None, None
    x = r.random()
    if x < 0.4:
        o.value_code, o.value_code_display = LOINC_NOT_DETECTED
        o.value_code_system = "loinc"
        return "vl_loinc_answer"
    if x < 0.55:
        o.value_code, o.value_code_display = SNOMED_NOT_DETECTED
        return "vl_snomed_answer"
    o.value_text = r.choice(NOT_DETECTED_TEXTS)
    return "vl_not_detected_text"


def _viral_load(o: Obs, r: random.Random, fhir: bool) -> list[str]:
    """A viral load below 50 copies/mL ("<20") may be sent as "not detected" instead (both
    are undetectable by docs/clinical-rules.md#hiv-status); any count may be sent as text."""
    if o.value is None:
        return []
    x = r.random()
    if o.comparator == "<" and float(o.value) <= 50 and x < 0.45:
        return [_not_detected(o, r)]
    if x < 0.8:
        _text_form_vl(o, r, fhir)
        return ["vl_text"]
    return []


def _text_form_vl(o: Obs, r: random.Random, fhir: bool) -> None:
    """A copies/mL viral load as text: "<20 copies/mL", "< 20", "35 copies/mL"."""
    assert o.value is not None
    num = _number(o.value, o.comparator, r)
    if fhir or r.random() < 0.6:
        o.value_text, o.unit = f"{num} {r.choice(('copies/mL', 'copies/ml', 'cp/mL'))}", None
    else:
        o.value_text = num
    o.value, o.comparator = None, None
