"""HL7 v2 ORU^R01 batch files (docs/specification.md#hl7-v2), messy the way real lab feeds are.

One message per (order, report time): a panel is one message, a correction is a later
message with the same OBR-3 and OBX-11 ``C``. Files hold up to ``PER_FILE`` messages; the
terminator varies per message (CR, CRLF, sometimes LF), every third file is MLLP-framed,
every fifth starts with a UTF-8 BOM, every fourth is named ``.txt``. Versions 2.3-2.5.1.
Local OBX-3 codes used (coding system ``L``): see ``model.LOCAL_LAB_CODES``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from trialscreen.synth.model import Obs, PatientRecord, compact_seconds, local_zone

PER_FILE = 300
VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")
STATUS = {
    "final": "F",
    "corrected": "C",
    "amended": "C",
    "preliminary": "P",
    "cancelled": "X",
    "entered-in-error": "W",
    "registered": "I",
}
SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
ULN_ANALYTE_CODES = {"1975-2", "42719-5", "1920-8", "1742-6", "2160-0", "38483-4", "14682-9"}
NAMES = {
    "718-7": "Hemoglobin",
    "777-3": "Platelets",
    "751-8": "Neutrophils abs",
    "2160-0": "Creatinine",
    "1975-2": "Bilirubin total",
    "1920-8": "AST",
    "1742-6": "ALT",
    "1751-7": "Albumin",
    "2951-2": "Sodium",
    "20447-9": "HIV-1 RNA viral load",
}


def escape(text: str) -> str:
    """HL7 escape sequences for the default encoding characters |^~\\&."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


def hl7_ts(dt: datetime, style: int) -> str:
    u = dt.astimezone(UTC)
    if style == 1:
        return compact_seconds(u) + "+0000"
    if style == 2 and u.hour >= 5:  # same calendar date in UTC after conversion
        return compact_seconds(u.replace(hour=u.hour - 5)) + "-0500"
    # no offset: the sender's local wall clock (the hospital zone, docs/decisions.md "Local time")
    local = dt.astimezone(local_zone())
    if style == 3:
        return compact_seconds(local)[:12]
    return compact_seconds(local)


