"""Measurements beside the labs: weight and height (for Cockcroft-Gault), performance
status (ECOG, Karnofsky, Lansky) and tumor measurements (RECIST methods, nodal sites,
mCODE components)."""

from __future__ import annotations

from trialscreen.synth import catalogue as cat
from trialscreen.synth.population.builder import _Builder, _fmt, _pick


def _body(b: _Builder, age: int, variant: str) -> None:
    """Weight (90-day window) and height (adult: measured at >= 18; minor: 365 days)."""
    r = b.r
    adult = age >= 18
    w = r.uniform(52, 105) if adult else r.uniform(32, 65)
    h = r.uniform(152, 192) if adult else r.uniform(135, 175)
    if variant == "renal_very_high":
        w = r.uniform(42, 55)
    w_unit = r.choice((("kg", 1.0, 1), ("kg", 1.0, 1), ("[lb_av]", 2.20462, 1), ("lb", 2.20462, 1)))
    h_unit = r.choice(
        (("cm", 1.0, 0), ("cm", 1.0, 1), ("[in_i]", 0.393701, 1), ("in", 0.393701, 1))
    )
    if variant != "no_weight":
        days = r.randint(100, 300) if variant == "stale_weight" else r.randint(0, 80)
        b.add_obs(
            "vital", cat.WEIGHT, b.at(days), value=_fmt(w * w_unit[1], w_unit[2]), unit=w_unit[0]
        )
    if variant != "no_height":
        if variant == "height_as_minor" and age >= 18:
            days = (age - 16) * 365 + 30  # measured at 16: does not count for an adult
        elif adult:
            days = r.randint(30, min(2000, (age - 18) * 365 + 30))
        else:
            days = r.randint(10, 300)
        b.add_obs(
            "vital", cat.HEIGHT, b.at(days), value=_fmt(h * h_unit[1], h_unit[2]), unit=h_unit[0]
        )


def _performance(b: _Builder, clean: bool, age: int, csv: bool) -> None:
    r = b.r
    v = (
        "ecog_ok"
        if clean
        else _pick(
            r,
            (
                ("ecog_ok", 30),
                ("kps_ok", 15),
                ("ecog_bad", 8),
                ("kps_bad", 8),
                ("same_day_conflict", 7),
                ("same_day_agree", 6),
                ("older_bad_newer_ok", 5),
                ("stale", 6),
                ("none", 6),
                ("future", 4),
                ("prelim_latest", 3),
                ("boundary", 4),
            ),
        )
    )
    b.scenario["performance"] = v
    kps_code = cat.KPS
    d = r.randint(0, 25)
    kw: dict[str, object] = {}
    if csv and age < 16:
        kw["local_code"] = "lansky"  # CSV scale column; FHIR has no Lansky code

    def ecog(score: int, days: int, hour: int | None = None, **x: object) -> None:
        b.add_obs("perf", cat.ECOG, b.at(days, hour), value=str(score), **x)

    def kps(score: int, days: int, hour: int | None = None, **x: object) -> None:
        b.add_obs("perf", kps_code, b.at(days, hour), value=str(score), **kw, **x)

    if v == "ecog_ok":
        ecog(r.randint(0, 2), d)
    elif v == "kps_ok":
        kps(r.choice((70, 80, 90, 100)), d)
    elif v == "ecog_bad":
        ecog(r.randint(3, 4), d)
    elif v == "kps_bad":
        kps(r.choice((40, 50, 60)), d)
    elif v == "same_day_conflict":
        ecog(2, d, 9)
        kps(60, d, 14)
    elif v == "same_day_agree":
        ecog(1, d, 9)
        kps(80, d, 14)
    elif v == "older_bad_newer_ok":
        ecog(3, min(d + 5, 28))
        kps(80, d)
    elif v == "stale":
        ecog(1, r.randint(29, 60))
    elif v == "future":
        ecog(1, d)
        ecog(4, -r.randint(1, 10))
    elif v == "prelim_latest":
        ecog(1, d + 2)
        ecog(4, d, status="preliminary")
    elif v == "boundary":
        if r.random() < 0.5:
            ecog(2, 28, 0)
        else:
            kps(70, d)


