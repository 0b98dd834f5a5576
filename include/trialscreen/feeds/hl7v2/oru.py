"""Walking one ORU^R01 message: PID -> a patient row, OBR -> the order context, OBX -> an
observation row (code, value, unit, range, status, time), or the PHI-free reason it cannot
land. Rows go to the file's ``_FileBuilder`` (``rows.py``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from trialscreen.feeds.hl7v2.syntax import (
    Encoding,
    _first_component,
    _get,
    _Quarantine,
    unescape,
)
from trialscreen.feeds.hl7v2.values import (
    _inline_numeric,
    _structured_numeric,
    parse_date,
    parse_reference_range,
    parse_ts,
    ts_offset_min,
)

if TYPE_CHECKING:
    from trialscreen.feeds.hl7v2.rows import _FileBuilder

LOINC_SYSTEMS = frozenset({"LN", "LNC", "LOINC", "2.16.840.1.113883.6.1"})
# ADT trigger events that retire an MRN into another (MRG-1 -> PID-3)
MERGE_EVENTS = frozenset({"ADT^A40", "ADT^A34", "ADT^A18"})
CODED_TYPES = frozenset({"CE", "CWE", "CNE", "CF"})
NUMERIC_TYPES = frozenset({"NM", "SN"})
_RUN_ON_TEMPLATE = r"{sep}[ \t]+(?=OBX{sep})"

_MISSING = object()
# the shapes OBX-1 (set id) and OBX-2 (value type) have; anything else is not named
_SET_ID = re.compile(r"^\d{0,4}$")
_DATA_TYPE = re.compile(r"^[A-Z]{0,3}$")


@dataclass
class _Caches:
    """Per-file memo of parsed OBX-3 codes and OBX-6 units (they repeat)."""

    code: dict[str, object] = field(default_factory=dict)
    unit: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


class _MessageParser:
    """Walks one message's segments, keeping the current PID and OBR context."""

    def __init__(self, out: _FileBuilder, position: int, segments: list[str]) -> None:
        self.out = out
        self.position = position
        self.segments = segments
        self.enc = Encoding()
        self.cache = _Caches()

    def run(self) -> None:
        if self.position == 0:
            raise _Quarantine("segments before the first MSH segment (no message header)")
        msh = self.segments[0]
        self.enc = Encoding.from_msh(msh)
        self.cache = self.out.caches_for(self.enc)
        f = msh.split(self.enc.field)
        msh9 = _get(f, 8)
        message_type = self._message_type(msh9)
        if message_type is None:
            raise _Quarantine("MSH-9 message type is empty")
        merge = message_type in MERGE_EVENTS
        if not message_type.startswith("ORU") and not merge:
            self.out.ignored[message_type] = self.out.ignored.get(message_type, 0) + 1
            return
        self.control_id = self._text(_get(f, 9))
        # MSH-4 sending facility, namespace id: keys local codes (seed local_lab_codes)
        self.facility = self._text(_first_component(_get(f, 3), self.enc).strip()) or None
        self.issued_raw = _first_component(_get(f, 6), self.enc)
        self.issued_at = parse_ts(self.issued_raw)
        self.payload = "\r".join(self.segments)
        if merge:
            self._merges(message_type.split("^")[1], self.segments[1:])
            return
        self._walk(self._split_run_on(self.segments[1:]))

    def _merges(self, event: str, segments: list[str]) -> None:
        """ADT merge (A40/A34/A18): each PID (the surviving MRN in PID-3) followed by its MRG
        (the retired MRN in MRG-1) is one record, a row of ``patient_merges``. The PID's
        demographics are not landed (docs/decisions.md "Patient merges and test patients")."""
        if not any(s.startswith("MRG") for s in segments):
            raise _Quarantine("merge message has no MRG segment")
        evn = next((s for s in segments if s.startswith("EVN")), "")
        evn_raw = _first_component(_get(evn.split(self.enc.field), 2), self.enc).strip()
        when_raw = evn_raw if parse_ts(evn_raw) is not None else self.issued_raw
        pid: str | None = None
        k = 0
        for seg in segments:
            if seg.startswith("PID"):
                pid = seg
            elif seg.startswith("MRG"):
                k += 1
                self._merge(event, k, pid, seg, when_raw)
                pid = None

    def _merge(self, event: str, k: int, pid: str | None, mrg: str, when_raw: str) -> None:
        surviving = self._mrn(_get(pid.split(self.enc.field), 3)) if pid else None
        retired = self._mrn(_get(mrg.split(self.enc.field), 1))
        error = None
        if pid is None:
            error = f"MRG #{k} has no PID segment before it"
        elif not surviving:
            error = f"MRG #{k}: the PID before it has no patient identifier in PID-3"
        elif not retired:
            error = f"MRG #{k} has no prior patient identifier in MRG-1"
        elif retired == surviving:
            error = f"MRG #{k}: MRG-1 and PID-3 name the same identifier"
        if error:
            self.out.quarantine_record(self.position, error, self.payload)
            return
        record_hash = _sha256(self.control_id, pid or "", mrg)
        self.out.merges.append(
            (
                self.position,
                f"{self.control_id}|MRG|{k}",
                record_hash,
                surviving,
                retired,
                event,
                parse_ts(when_raw),
                ts_offset_min(when_raw),
            )
        )
        self.out.records_in += 1

    def _message_type(self, msh9: str) -> str | None:
        parts = [p.strip() for p in msh9.split(self.enc.component)[:2]]
        parts = [p for p in parts if p]
        return "^".join(parts) if parts else None

    def _split_run_on(self, segments: list[str]) -> list[str]:
        """Recover OBX segments glued to the previous one (``...| OBX|...``)."""
        sep = self.enc.field
        if not any(f"{sep} OBX{sep}" in s or f"{sep}\tOBX{sep}" in s for s in segments):
            return segments
        pattern = re.compile(_RUN_ON_TEMPLATE.format(sep=re.escape(sep)))
        out: list[str] = []
        for seg in segments:
            out.extend(pattern.split(seg))
        return out

    def _walk(self, segments: list[str]) -> None:
        if not any(s.startswith("PID") for s in segments):
            raise _Quarantine("message has no PID segment")
        sep = self.enc.field
        mrn: str | None = None
        pid_count = 0
        skip_group = False
        order = self._order([])
        obx_count = 0
        for seg in segments:
            name = seg[:3]
            if name == "PID":
                pid_count += 1
                order = self._order([])
                mrn, skip_group = self._patient(seg, pid_count)
            elif name == "OBR":
                order = self._order(seg.split(sep, 8))
            elif name == "OBX":
                obx_count += 1
                if skip_group:
                    continue
                if pid_count == 0:
                    self.out.quarantine_record(
                        self.position, f"OBX #{obx_count} precedes the PID segment", self.payload
                    )
                    continue
                assert mrn is not None
                self._observation(seg, obx_count, mrn, order)

    def _patient(self, seg: str, k: int) -> tuple[str | None, bool]:
        """Land the PID (returns its MRN) or quarantine it with its results (returns skip)."""
        f = seg.split(self.enc.field)
        mrn = self._mrn(_get(f, 3))
        if not mrn:
            self.out.quarantine_record(
                self.position, f"PID #{k} has no patient identifier in PID-3", self.payload
            )
            return None, True
        family, given = self._name(_get(f, 5))
        birth = parse_date(_first_component(_get(f, 7), self.enc).strip())
        deceased_raw = _first_component(_get(f, 29), self.enc).strip()
        deceased = parse_ts(deceased_raw)
        if deceased_raw and deceased is None:
            self.out.quarantine_record(
                self.position,
                f"PID #{k}: PID-29 death time is not a representable HL7 timestamp"
                f" (length {len(deceased_raw)})",
                self.payload,
            )
            return None, True
        sex = self._text(_get(f, 8).strip()) or None
        record_hash = _sha256(self.control_id, seg)
        self.out.patients.append(
            (
                self.position,
                f"{self.control_id}|PID|{k}",
                record_hash,
                mrn,
                family,
                given,
                birth,
                sex,
                deceased,
                ts_offset_min(deceased_raw),
            )
        )
        self.out.records_in += 1
        return mrn, False

    def _mrn(self, pid3: str) -> str | None:
        """The repetition typed MR (CX.5), else the first repetition that has a CX.1."""
        enc = self.enc
        first: str | None = None
        for rep in pid3.split(enc.repetition):
            comps = rep.split(enc.component)
            ident = comps[0].strip()
            if not ident:
                continue
            if len(comps) > 4 and comps[4].strip().upper() == "MR":
                return self._text(ident)
            if first is None:
                first = ident
        return self._text(first) if first else None

    def _name(self, pid5: str) -> tuple[str | None, str | None]:
        for rep in pid5.split(self.enc.repetition):
            comps = rep.split(self.enc.component)
            family = self._text(comps[0].strip())
            given = self._text(comps[1].strip()) if len(comps) > 1 else ""
            if family or given:
                return family or None, given or None
        return None, None

    def _order(self, obr: list[str]) -> _Order:
        """The OBR context results inherit: OBR-3 filler number, order id, OBR-7 time."""
        filler = self._text(_first_component(_get(obr, 3), self.enc).strip())
        obr7 = _first_component(_get(obr, 7), self.enc).strip()
        return _Order(filler, filler or self.control_id, obr7, parse_ts(obr7))

    def _observation(self, seg: str, n: int, mrn: str, order: _Order) -> None:
        """Land one OBX row, or quarantine it with the reason it cannot be used."""
        try:
            row = self._observation_row(seg, n, mrn, order)
        except _Quarantine as exc:
            self.out.quarantine_record(self.position, str(exc), self.payload)
            return
        self.out.observations.append(row)
        self.out.records_in += 1

    def _observation_row(self, seg: str, n: int, mrn: str, order: _Order) -> tuple[object, ...]:
        enc = self.enc
        f = seg.split(enc.field, 21)
        if len(f) < 22:
            f.extend([""] * (22 - len(f)))
        set_id = f[1].strip()
        value_type = f[2].strip().upper()
        code = self._code(f[3])
        if code is None:
            raise _Quarantine(f"{_label(n, set_id, value_type)} has no OBX-3 observation code")
        if not f[5] and _looks_shifted(f, value_type, enc):
            raise _Quarantine(
                f"{_label(n, set_id, value_type)}: OBX fields appear shifted"
                " (OBX-5/OBX-6 empty, a value in OBX-7)"
            )
        effective_at, time_raw = self._effective_at(f[14], order, n, set_id, value_type)
        kind, number, comparator, value_code, value_system, value_text = self._value(
            value_type, f[5]
        )
        unit, unit_code = self._unit(f[6])
        ref_text = self._text(f[7]) or None
        ref_low, ref_high = parse_reference_range(ref_text) if ref_text else (None, None)
        flag = _first_component(f[8].split(enc.repetition, 1)[0], enc).strip() or None
        status_raw = f[11].strip()
        status = status_raw or None  # as sent: staging maps it (normalize_result_status)
        loinc, local_code, local_system, display = code
        record_id = "|".join(
            (self.control_id, order.filler, set_id, loinc or local_code or "", status_raw, str(n))
        )
        record_hash = _sha256(self.control_id, self.issued_raw, mrn, time_raw, seg)
        # OBX-17 observation method and OBX-20 observation site (tumor measurements: DICOM or
        # SNOMED method, SNOMED body site), first CWE triplet: code, system, text
        method = self._coded_element(f[17])
        site = self._coded_element(f[20])
        return (
            self.position, record_id, record_hash, mrn, loinc, local_code, local_system,
            display, kind, number, comparator, unit, unit_code, value_code, value_system,
            value_text, ref_low, ref_high, ref_text, flag, status, effective_at,
            self.issued_at, order.order_id, ts_offset_min(time_raw),
            ts_offset_min(self.issued_raw), *method, *site, self.facility,
        )  # fmt: skip

    def _coded_element(self, field: str) -> tuple[str | None, str | None, str | None]:
        """(code, system, text) of a CWE field's first repetition; all None when empty."""
        if not field:
            return None, None, None
        c = field.split(self.enc.repetition, 1)[0].split(self.enc.component)
        c.extend([""] * (3 - len(c)))
        code, text, system = (self._text(x.strip()) or None for x in c[:3])
        return code, system, text

    def _code(self, obx3: str) -> _Code | None:
        hit = self.cache.code.get(obx3, _MISSING)
        if hit is _MISSING:
            hit = self.cache.code[obx3] = self._parse_code(obx3)
        return hit  # type: ignore[return-value]

    def _parse_code(self, obx3: str) -> _Code | None:
        """LOINC from whichever triplet says LN; otherwise the local code; None if no code."""
        c = obx3.split(self.enc.repetition, 1)[0].split(self.enc.component)
        if len(c) < 9:
            c.extend([""] * (9 - len(c)))
        primary, alternate = c[0].strip(), c[3].strip()
        primary_ln = c[2].strip().upper() in LOINC_SYSTEMS
        alternate_ln = c[5].strip().upper() in LOINC_SYSTEMS
        loinc = local_code = local_system = None
        if primary and primary_ln:
            loinc = primary
        elif alternate and alternate_ln:
            loinc = alternate
        if primary and not primary_ln:
            local_code, local_system = primary, c[2].strip() or None
        elif alternate and not alternate_ln:
            local_code, local_system = alternate, c[5].strip() or None
        if loinc is None and local_code is None:
            return None
        display = c[1].strip() or c[4].strip() or c[8].strip()
        return (
            self._text(loinc) if loinc else None,
            self._text(local_code) if local_code else None,
            self._text(local_system) if local_system else None,
            self._text(display) or None,
        )

    def _effective_at(
        self, obx14: str, order: _Order, n: int, set_id: str, value_type: str
    ) -> tuple[datetime | None, str]:
        """OBX-14, else OBR-7; a non-empty time that is not an HL7 TS quarantines the OBX."""
        raw = _first_component(obx14, self.enc).strip()
        if raw:
            source, parsed = "OBX-14", parse_ts(raw)
        else:
            source, raw, parsed = "OBR-7", order.obr7, order.effective_at
        if not raw:
            return None, ""
        if parsed is None:
            raise _Quarantine(
                f"{_label(n, set_id, value_type)}: observation time ({source})"
                " is not an HL7 timestamp"
            )
        return parsed, raw

    def _value(
        self, value_type: str, obx5: str
    ) -> tuple[str, float | None, str | None, str | None, str | None, str | None]:
        """(value_type, numeric, comparator, code, code system, text) from OBX-2/OBX-5."""
        enc = self.enc
        if not obx5.strip():
            return ("none", None, None, None, None, None)
        reps = obx5.split(enc.repetition)
        first = reps[0]
        if value_type in CODED_TYPES:
            c = first.split(enc.component)
            if len(c) < 9:
                c.extend([""] * (9 - len(c)))
            use_alt = not c[0].strip() and c[3].strip()
            code, text, system = (c[3], c[4], c[5]) if use_alt else (c[0], c[1], c[2])
            text = text.strip() or c[8].strip()
            return (
                "coded",
                None,
                None,
                self._text(code.strip()) or None,
                self._text(system.strip()) or None,
                self._text(text) or None,
            )
        joiner = enc.repetition if value_type in NUMERIC_TYPES else "\n"
        text = joiner.join(self._text(r) for r in reps) if len(reps) > 1 else self._text(first)
        if joiner == "\n":
            text = text.rstrip("\n")
        if value_type == "SN" and enc.component in first:
            number, comparator = _structured_numeric(first.split(enc.component))
        elif value_type in ("NM", "SN", "ST"):
            number, comparator = _inline_numeric(first)
        else:
            number, comparator = None, None
        if number is None:
            return ("string", None, None, None, None, text)
        return ("quantity", number, comparator, None, None, text)

    def _unit(self, obx6: str) -> tuple[str | None, str | None]:
        if not obx6:
            return None, None
        hit = self.cache.unit.get(obx6)
        if hit is None:
            hit = self.cache.unit[obx6] = self._parse_unit(obx6)
        return hit

    def _parse_unit(self, obx6: str) -> tuple[str | None, str | None]:
        """OBX-6 identifier (or its text when empty); the UCUM code when the system says so."""
        c = obx6.split(self.enc.component)
        ident = c[0].strip()
        text = c[1].strip() if len(c) > 1 else ""
        unit = self._text(ident or text) or None
        is_ucum = len(c) > 2 and c[2].strip().upper() == "UCUM"
        return unit, (self._text(ident) if is_ucum and ident else None)

    def _text(self, value: str | None) -> str:
        if not value:
            return ""
        enc = self.enc
        return unescape(value, enc) if enc.escape and enc.escape in value else value


