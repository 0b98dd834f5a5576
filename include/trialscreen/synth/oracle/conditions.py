"""Which conditions count on the screening date (refuted, onset, clinical status,
abatement; lifelong concepts), their codes in any spelling (ICD-10 with or without the dot,
ICD-O-3 morphologies, systems sent as OIDs) and the code tests the criteria use."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from trialscreen.synth.model import Cond
from trialscreen.synth.oracle.code_sets import (
    HIV_SNOMED,
    LIFELONG_ICD,
    METASTASIS_SNOMED,
    SYSTEM_ALIASES,
)


def _norm_icd(code: str | None) -> str:
    return (code or "").replace(".", "").upper()


def _lifelong(c: Cond) -> bool:
    return any(
        (sy == "icd-10-cm" and co.startswith(LIFELONG_ICD)) or (sy == "snomed" and co in HIV_SNOMED)
        for sy, co in _codes(c)
    )


def _counting_conditions(conds: Iterable[Cond], s: date) -> list[Cond]:
    """Not refuted, onset by S, and active and not abated by S - unless the concept is
    lifelong (then any clinical status and abatement)."""
    return [
        c
        for c in conds
        if c.verification_status not in ("refuted", "entered-in-error")
        and c.onset <= s
        and (
            _lifelong(c)
            or (
                c.clinical_status in (None, "active", "recurrence", "relapse")
                and (c.abatement is None or c.abatement > s)
            )
        )
    ]


def _norm_icdo3(code: str) -> str:
    """ICD-O-3 morphology spellings (9581/3, 95813, M9581/3, M-95813) as NNNN/B."""
    bare = code.strip().upper().replace(" ", "").replace("-", "")
    bare = bare[1:] if bare.startswith("M") else bare
    return f"{bare[:4]}/{bare[4]}" if len(bare) == 5 and "/" not in bare else bare


_NORM_CODE = {"icd-10-cm": _norm_icd, "icd-o-3": _norm_icdo3}


def _codes(c: Cond) -> list[tuple[str, str]]:
    first = SYSTEM_ALIASES.get(c.system_uri or "", c.system)  # an OID is the same system
    out = [(first, c.code or "")] + [(sy, co) for sy, co, _ in c.extra_codings]
    norm = _NORM_CODE
    return [(sy, norm[sy](co) if sy in norm else co) for sy, co in out]


def _morphology(code: str, listed: set[str]) -> bool:
    """A listed /3 morphology, or the same morphology with behaviour /6 (metastatic site)."""
    return code in listed or (code.endswith("/6") and code[:-1] + "3" in listed)


def _has_snomed(conds: Iterable[Cond], codes: set[str]) -> bool:
    return any(sy == "snomed" and co in codes for c in conds for sy, co in _codes(c))


def _advanced(conds: list[Cond]) -> bool:
    """Metastasis: ICD-10 C77-C79, SNOMED secondary neoplasm, or ICD-O-3 behaviour /6."""
    return (
        _has_icd(conds, "C77", "C78", "C79")
        or _has_snomed(conds, METASTASIS_SNOMED)
        or any(sy == "icd-o-3" and co.endswith("/6") for c in conds for sy, co in _codes(c))
    )


def _texts(c: Cond) -> list[str]:
    return [t.lower() for t in [c.text, c.display, *(d for _, _, d in c.extra_codings)] if t]


def _has_icd(conds: Iterable[Cond], *prefixes: str) -> bool:
    return any(sy == "icd-10-cm" and co.startswith(prefixes) for c in conds for sy, co in _codes(c))
