"""Scenarios -> patient records, one patient at a time, deterministically.

Every patient gets its own ``random.Random`` seeded from ``(seed, index)``, so a patient's
record never depends on how many patients came before it or on chunking; the whole
population is reproducible byte for byte per (seed, screening_date).

Each patient draws one variant per *dimension* (diagnosis, each lab, renal, performance,
tumor, HIV, prior ICI, extras). About 45 % of patients are "clean" (every dimension takes
its normal variant) so that ``ready_for_review`` candidates exist; the rest draw variants
with the weights below. The variant labels are kept in ``PatientRecord.scenario`` for
debugging only: the oracle never reads them, it decides from the records themselves.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from trialscreen.synth import catalogue as cat
from trialscreen.synth import labshapes
from trialscreen.synth.model import Cond, Med, Obs, PatientRecord

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


# uuid.UUID(version=4): variant bits 10 (RFC 4122), version nibble 4
_UUID_KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_V4 = (0x8000 << 48) | (4 << 76)


def _pick(r: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    total = sum(w for _, w in weighted)
    x = r.random() * total
    for label, w in weighted:
        x -= w
        if x < 0:
            return label
    return weighted[-1][0]


def _fmt(value: float, decimals: int) -> str:
    """Decimal text as a lab prints it (no exponent, fixed decimals)."""
    return f"{value:.{max(decimals, 0)}f}"


class _Builder:
    """Holds one patient's random stream and screening date while records are drawn."""

    def __init__(self, seed: int, index: int, screening_date: date) -> None:
        self.r = random.Random(f"trialscreen-synth:{seed}:{index}")
        self.index = index
        self.s = screening_date
        self.n_ids = 0
        self.n_orders = 0
        self.obs: list[Obs] = []
        self.conditions: list[Cond] = []
        self.meds: list[Med] = []
        self.scenario: dict[str, str] = {}

    # ids and times -------------------------------------------------------------------
    def uid(self) -> str:
        """``str(uuid.UUID(int=<128 random bits>, version=4))``, without the UUID object."""
        n = (self.r.getrandbits(128) & _UUID_KEEP) | _UUID_V4
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def order(self) -> str:
        self.n_orders += 1
        return f"ORD{self.index + 1:08d}{self.n_orders:03d}"

    def at(self, days_ago: int, hour: int | None = None, minute: int | None = None) -> datetime:
        h = self.r.randint(6, 17) if hour is None else hour
        m = self.r.choice((0, 5, 15, 30, 45)) if minute is None else minute
        return datetime.combine(self.s - timedelta(days=days_ago), time(h, m), tzinfo=UTC)

    def day(self, days_ago: int) -> date:
        return self.s - timedelta(days=days_ago)

    # records ------------------------------------------------------------------------------
    def add_obs(self, kind: str, code: tuple[str, str], when: datetime, **kw: Any) -> Obs:
        issued = kw.pop("issued", None) or when + timedelta(hours=self.r.randint(1, 6))
        o = Obs(
            id=self.uid(),
            kind=kind,
            loinc=code[0],
            display=code[1],
            effective=when,
            issued=issued,
            **kw,
        )
        self.obs.append(o)
        return o

    def cond(self, system: str, code: str | None, display: str, onset: date, **kw: Any) -> Cond:
        c = Cond(id=self.uid(), system=system, code=code, display=display, onset=onset, **kw)
        self.conditions.append(c)
        return c

    def med(
        self,
        system: str,
        code: str | None,
        name: str,
        status: str,
        start: datetime,
        record_type: str | None = None,
        end: datetime | None = None,
    ) -> Med:
        rt = record_type or self.r.choice(("request", "statement", "administration"))
        if rt == "administration" and status == "active":
            status = "in-progress"  # the MedicationAdministration status vocabulary
        m = Med(
            id=self.uid(),
            record_type=rt,
            system=system,
            code=code,
            name=name,
            status=status,
            start=start,
            end=end,
        )
        self.meds.append(m)
        return m


# --- dimensions -----------------------------------------------------------------------------


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