class Hl7Writer:
    def __init__(self, root: Path, report_bad: Callable[[str, str, int, str, str], None]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.report_bad = report_bad
        self.file_no = 0
        self.fh: IO[bytes] | None = None
        self.name = ""
        self.in_file = 0
        self.msg_no = 0
        self.counts: dict[str, int] = {}

    def _next_file(self) -> None:
        self._close_file()
        self.file_no += 1
        ext = "txt" if self.file_no % 4 == 0 else "hl7"
        self.name = f"oru_batch_{self.file_no:04d}.{ext}"
        self.fh = open(self.root / self.name, "wb")  # noqa: SIM115
        if self.file_no % 5 == 1:
            self.fh.write(b"\xef\xbb\xbf")
        self.in_file = 0

    def _close_file(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.counts[f"hl7/{self.name}"] = self.in_file
            self.fh = None

    def _message(self, segments: list[str]) -> int:
        if self.fh is None or self.in_file >= PER_FILE:
            self._next_file()
        assert self.fh is not None
        self.msg_no += 1
        term = "\n" if self.msg_no % 11 == 0 else ("\r\n" if self.msg_no % 3 == 2 else "\r")
        body = term.join(segments) + term
        if self.file_no % 3 == 0:
            body = "\x0b" + body + "\x1c\r"
        self.fh.write(body.encode("utf-8"))
        self.in_file += 1
        return self.in_file

    def _pid(self, p: PatientRecord) -> str:
        mr = f"{p.mrn}^^^HOSP^MR"
        pid3 = f"{900000 + p.index}^^^STATE^PI~{mr}" if p.index % 4 == 1 else mr
        # a lab system that sends no birth date or sex: FHIR's are kept (field by field)
        birth = "" if p.hl7_blank_demographics else p.birth_date.strftime("%Y%m%d")
        sex = "" if p.hl7_blank_demographics else SEX[p.sex]
        return f"PID|1||{pid3}||{escape(p.family)}^{escape(p.given)}||{birth}|{sex}"

    def _obx(self, i: int, o: Obs, version: str, style: int) -> list[str]:
        name = escape(NAMES.get(o.loinc, o.display))
        if o.local_code:
            code = f"{o.local_code}^{name}^L"
            if i % 2 == 0:
                code += f"^{o.loinc}^{name}^LN"
        else:
            code = f"{o.loinc}^{name}^LN"
        if o.value_code:
            vtype = "CWE" if version >= "2.5" else "CE"
            system = "LN" if o.value_code_system == "loinc" else "SCT"
            value = f"{o.value_code}^{escape(o.value_code_display or '')}^{system}"
        elif o.value_text is not None:  # a value as the lab printed it (issue 10)
            vtype, value = ("TX" if i % 3 == 0 else "ST"), escape(o.value_text)
        elif o.comparator:
            vtype, value = "SN", f"{escape(o.comparator)}^{o.value}"
        elif i % 10 == 7:
            vtype, value = "SN", f"^{o.value}"
        else:
            vtype, value = "NM", o.value or ""
        unit = escape(o.unit or "")
        if unit and i % 5 == 3 and "\\" not in unit:
            unit = f"{unit}^{unit}^UCUM"
        ref = ""
        if o.ref_high is not None and o.ref_low is not None:
            if o.loinc in ULN_ANALYTE_CODES and i % 6 == 1:
                ref = f"<{o.ref_high}"
            elif o.loinc not in ULN_ANALYTE_CODES and i % 6 == 1:
                ref = f"{o.ref_low} to {o.ref_high}"
            else:
                ref = f"{o.ref_low}-{o.ref_high}"
        flag = ""
        if ref and o.value and not o.comparator:
            v = float(o.value)
            flag = (
                "H"
                if v > float(o.ref_high or "inf")
                else ("L" if v < float(o.ref_low or 0) else "N")
            )
        obs_time = hl7_ts(o.effective, style) if i % 7 != 4 else ""
        seg = [
            f"OBX|{i}|{vtype}|{code}||{value}|{unit}|{ref}|{flag}|||{STATUS[o.status]}|||{obs_time}"
        ]
        if i % 13 == 5:
            seg.append("NTE|1||Specimen slightly hemolyzed \\T\\ recollected; see report \\F\\ lab")
        return seg

    def _render(self, p: PatientRecord, group: list[Obs], pid: bool) -> list[str]:
        first = group[0]
        n = self.msg_no + 1
        version = VERSIONS[n % len(VERSIONS)]
        style = n % 4
        msg_type = "ORU^R01^ORU_R01" if version >= "2.4" and n % 2 else "ORU^R01"
        segs = [
            f"MSH|^~\\&|LAB|HOSP|TRIALSCREEN|HOSP|{hl7_ts(first.issued, 0)}||{msg_type}|"
            f"MSG{n:09d}|P|{version}"
        ]
        if pid:
            segs.append(self._pid(p))
        order = first.order_id or f"VL{first.id[:8].upper()}"
        segs.append(
            f"OBR|1|PL{order[3:]}|{order}^LAB|LABPANEL^Lab panel^L|||"
            f"{hl7_ts(first.effective, style)}"
        )
        for i, o in enumerate(group, start=1):
            segs += self._obx(i, o, version, style)
        return segs

    def write(self, p: PatientRecord) -> None:
        """All of the patient's lab results, one message per (order, report time)."""
        groups: dict[tuple[str, datetime], list[Obs]] = {}
        for o in p.obs:
            if o.kind == "lab" and o.bad is None:
                groups.setdefault((o.order_id or o.id, o.issued), []).append(o)
        for group in groups.values():
            self._message(self._render(p, group, pid=True))

    def write_bad(self, p: PatientRecord) -> None:
        for o in p.obs:
            if o.bad == "hl7_no_pid":
                pos = self._message(self._render(p, [o], pid=False))
                self.report_bad(
                    "hl7",
                    f"hl7/{self.name}",
                    pos,
                    f"MSG{self.msg_no:09d}",
                    "message without PID segment",
                )

    def close(self) -> None:
        self._close_file()
