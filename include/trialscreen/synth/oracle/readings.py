"""One result read as the oracle reads it: a number inside a text, a unit matched in any
case, the hospital's local date, the analyte of a code, the latest counting result in a
window (``Reading``), limits honouring a comparator, the ULN, and the class and copies of
a viral load."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from trialscreen.synth.model import Obs, local_zone
from trialscreen.synth.oracle.lab_tables import (
    ANALYTE_OF_LOINC,
    COUNTING,
    FLAGS,
    INSTITUTIONAL_ULN,
    LOCAL_CODE_TO_LOINC,
    LOWER_LIMITS,
    PLAUSIBLE,
    PLAUSIBLE_ULN,
    SCORE_ANSWERS,
    UNIT_TO_CANONICAL,
    VL_NOT_DETECTED,
    VL_NOT_DETECTED_CODES,
    VL_UNITS,
)

_NUMBER_IN_TEXT = re.compile(
    r"^(<=|>=|<|>|=)? *([0-9]{1,3}(?:,[0-9]{3})+(?:[.][0-9]+)?|[0-9]+(?:[.][0-9]*)?|[.][0-9]+)"
    r" *(.*)$"
)


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