def _diagnosis(b: _Builder, clean: bool) -> None:
    r = b.r
    dx = _pick(
        r,
        (("asps_code", 9), ("asps_text", 6), ("sts", 25), ("other_cancer", 30), ("no_cancer", 30)),
    )
    b.scenario["diagnosis"] = dx
    onset = b.day(r.randint(200, 2000))
    dotless = r.random() < 0.3

    def icd(code: str) -> str:
        return code.replace(".", "") if dotless else code

    primary: Cond | None = None
    if dx == "asps_code":
        site = r.choice(cat.STS_ICD10[:6])
        if r.random() < 0.3:  # morphology only
            primary = b.cond("icd-o-3", cat.ASPS_MORPHOLOGY[0], cat.ASPS_MORPHOLOGY[1], onset)
        else:
            primary = b.cond(
                "icd-10-cm",
                icd(site[0]),
                site[1],
                onset,
                extra_codings=[("icd-o-3", *cat.ASPS_MORPHOLOGY)],
            )
    elif dx == "asps_text":
        site = cat.STS_ICD10[2]
        primary = b.cond("icd-10-cm", icd(site[0]), site[1], onset, text=r.choice(cat.ASPS_TEXTS))
    elif dx == "sts":
        site = r.choice(cat.STS_ICD10)
        morph = r.choice(cat.STS_MORPHOLOGY)
        roll = r.random()
        if roll < 0.1:
            primary = b.cond("icd-o-3", morph[0], morph[1], onset)
        elif roll < 0.5:
            primary = b.cond(
                "icd-10-cm", icd(site[0]), site[1], onset, extra_codings=[("icd-o-3", *morph)]
            )
        else:
            primary = b.cond("icd-10-cm", icd(site[0]), site[1], onset)
    elif dx == "other_cancer":
        c = r.choice(cat.OTHER_CANCERS)
        b.cond("icd-10-cm", icd(c[0]), c[1], onset)
    cancer = dx != "no_cancer"
    # a diagnosis record that must not count (docs/clinical-rules.md#counting-conditions)
    if primary is not None and not clean and r.random() < 0.12:
        quirk = r.choice(("refuted", "entered-in-error", "resolved", "future_onset"))
        b.scenario["diagnosis_quirk"] = quirk
        if quirk in ("refuted", "entered-in-error"):
            primary.verification_status = quirk
        elif quirk == "resolved":
            primary.clinical_status = "resolved"
        else:
            primary.onset = b.s + timedelta(days=r.randint(1, 30))
    if primary is not None and r.random() < 0.1:
        primary.clinical_status = None  # absent clinicalStatus still counts
    mets = "none"
    if cancer and r.random() < (0.75 if clean else 0.6):
        m = r.choice(cat.METASTASES)
        mets = m[0]
        b.cond("icd-10-cm", icd(m[0]), m[1], b.day(r.randint(20, 400)))
    b.scenario["metastasis"] = mets
    for noise in r.sample(cat.NOISE_CONDITIONS, r.randint(0, 2)):
        b.cond("icd-10-cm", noise[0], noise[1], b.day(r.randint(300, 5000)))


def _extras(b: _Builder, sex: str, age: int) -> None:
    r = b.r
    if sex == "female" and 14 <= age <= 48 and r.random() < 0.05:
        b.scenario["pregnancy"] = "yes"
        if r.random() < 0.5:
            b.cond("icd-10-cm", "Z33.1", "Pregnant state, incidental", b.day(r.randint(10, 120)))
        else:
            b.cond("snomed", "77386006", "Pregnancy", b.day(r.randint(10, 120)))
    if r.random() < 0.02:
        b.scenario["dysphagia"] = "yes"
        code = r.choice(
            (("R13.10", "Dysphagia, unspecified"), ("R13.12", "Dysphagia, oropharyngeal phase"))
        )
        b.cond("icd-10-cm", code[0], code[1], b.day(r.randint(10, 300)))
    if r.random() < 0.01:
        b.scenario["gastrostomy"] = "yes"
        b.cond("icd-10-cm", "Z93.1", "Gastrostomy status", b.day(r.randint(10, 300)))
    if r.random() < 0.03:
        b.scenario["gilbert"] = "yes"
        b.cond("icd-10-cm", "E80.4", "Gilbert syndrome", b.day(r.randint(1000, 6000)))
    for m in r.sample(cat.NOISE_MEDS, r.randint(0, 2)):
        b.med(m[0], m[1], m[2], "active", b.at(r.randint(100, 900)), record_type="request")


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


