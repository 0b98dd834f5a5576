"""HIV (the diagnosis, antiretroviral therapy, viral loads as numbers, bounds, log10 and
"not detected") and prior immune checkpoint inhibitors with or without progression."""

from __future__ import annotations

from trialscreen.synth import catalogue as cat
from trialscreen.synth.population.builder import _Builder, _pick


def _hiv(b: _Builder, clean: bool) -> None:
    r = b.r
    v = (
        "none"
        if clean
        else _pick(
            r,
            (
                ("none", 80),
                ("art_undetectable", 5),
                ("art_detectable", 2),
                ("no_art_undetectable", 2),
                ("vl_lt200", 2),
                ("vl_stale", 2),
                ("no_vl", 2),
                ("detectable_no_dx", 1),
                ("art_stopped", 2),
                ("art_statement_open", 2),
            ),
        )
    )
    b.scenario["hiv"] = v
    if v == "none":
        return
    if v != "detectable_no_dx":
        code = r.choice(
            (
                ("B20", "Human immunodeficiency virus [HIV] disease"),
                ("Z21", "Asymptomatic human immunodeficiency virus [HIV] infection status"),
            )
        )
        b.cond("icd-10-cm", code[0], code[1], b.day(r.randint(400, 6000)))
    drug = r.choice(cat.ART_DRUGS)
    start = b.at(r.randint(200, 3000))
    if v in ("art_undetectable", "art_detectable", "vl_lt200", "vl_stale", "no_vl"):
        b.med("atc", drug[0], drug[1], "active", start, record_type="request")
    elif v == "art_stopped":
        b.med(
            "atc",
            drug[0],
            drug[1],
            "stopped",
            start,
            record_type="request",
            end=b.at(r.randint(30, 150)),
        )
    elif v == "art_statement_open":
        b.med("atc", drug[0], drug[1], "active", start, record_type="statement")
    d = r.randint(1, 25)
    if v in ("art_undetectable", "no_art_undetectable", "art_stopped", "art_statement_open"):
        kind = r.choice(("lt20", "lt50", "not_detected", "log", "numeric"))
        if kind == "lt20":
            b.add_obs(
                "lab",
                cat.VL,
                b.at(d),
                comparator="<",
                value="20",
                unit="{copies}/mL",
                local_code="HIVVL" if r.random() < 0.3 else None,
            )
        elif kind == "lt50":
            b.add_obs("lab", cat.VL_ALT, b.at(d), comparator="<", value="50", unit="copies/mL")
        elif kind == "not_detected":
            b.add_obs(
                "lab",
                cat.VL,
                b.at(d),
                value_code=cat.NOT_DETECTED[0],
                value_code_display=cat.NOT_DETECTED[1],
            )
        elif kind == "log":
            b.add_obs(
                "lab",
                cat.VL_LOG,
                b.at(d),
                value=f"{r.uniform(0.9, 1.6):.2f}",
                unit="{Log_copies}/mL",
            )
        else:
            b.add_obs("lab", cat.VL, b.at(d), value=str(r.randint(21, 45)), unit="{copies}/mL")
    elif v in ("art_detectable", "detectable_no_dx"):
        if r.random() < 0.5:
            b.add_obs("lab", cat.VL, b.at(d), value=str(r.randint(400, 90000)), unit="{copies}/mL")
        else:
            b.add_obs(
                "lab",
                cat.VL_LOG,
                b.at(d),
                value=f"{r.uniform(3.0, 5.0):.2f}",
                unit="{Log_copies}/mL",
            )
    elif v == "vl_lt200":
        b.add_obs("lab", cat.VL, b.at(d), comparator="<", value="200", unit="{copies}/mL")
    elif v == "vl_stale":
        b.add_obs(
            "lab", cat.VL, b.at(r.randint(29, 90)), comparator="<", value="20", unit="{copies}/mL"
        )


def _ici(b: _Builder, clean: bool) -> None:
    r = b.r
    v = (
        _pick(
            r,
            (
                ("none", 85),
                ("progressed", 6),
                ("no_progression", 5),
                ("progression_before_ici", 2),
                ("entered_in_error", 2),
            ),
        )
        if not clean
        else ("progressed" if r.random() < 0.1 else "none")
    )
    b.scenario["ici"] = v
    if v == "none":
        return
    system, code, name = r.choice(cat.ICI_DRUGS)
    start_days = r.randint(120, 700)
    status = (
        r.choice(("completed", "stopped", "active"))
        if v != "entered_in_error"
        else ("entered-in-error")
    )
    b.med(system, code, name, status, b.at(start_days))
    if v == "progressed":
        b.add_obs(
            "status",
            cat.DISEASE_STATUS,
            b.at(r.randint(5, start_days - 30)),
            value_code=cat.WORSENED[0],
            value_code_display=cat.WORSENED[1],
        )
    elif v == "progression_before_ici":
        b.add_obs(
            "status",
            cat.DISEASE_STATUS,
            b.at(start_days + r.randint(10, 90)),
            value_code=cat.WORSENED[0],
            value_code_display=cat.WORSENED[1],
        )
