"""HL7 v2 field values: TS/DTM timestamps and dates, numbers with comparators, OBX-7
reference ranges. Pure functions of text (cached where values repeat). OBX-11 result
statuses land as sent: staging maps them (macro normalize_result_status).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache

from trialscreen.feeds.timestamps import representable

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_RE = re.compile(rf"^{_NUMBER}$")
_COMPARED_RE = re.compile(rf"^(<=|>=|<|>|=)?\s*({_NUMBER})$")
_RANGE_RE = re.compile(rf"^({_NUMBER})\s*(?:-|–|_|to|TO|To)\s*({_NUMBER})(.*)$", re.DOTALL)
_BOUND_RE = re.compile(rf"^(<=|>=|<|>|≤|≥)\s*({_NUMBER})(.*)$", re.DOTALL)
_DIGIT_RE = re.compile(r"\d")
_TS_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6})\d*)?(?:([+-])(\d{2})(\d{2}))?$"
)


def _inline_numeric(value: str) -> tuple[float | None, str | None]:
    """``12.5``, ``.2``, ``-10``, ``<0.5``, ``>= 10`` -> (number, comparator)."""
    m = _COMPARED_RE.match(value.strip())
    if not m:
        return None, None
    comparator = m.group(1) if m.group(1) in ("<", "<=", ">", ">=") else None
    return float(m.group(2)), comparator


def _structured_numeric(c: list[str]) -> tuple[float | None, str | None]:
    """SN ``comparator^num1^separator^num2``: a plain or compared number; ratios/ranges -> None."""
    comparator = c[0].strip()
    num1 = c[1].strip() if len(c) > 1 else ""
    separator = c[2].strip() if len(c) > 2 else ""
    num2 = c[3].strip() if len(c) > 3 else ""
    if separator or num2 or not _NUMBER_RE.match(num1):
        return None, None
    return float(num1), comparator if comparator in ("<", "<=", ">", ">=") else None


@lru_cache(maxsize=4096)
def parse_reference_range(text: str) -> tuple[float | None, float | None]:
    """(low, high) from one unambiguous range; anything with a second number -> (None, None)."""
    s = text.strip()
    if len(s) > 2 and s[0] == "(" and s.find(")") > 0:
        inner, tail = s[1 : s.find(")")], s[s.find(")") + 1 :]
        if _DIGIT_RE.search(tail):
            return None, None
        s = inner.strip()
    m = _RANGE_RE.match(s)
    if m and not _DIGIT_RE.search(m.group(3)):
        return float(m.group(1)), float(m.group(2))
    m = _BOUND_RE.match(s)
    if m and not _DIGIT_RE.search(m.group(3)):
        if m.group(1) in ("<", "<=", "≤"):
            return None, float(m.group(2))
        return float(m.group(2)), None
    return None, None


@lru_cache(maxsize=65536)
def parse_ts_sent(raw: str) -> tuple[datetime, int | None] | None:
    """HL7 TS/DTM ``YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]`` as sent: (naive wall clock, UTC
    offset in minutes or None when none was sent). Invalid, or not representable
    (``trialscreen.feeds.timestamps``: years 1-9999, offset within ±18 h) -> None."""
    if not raw:
        return None
    m = _TS_RE.match(raw.strip())
    if not m:
        return None
    year, month, day, hour, minute, second, frac, sign, off_h, off_m = m.groups()
    try:
        value = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((frac or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    offset: int | None = None
    if sign:
        if int(off_m) >= 60:
            return None
        offset = (int(off_h) * 60 + int(off_m)) * (1 if sign == "+" else -1)
    if not representable(value, offset):
        return None
    return value, offset


def parse_ts(raw: str) -> datetime | None:
    """The wall clock of an HL7 TS as sent (no conversion; see ``parse_ts_sent``)."""
    sent = parse_ts_sent(raw)
    return sent[0] if sent else None


def ts_offset_min(raw: str) -> int | None:
    """The UTC offset (minutes) an HL7 TS was sent with; None when none or invalid."""
    sent = parse_ts_sent(raw)
    return sent[1] if sent else None


def parse_date(raw: str) -> date | None:
    """The calendar date of an HL7 TS (no time-zone shift: a birth date is a date)."""
    m = _TS_RE.match(raw[:8] if len(raw) >= 8 else raw.strip())
    if not m:
        return None
    try:  # a date is a date: no offset, no margin (0001-01-01 is kept, flagged in dbt)
        return date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None
