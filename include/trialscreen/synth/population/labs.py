"""The blood count and chemistry panels: the variant each analyte draws (ok, bad, missing,
stale, corrected, comparator, on a boundary...), the values written in a unit a lab uses,
with or without a reference range."""

from __future__ import annotations

from datetime import datetime, timedelta

from trialscreen.synth import catalogue as cat
from trialscreen.synth.model import Obs
from trialscreen.synth.population.builder import _Builder, _fmt, _pick

LAB_VARIANTS = (
    ("ok", 40),
    ("bad", 10),
    ("missing", 5),
    ("stale", 5),
    ("boundary_window", 3),
    ("unmappable", 3),
    ("implausible", 3),
    ("corrected_good", 3),
    ("corrected_bad", 3),
    ("prelim_latest", 3),
    ("cancelled_latest", 3),
    ("future", 3),
    ("screening_day_late", 2),
    ("tie_worse", 2),
    ("older_bad_newer_ok", 3),
    ("boundary_value", 3),
    ("comparator", 4),
)
COMPARATORS = {
    "anc": (("<", "0.5"), (">", "5.0"), ("<", "2.0")),
    "bilirubin": (("<", "0.2"),),
    "creatinine": (("<", "0.3"),),
    "ast": (("<", "10"),),
    "platelets": (("<", "10"),),
}


def _lab_value(b: _Builder, a: cat.Analyte, good: bool) -> float:
    lo, hi = a.normal if good else a.bad
    return b.r.uniform(lo, hi)


def _written(
    b: _Builder, a: cat.Analyte, canonical: float, unit: tuple[str, float, int]
) -> dict[str, str | None]:
    spelling, mult, dec = unit
    decimals = a.decimals if dec < 0 else dec
    out: dict[str, str | None] = {"value": _fmt(canonical * mult, decimals), "unit": spelling}
    if a.ref is not None and b.r.random() < 0.65:
        out["ref_low"] = _fmt(a.ref[0] * mult, decimals)
        out["ref_high"] = _fmt(a.ref[1] * mult, decimals)
    return out


