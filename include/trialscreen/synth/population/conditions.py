"""The conditions of a patient: the diagnosis (ASPS by code or text, other soft tissue
sarcomas, other cancers, none) with records that must not count, metastases, noise
conditions, and the extras a criterion reads (pregnancy, dysphagia, gastrostomy, Gilbert
syndrome) with noise medications."""

from __future__ import annotations

from datetime import timedelta

from trialscreen.synth import catalogue as cat
from trialscreen.synth.model import Cond
from trialscreen.synth.population.builder import _Builder, _pick


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
