"""The criteria of one patient, one method per criterion family (lower limits, x ULN,
renal with Cockcroft-Gault, performance status, measurable disease, diagnosis, HIV, prior
ICI, the items a person confirms), and ``evaluate``, which judges both cohorts and derives
the candidate status."""

from __future__ import annotations

import math
from datetime import date, timedelta

from trialscreen.synth.model import Obs, PatientRecord
from trialscreen.synth.oracle.code_sets import (
    HIV_SNOMED,
    LIVER_METASTASIS_SNOMED,
    NOT_PRIOR_THERAPY,
    SARCOMA_MORPHOLOGY,
)
from trialscreen.synth.oracle.conditions import (
    _advanced,
    _codes,
    _counting_conditions,
    _has_icd,
    _has_snomed,
    _morphology,
    _texts,
)
from trialscreen.synth.oracle.lab_tables import COUNTING, LOWER_LIMITS
from trialscreen.synth.oracle.lesions import _lesion_coordination, _lesion_status
from trialscreen.synth.oracle.medications import _given, _is_ici
from trialscreen.synth.oracle.outcome import (
    CRITERIA,
    VALUE_COLUMNS,
    Coordination,
    Outcome,
    candidate_status,
)
from trialscreen.synth.oracle.readings import (
    _LOCAL_DATES,
    Reading,
    _analyte,
    _at_least,
    _at_most,
    _in_window,
    _latest,
    _local,
    _score,
    _uln,
    _utc_date,
    _vl_class,
    _vl_copies,
)


def _age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


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
