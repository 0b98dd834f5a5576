"""Conditions and medications as real EHRs record them (issue 11): ICIs only as product
codes or behind a medicationReference, statuses and intents that are not therapy given,
abated metastases, lifelong HIV, sarcoma coded by site only, ICD-O-3 spellings and
ICD-10 under its OID. A stream of its own, so the other dimensions keep their draws."""

from __future__ import annotations

import random
from datetime import timedelta

from trialscreen.synth import catalogue as cat
from trialscreen.synth.population.builder import _Builder

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