def _tumor(b: _Builder, clean: bool, csv: bool = False) -> None:
    """csv: the CSV feed carries the measurement (no mCODE components there)."""
    r = b.r
    v = (
        "ct_ok"
        if clean
        else _pick(
            r,
            (
                ("ct_ok", 25),
                ("mr_ok", 8),
                ("caliper_ok", 5),
                ("cxr_ok", 5),
                ("cxr_small", 5),
                ("ct_small", 6),
                ("nodal_ok", 5),
                ("nodal_small", 5),
                ("no_method", 6),
                ("stale", 6),
                ("none", 10),
                ("cm_unit", 5),
                ("boundary", 4),
                ("mixed", 5),
                ("cancelled", 3),
                # issue 10 item 6: tumour measurements as mCODE sends them
                ("snomed_method", 4),
                ("ultrasound", 3),
                ("no_method_25", 3),
                ("no_method_15", 3),
                ("no_method_8", 3),
                ("nodal_snomed", 3),
                ("nodal_text", 3),
                ("component", 3),
                ("component_nodal", 3),
            ),
        )
    )
    b.scenario["tumor"] = v
    d = r.randint(0, 25)

    def lesion(
        size: str,
        unit: str = "mm",
        method: str | None = "CT",
        text: str | None = None,
        nodal: bool = False,
        days: int = d,
        status: str = "final",
        site: tuple[str | None, str] | None = None,
        short_axis: str | None = None,
        component: bool = False,
    ) -> None:
        if site is None:
            site = cat.LYMPH_NODE if nodal else r.choice(cat.BODY_SITES)
        b.add_obs(
            "tumor",
            cat.TUMOR,
            b.at(days),
            value=size,
            unit=unit,
            method_code=method,
            method_text=text,
            body_site_code=site[0],
            body_site_text=site[1],
            status=status,
            short_axis=short_axis,
            size_as_component=component,
        )

    big = str(r.randint(12, 70))
    if v == "ct_ok":
        lesion(big)
    elif v == "mr_ok":
        lesion(big, method="MR")
    elif v == "caliper_ok":
        lesion(big, method=None, text=r.choice(("Caliper measurement", "measured with calipers")))
    elif v == "cxr_ok":
        lesion(str(r.randint(21, 60)), method=r.choice(("CR", "DX")))
    elif v == "cxr_small":
        lesion(str(r.randint(11, 19)), method=r.choice(("CR", "DX")))
    elif v == "ct_small":
        lesion(str(r.randint(4, 9)), method=r.choice(("CT", "MR")))
    elif v == "nodal_ok":
        lesion(str(r.randint(15, 30)), nodal=True)
    elif v == "nodal_small":
        lesion(str(r.randint(10, 14)), nodal=True)
    elif v == "no_method":
        lesion(big, method=None)
    elif v == "stale":
        lesion(big, days=r.randint(29, 90))
    elif v == "cm_unit":
        lesion(f"{r.uniform(1.1, 6.0):.1f}", unit="cm", method="CT")
    elif v == "boundary":
        lesion("10", method="CT", days=28)
    elif v == "mixed":
        lesion(str(r.randint(4, 9)))
        lesion(str(r.randint(11, 14)), nodal=True)
        lesion(str(r.randint(15, 40)), method="MR")
    elif v == "cancelled":
        lesion(big, status="entered-in-error")
    elif v == "snomed_method":
        modality = r.choice(("CT", "MR", "CR"))
        size = str(r.randint(4, 40))
        lesion(size, method=cat.SNOMED_METHODS[modality])
    elif v == "ultrasound":
        lesion(str(r.randint(12, 60)), method=r.choice(("US", cat.SNOMED_METHODS["US"])))
    elif v == "no_method_25":
        lesion("25", method=None)
    elif v == "no_method_15":
        lesion("15", method=None)
    elif v == "no_method_8":
        lesion("8", method=None)
    elif v == "nodal_snomed":
        lesion(str(r.randint(10, 30)), site=r.choice(cat.LYMPH_NODE_SITES))
    elif v == "nodal_text":
        lesion(str(r.randint(10, 30)), site=(None, r.choice(cat.LYMPH_NODE_TEXTS)))
    elif v == "component":
        lesion(str(r.randint(6, 40)), component=not csv, short_axis=str(r.randint(3, 5)))
    elif v == "component_nodal":
        longest = r.randint(12, 35)
        short = r.choice((None, str(r.randint(8, min(longest, 25)))))
        lesion(str(longest), nodal=True, component=not csv, short_axis=short)