def _labs(b: _Builder, clean: bool, local_ok: bool, overrides: dict[str, str]) -> dict[str, int]:
    """Draw every lab analyte. Returns the baseline panel day per panel (for renal)."""
    r = b.r
    cbc_day, cmp_day = r.randint(1, 20), r.randint(1, 20)
    panels = {}
    for panel, day in (("cbc", cbc_day), ("cmp", cmp_day)):
        when = b.at(day)
        panels[panel] = (b.order(), when, when + timedelta(hours=r.randint(1, 6)))
    if r.random() < 0.5:  # an old, stale history panel of normal values
        old_when = b.at(r.randint(35, 150))
        old = (b.order(), old_when, old_when + timedelta(hours=2))
        for name in cat.CBC + cat.CMP:
            a = cat.ANALYTES[name]
            b.add_obs(
                "lab",
                a.loincs[0],
                old[1],
                order_id=old[0],
                issued=old[2],
                **_written(b, a, _lab_value(b, a, True), a.units[0]),
            )
    for name in cat.CBC + cat.CMP:
        a = cat.ANALYTES[name]
        variant = overrides.get(name) or ("ok" if clean else _pick(r, LAB_VARIANTS))
        if variant == "comparator" and name not in COMPARATORS:
            variant = "ok"
        if variant == "boundary_value" and name not in cat.BOUNDARY:
            variant = "bad"
        b.scenario[name] = variant
        order, when, issued = panels["cbc" if name in cat.CBC else "cmp"]
        day = cbc_day if name in cat.CBC else cmp_day
        code = r.choice(a.loincs)
        unit = a.units[0] if r.random() < 0.5 else r.choice(a.units)
        if code[0] == "14682-9":
            if variant in ("ok", "bad", "stale", "missing", "corrected_good", "corrected_bad"):
                unit = a.units[2]  # the µmol/L code is always reported in µmol/L
            else:  # variants that write mg/dL or odd units keep a mass-concentration code
                code = a.loincs[0]
        local = (
            a.local if (local_ok and a.local and code == a.loincs[0] and r.random() < 0.4) else None
        )

        def emit(
            canonical: float,
            when: datetime = when,
            order: str | None = order,
            unit: tuple[str, float, int] = unit,
            a: cat.Analyte = a,
            code: tuple[str, str] = code,
            local: str | None = local,
            panel: tuple[str, datetime] = (order, issued),
            **kw: object,
        ) -> Obs:
            vals: dict[str, object] = dict(_written(b, a, canonical, unit))
            vals.update(kw)
            if order == panel[0] and "issued" not in vals:
                vals["issued"] = panel[1]  # one panel, one report time (MSH-7)
            return b.add_obs("lab", code, when, order_id=order, local_code=local, **vals)

        good = _lab_value(b, a, True)
        bad = _lab_value(b, a, False)
        if variant == "gilbert_high":
            emit(r.uniform(2.0, 3.2), unit=a.units[0], ref_low=None, ref_high=None)
        elif variant == "liver_high":
            emit(r.uniform(110, 170), ref_low=None, ref_high=None)
        elif variant == "uln_implausible":  # US Core example: range 2.0-7.0 mg/dL
            emit(r.uniform(2.4, 3.4), unit=a.units[0], ref_low="2.0", ref_high="7.0")
        elif variant in ("ok", "bad"):
            emit(good if variant == "ok" else bad)
        elif variant == "missing":
            pass
        elif variant == "stale":
            if r.random() < 0.5:
                emit(good, when=b.at(29, 23, 55), order=b.order())  # 1 day outside
            else:
                emit(good, when=b.at(r.randint(30, 60)), order=b.order())
        elif variant == "boundary_window":
            emit(bad, when=b.at(r.randint(40, 60)), order=b.order())
            emit(good, when=b.at(28, 0, 5), order=b.order())  # first minute of the window
        elif variant == "unmappable":
            emit(good, when=b.at(min(day + 3, 28)), order=b.order())
            emit(good, unit=(cat.UNMAPPABLE_UNIT[name], 1.0, -1), ref_low=None, ref_high=None)
        elif variant == "implausible":
            emit(good, when=b.at(min(day + 3, 28)), order=b.order())
            v, u = cat.IMPLAUSIBLE[name]
            emit(0.0, unit=(u, 1.0, -1), value=v, ref_low=None, ref_high=None)
        elif variant in ("corrected_good", "corrected_bad"):
            first, second = (bad, good) if variant == "corrected_good" else (good, bad)
            o = emit(first)
            emit(
                second,
                status=r.choice(("corrected", "amended")),
                issued=o.issued + timedelta(hours=r.randint(20, 48)),
            )
        elif variant in ("prelim_latest", "cancelled_latest"):
            emit(good, when=b.at(min(day + 2, 28)), order=b.order())
            st = (
                "preliminary"
                if variant == "prelim_latest"
                else r.choice(("cancelled", "entered-in-error"))
            )
            emit(bad, status=st)
        elif variant == "future":
            emit(good)
            emit(bad, when=b.at(-r.randint(1, 5)), order=b.order())
        elif variant == "screening_day_late":
            emit(good)
            emit(bad, when=b.at(0, 22, 30), order=b.order())
        elif variant == "tie_worse":
            o = emit(good)
            emit(bad, order=b.order(), issued=o.issued)
        elif variant == "older_bad_newer_ok":
            emit(bad, when=b.at(min(day + 5, 28)), order=b.order())
            emit(good, when=b.at(0, 7, 0), order=b.order())
        elif variant == "boundary_value":
            emit(0.0, unit=a.units[0], value=cat.BOUNDARY[name])
        elif variant == "comparator":
            comp, v = r.choice(COMPARATORS[name])
            emit(0.0, unit=a.units[0], value=v, comparator=comp)
        elif variant.startswith("renal_"):
            emit(
                r.uniform(2.1, 2.6) if variant != "renal_very_high" else r.uniform(4.5, 6.0),
                unit=a.units[0],
                ref_low=None,
                ref_high=None,
            )
        else:  # pragma: no cover - a typo in a variant table
            raise ValueError(variant)
    return {"cbc": cbc_day, "cmp": cmp_day}