# Issue 11 item 6: conditions and medications as real EHRs record them. About SHAPE_SHARE of
# the patients carry one shape, drawn from a stream of its own so the other dimensions keep
# their draws. Each feed renders the shape as it can (medicationReference: FHIR only).
ISSUE11_SHAPES = (
    "ici_sbd",  # ICI only as an RxNorm SBD/SCD product code
    "ici_ref_contained",  # only via medicationReference to a contained Medication
    "ici_ref_resource",  # ... to a Medication resource (same bundle / Medication NDJSON)
    "ici_atc_beside_rxnorm",  # RxNorm product code with the ATC code beside it
    "bevacizumab",  # L01XC07: not an ICI
    "ici_not_done",  # MedicationAdministration not-done
    "ici_not_taken",  # MedicationStatement not-taken
    "ici_proposal",  # MedicationRequest intent proposal / plan
    "ici_on_hold",  # on-hold: prior exposure
    "art_on_hold",  # ART on hold: not active therapy
    "liver_abated",  # liver metastasis abated on or before the screening date
    "liver_abated_later",  # ... abated after it
    "hiv_inactive",  # lifelong: inactive / resolved HIV still counts
    "hiv_refuted",  # refuted HIV does not
    "asps_site_only",  # sarcoma coded by site only (C49.x, no histology)
    "icdo3_spelling",  # ICD-O-3 morphology as 95813, M9581/3, M-95813
    "icdo3_metastatic",  # ICD-O-3 behaviour /6
    "icd10_oid",  # ICD-10-CM under its OID
)
SHAPE_SHARE = 0.3


def _issue11_shape(seed: int, index: int) -> tuple[random.Random, str | None]:
    sr = random.Random(f"trialscreen-synth-issue11:{seed}:{index}")
    return sr, (sr.choice(ISSUE11_SHAPES) if sr.random() < SHAPE_SHARE else None)


def _respell(sr: random.Random, code: str) -> str:
    """An ICD-O-3 morphology NNNN/B in one of the spellings feeds use."""
    m, _, behaviour = code.partition("/")
    return sr.choice(cat.ICDO3_SPELLINGS).format(m=m, b=behaviour)


def _undetectable_vl(b: _Builder, sr: random.Random) -> None:
    b.add_obs(
        "lab", cat.VL, b.at(sr.randint(1, 25)), comparator="<", value="20", unit="{copies}/mL"
    )


