"""One patient's random stream while its records are drawn (``_Builder``: ids, order
numbers, times relative to the screening date, observations, conditions, medications),
the weighted pick of a variant and decimal text as a lab prints it."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from trialscreen.synth.model import Cond, Med, Obs

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
