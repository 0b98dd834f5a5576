"""Which medication records are an immune checkpoint inhibitor (by any of their codings or
names) and which are therapy given."""

from __future__ import annotations

from trialscreen.synth.model import Med
from trialscreen.synth.oracle.code_sets import (
    ICI_ATC_OLD,
    ICI_NAMES,
    ICI_RXNORM,
    ICI_RXNORM_PRODUCTS,
    NOT_GIVEN_INTENTS,
    NOT_PRIOR_THERAPY,
)


def _is_ici(m: Med) -> bool:
    """Every coding (also behind a medicationReference): RxNorm ingredient or product, ATC, or
    a generic/brand name in the text or a coding's display."""
    for system, code in [(m.system, m.code or ""), *((s, c) for s, c, _ in m.extra_codings)]:
        if system == "rxnorm" and (code in ICI_RXNORM or code in ICI_RXNORM_PRODUCTS):
            return True
        if system == "atc" and (
            code.startswith("L01FF") or code in ("L01FX04", "L01FY02") or code in ICI_ATC_OLD
        ):
            return True
    texts = [m.name, *(d for _, _, d in m.extra_codings)]
    return any(n in t.lower() for t in texts for n in ICI_NAMES)


def _given(m: Med) -> bool:
    """Therapy given: not cancelled/draft/entered in error/not done/not taken, and not a
    request that is only a proposal or a plan (on-hold counts as exposure)."""
    return m.status not in NOT_PRIOR_THERAPY and m.intent not in NOT_GIVEN_INTENTS
