"""Tumor measurements under RECIST 1.1: the minimum size by method, nodal lesions by short
axis, the status of one measurement, and the lesion the marts report (its expiry, margin
and missing item)."""

from __future__ import annotations

from datetime import timedelta

from trialscreen.synth import catalogue as cat
from trialscreen.synth.model import Obs
from trialscreen.synth.oracle.outcome import Coordination
from trialscreen.synth.oracle.readings import _utc_date

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
