"""HL7 v2 syntax: framing (BOM, MLLP, line ends, batch envelopes) into segments and
messages, a message's separators from MSH-1/MSH-2 (``Encoding``), field access, and escape
sequences. Nothing here knows what an ORU message means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})


class _Quarantine(Exception):
    """A record cannot land; the message is a PHI-free reason."""


@dataclass(frozen=True)
class Encoding:
    """Separators of one message, from MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @staticmethod
    def from_msh(segment: str) -> Encoding:
        """Read MSH-1/MSH-2; tolerate a doubled escape char (``^~\\\\&``) and ``$`` subcomp."""
        if len(segment) < 5 or segment[3].isalnum() or segment[3].isspace():
            raise _Quarantine("MSH segment is malformed (no field separator)")
        sep = segment[3]
        chars = segment[4:].split(sep, 1)[0]
        if len(chars) < 2:
            raise _Quarantine("MSH-2 encoding characters are missing")
        comp, rep = chars[0], chars[1]
        esc = chars[2] if len(chars) > 2 else ""
        rest = chars[3:].lstrip(esc) if esc else chars[3:]
        sub = rest[0] if rest else "&"
        return Encoding(sep, comp, rep, esc, sub)


def _segments(text: str) -> list[str]:
    """Strip BOM/MLLP framing, split on any line ending, drop blank lines and batch headers."""
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")
    if "\x0b" in text or "\x1c" in text:
        text = text.replace("\x0b", "").replace("\x1c", "")
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    out: list[str] = []
    for seg in text.split("\r"):
        if not seg or seg.isspace():
            continue
        if seg[0].isspace():
            seg = seg.lstrip()
        if seg[:3] in BATCH_SEGMENTS and (len(seg) == 3 or not seg[3].isalnum()):
            continue
        out.append(seg)
    return out


def _is_msh(segment: str) -> bool:
    """``MSH`` + a field separator + 2-5 encoding characters (no letters, digits or spaces)."""
    if len(segment) < 7 or not segment.startswith("MSH"):
        return False
    sep = segment[3]
    if sep.isalnum() or sep.isspace():
        return False
    end = segment.find(sep, 4)
    chars = segment[4:end] if end > 0 else segment[4:]
    return 2 <= len(chars) <= 5 and not any(c.isalnum() or c.isspace() or c == sep for c in chars)


def _messages(segments: list[str]) -> list[tuple[int, list[str]]]:
    """Group segments into messages at each MSH; text before the first MSH is position 0."""
    messages: list[tuple[int, list[str]]] = []
    current: list[str] = []
    position = 0
    for seg in segments:
        if seg.startswith("MSH") and _is_msh(seg):
            if current:
                messages.append((position, current))
            position += 1
            current = [seg]
        else:
            current.append(seg)
    if current:
        messages.append((position, current))
    return messages


def _get(fields: list[str], index: int) -> str:
    return fields[index] if index < len(fields) else ""


def _first_component(value: str, enc: Encoding) -> str:
    return value.split(enc.component, 1)[0] if enc.component in value else value


def unescape(value: str, enc: Encoding) -> str:
    """Decode HL7 escape sequences; an unknown sequence is kept verbatim."""
    esc = enc.escape
    out: list[str] = []
    i = 0
    n = len(value)
    while i < n:
        j = value.find(esc, i)
        if j < 0:
            out.append(value[i:])
            break
        out.append(value[i:j])
        k = value.find(esc, j + 1)
        if k < 0:
            out.append(value[j:])
            break
        decoded = _escape_sequence(value[j + 1 : k], enc)
        if decoded is None:
            out.append(esc)
            i = j + 1
        else:
            out.append(decoded)
            i = k + 1
    return "".join(out)


_SIMPLE_ESCAPES = {"H": "", "N": ""}
_FORMATTING = re.compile(r"^\.(br|sp\d*|ce|in[+-]?\d*|ti[+-]?\d*|sk\d*|fi|nf)$")


def _escape_sequence(body: str, enc: Encoding) -> str | None:
    if body == "F":
        return enc.field
    if body == "S":
        return enc.component
    if body == "T":
        return enc.subcomponent
    if body == "R":
        return enc.repetition
    if body == "E":
        return enc.escape
    if body in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[body]
    if body.startswith("."):
        m = _FORMATTING.match(body)
        if not m:
            return None
        return "\n" if m.group(1) in ("br", "ce") or m.group(1).startswith("sp") else ""
    if body.startswith("X") and len(body) > 1 and len(body) % 2 == 1:
        try:
            raw = bytes.fromhex(body[1:])
        except ValueError:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    if body[:1] in ("C", "M") and len(body) > 1:
        return ""  # character-set switches: the text is already decoded
    return None