def _issue11(b: _Builder, sr: random.Random, shape: str) -> None:
    b.scenario["issue11"] = shape
    start_days = sr.randint(120, 700)
    start = b.at(start_days)
    product, old_atc = sr.choice(cat.ICI_PRODUCTS)
    progression = False
    if shape == "ici_sbd":
        b.med("rxnorm", product, "", sr.choice(("completed", "stopped")), start)
        progression = True
    elif shape in ("ici_ref_contained", "ici_ref_resource"):
        code = sr.choice((("rxnorm", sr.choice(cat.ICI_INGREDIENTS)), ("rxnorm", product)))
        m = b.med(code[0], code[1], "", "completed", start)
        m.reference = "contained" if shape == "ici_ref_contained" else "resource"
        progression = True
    elif shape == "ici_atc_beside_rxnorm":
        m = b.med("rxnorm", product, "", "completed", start)
        m.extra_codings.append(("atc", old_atc, ""))
        progression = True
    elif shape == "bevacizumab":
        b.med(*cat.BEVACIZUMAB, sr.choice(("completed", "stopped")), start)
    elif shape == "ici_not_done":
        b.med("atc", *cat.ICI_ATC, "not-done", start, record_type="administration")
    elif shape == "ici_not_taken":
        b.med("atc", *cat.ICI_ATC, "not-taken", start, record_type="statement")
    elif shape == "ici_proposal":
        m = b.med("atc", *cat.ICI_ATC, "active", start, record_type="request")
        m.intent = sr.choice(("proposal", "plan"))
    elif shape == "ici_on_hold":
        b.med(
            "atc", *cat.ICI_ATC, "on-hold", start, record_type=sr.choice(("request", "statement"))
        )
        progression = True
    elif shape in ("art_on_hold", "hiv_inactive", "hiv_refuted"):
        dx = sr.choice(cat.HIV_DX)
        new_hiv = b.scenario.get("hiv") == "none"
        if new_hiv or shape != "art_on_hold":
            c = b.cond("icd-10-cm", dx[0], dx[1], b.day(sr.randint(400, 6000)))
            if shape == "hiv_inactive":
                c.clinical_status = sr.choice(("inactive", "resolved", "remission"))
            elif shape == "hiv_refuted":
                c.verification_status = "refuted"
        if new_hiv:
            _undetectable_vl(b, sr)
        if shape == "art_on_hold":
            drug = sr.choice(cat.ART_DRUGS)
            b.med("atc", drug[0], drug[1], "on-hold", b.at(sr.randint(200, 3000)), "statement")
    elif shape in ("liver_abated", "liver_abated_later"):
        liver_code, liver_display = cat.LIVER_METASTASIS
        # on or before the screening date the abatement ends it; after it, it still counts
        abated = b.day(sr.randint(0, 300) if shape == "liver_abated" else -sr.randint(1, 60))
        c = b.cond(
            "icd-10-cm",
            sr.choice((liver_code, liver_code.replace(".", ""))),
            liver_display,
            abated,
        )
        c.onset = abated - timedelta(days=sr.randint(60, 500))
        c.abatement = abated
        c.clinical_status = sr.choice((None, "active", "resolved"))
    elif shape == "asps_site_only":
        site = sr.choice(cat.STS_ICD10[:6])
        b.cond("icd-10-cm", site[0], site[1], b.day(sr.randint(200, 2000)))
        if sr.random() < 0.6:
            metastasis = sr.choice(cat.METASTASES)
            b.cond("icd-10-cm", metastasis[0], metastasis[1], b.day(sr.randint(20, 400)))
    elif shape == "icdo3_spelling":
        respelled = False
        for c in b.conditions:
            if c.system == "icd-o-3" and c.code:
                c.code, respelled = _respell(sr, c.code), True
            extra = [
                (s, _respell(sr, co) if s == "icd-o-3" else co, d) for s, co, d in c.extra_codings
            ]
            respelled = respelled or extra != c.extra_codings
            c.extra_codings = extra
        if not respelled:
            site = sr.choice(cat.STS_ICD10[:6])
            b.cond(
                "icd-10-cm",
                site[0],
                site[1],
                b.day(sr.randint(200, 2000)),
                extra_codings=[
                    ("icd-o-3", _respell(sr, cat.ASPS_MORPHOLOGY[0]), cat.ASPS_MORPHOLOGY[1])
                ],
            )
    elif shape == "icdo3_metastatic":
        asps_code, asps_display = cat.ASPS_METASTATIC
        b.cond("icd-o-3", _respell(sr, asps_code), asps_display, b.day(sr.randint(20, 600)))
    elif shape == "icd10_oid":
        coded = [c for c in b.conditions if c.system == "icd-10-cm"]
        if not coded:
            metastasis = sr.choice(cat.METASTASES)
            coded = [b.cond("icd-10-cm", metastasis[0], metastasis[1], b.day(sr.randint(20, 400)))]
        for c in coded:
            c.system_uri = cat.ICD10_OID
    if progression and sr.random() < 0.5:
        b.add_obs(
            "status",
            cat.DISEASE_STATUS,
            b.at(sr.randint(5, start_days - 30)),
            value_code=cat.WORSENED[0],
            value_code_display=cat.WORSENED[1],
        )


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