_Code = tuple[str | None, str | None, str | None, str | None]  # loinc, local, system, text


@dataclass(frozen=True)
class _Order:
    filler: str  # OBR-3.1, "" when absent
    order_id: str  # OBR-3.1, else MSH-10
    obr7: str  # raw OBR-7.1
    effective_at: datetime | None


def _label(n: int, set_id: str, value_type: str) -> str:
    """How an OBX is named in a quarantine reason: ordinal, set id, type — each only when it
    has the shape the standard gives it (a number, a data type code); otherwise its length,
    never its text (shifted fields put names and dates there; docs/decisions.md "Free text
    from source records")."""
    set_text = set_id if _SET_ID.match(set_id) else f"not a number, {len(set_id)} characters"
    type_text = (
        value_type
        if _DATA_TYPE.match(value_type)
        else f"not a data type code, {len(value_type)} characters"
    )
    return f"OBX #{n} (set id {set_text or '-'}, type {type_text or '-'})"


def _sha256(*parts: str) -> str:
    return hashlib.sha256("\r".join(parts).encode("utf-8")).hexdigest()


def _looks_shifted(f: list[str], value_type: str, enc: Encoding) -> bool:
    """OBX-5/6 empty while OBX-7 holds a value of the declared type and OBX-8 is filled."""
    if f[5].strip() or f[6].strip() or not f[7].strip() or not f[8].strip():
        return False
    candidate = f[7].split(enc.repetition, 1)[0]
    if value_type == "SN":
        if enc.component in candidate:
            return _structured_numeric(candidate.split(enc.component))[0] is not None
        return _inline_numeric(candidate)[0] is not None
    if value_type == "NM":
        return _inline_numeric(candidate)[0] is not None
    if value_type in CODED_TYPES:
        return enc.component in candidate
    return False
