"""The regular ORU^R01 message, a column at a time: the regular messages of a run of files
are split and assembled by polars together, and every value that needs the contract's rules
(codes, values, units, ranges, timestamps, identifiers) is decided once per distinct text by
the message walker's own functions (``oru.py``), so both paths land the same rows.

A message is *regular* when nothing in it needs the walker's judgement: it is an ORU
message with the standard separators (``MSH|^~\\&|``), exactly one PID before its first OBX
with an identifier in PID-3 and a readable (or empty) PID-29, no escape sequence where a
value is read as text without a lookup (MSH, PID, OBR, OBX-5, OBX-7), no OBX run on into
another segment, no control character that Python and polars trim differently, well under
the record size limit, and every OBX has a code, an unshifted value and a readable (or empty)
observation time. Every other message, and the text before the first MSH, goes to the walker
(``oru._MessageParser``) exactly as before: quarantines, merges, ignored message types and
everything unusual are decided there, in one place. A regular message can produce no
quarantine row, so the invariant ``records_in == rows out + quarantined`` holds per path.

Why: the walker spends 20-30 us of Python per message; split by polars and looked up per
distinct value, the same drop parses about three times faster (docs/decisions.md#hl7-columnar,
docs/benchmarks.md "HL7 parsing, a column at a time"). tests/feeds/test_hl7v2_columnar.py
parses the external samples, a generated drop and one message per edge both ways and
compares every row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from trialscreen import schema
from trialscreen.feeds.hl7v2.oru import _MessageParser
from trialscreen.feeds.hl7v2.rows import conformed
from trialscreen.feeds.hl7v2.syntax import BATCH_SEGMENTS, _is_msh
from trialscreen.feeds.hl7v2.values import parse_date, parse_reference_range, parse_ts_sent
from trialscreen.feeds.timestamps import representable_expr

STANDARD_MSH = "MSH|^~\\&|"
# Python's str.strip() trims these, polars' strip_chars() does not: a file with one is walked
TRIM_DIFFERS = ("\x1d", "\x1e", "\x1f")  # and \x1c, which framing removes (syntax._segments)
# an OBX run on into the segment before it (the walker splits them back; oru._split_run_on)
RUN_ON = ("| OBX|", "|\tOBX|")


def columnar_file(text: str) -> bool:
    """Whether a file's regular messages may be parsed here: none of its text needs the
    walker's own string handling (a whole-file test: these are rare)."""
    return not any(mark in text for mark in TRIM_DIFFERS + RUN_ON)


Message = tuple[int, list[str]]


@dataclass
class Split:
    """A batch of files split: the regular messages' patients and observations, conformed
    to the raw contract with each row's file (its index in the batch) in ``file``; per file,
    how many records those rows are and the other messages, ``(position, segments)`` in file
    order, for the walker; the files that have no message at all."""

    tables: dict[str, pl.DataFrame]
    records: list[int]
    others: list[list[Message]]
    headerless: list[int]  # files with no MSH segment: not HL7 (quarantined by the caller)

    def in_batch(self, indices: Sequence[int]) -> dict[str, pl.DataFrame]:
        """The tables with ``file`` renumbered: split file k is file ``indices[k]``."""
        if list(indices) == list(range(len(indices))):
            return self.tables
        mapping = pl.Series(indices, dtype=pl.Int64)
        return {
            entity: table.with_columns(file=mapping.gather(table.get_column("file")))
            for entity, table in self.tables.items()
        }


def split_files(
    texts: Sequence[str],
    source_files: Sequence[str],
    walker: _MessageParser,
    size_limit: int,
) -> Split:
    """Split the files' texts (each ``columnar_file``) into regular messages, parsed here,
    and the others. The files are split together: polars' cost is per call, not per row.
    ``walker`` is a parser with the standard separators whose lookup methods decide the
    values (it is never run)."""
    frame = _segments_frame(texts)
    messages = _messages_frame(frame, walker, size_limit)
    pid = _patients(frame, messages, walker)
    obx = _observations(frame, messages, pid, walker)
    regular = (
        messages.join(pid.select("msg", pid_ok="ok"), on="msg", how="left")
        .join(obx.group_by("msg").agg(obx_ok=pl.col("ok").all()), on="msg", how="left")
        .filter(pl.col("ok") & pl.col("pid_ok").fill_null(False) & pl.col("obx_ok").fill_null(True))
        .get_column("msg")
        .implode()
    )
    names = pl.DataFrame({"file": range(len(texts)), "source_file": source_files},
                         schema={"file": pl.Int64, "source_file": pl.String})  # fmt: skip
    tables = {
        "patients": _patient_rows(pid.filter(pl.col("msg").is_in(regular))),
        "observations": _observation_rows(obx.filter(pl.col("msg").is_in(regular))),
    }
    records = [0] * len(texts)
    with_header = set(frame.filter(pl.col("is_msh")).get_column("file").unique().to_list())
    headerless = [k for k in range(len(texts)) if k not in with_header]
    for table in tables.values():
        for file, count in table.group_by("file").len().iter_rows():
            records[file] += count
    return Split(
        {entity: _conformed(entity, rows, names) for entity, rows in tables.items()},
        records,
        _other_messages(frame, regular, len(texts)),
        headerless,
    )


def _conformed(entity: str, rows: pl.DataFrame, names: pl.DataFrame) -> pl.DataFrame:
    """The rows in the raw contract, with their file's index in ``file``."""
    types = schema.RAW_COLUMNS[entity]
    rows = rows.cast({n: types[n] for n in rows.columns if n in types})
    rows = rows.join(names, on="file", how="left", maintain_order="left")
    return conformed(entity, rows).with_columns(rows.get_column("file"))


def _segments_frame(texts: Sequence[str]) -> pl.DataFrame:
    """One row per segment of the texts: its index, text, name, file (index in the batch)
    and message: ``msg`` unique in the batch, ``position`` in its file (0 = before the first
    MSH, as the walker numbers them). The framing is the walker's (``syntax._segments``):
    BOM and MLLP bytes removed, any line end, blank lines and batch envelopes dropped, leading
    whitespace trimmed (``columnar_file`` keeps out the characters Python and polars trim
    differently)."""
    # one pass; where a removed byte stood between CR and LF, the line end becomes two and
    # the blank segment between them is dropped like any blank line
    text = pl.col("seg").str.replace_many(
        ["\ufeff", "\x0b", "\x1c", "\r\n", "\n"], ["", "", "", "\r", "\r"]
    )
    frame = (
        pl.DataFrame(
            {"seg": texts, "file": range(len(texts))}, schema={"seg": pl.String, "file": pl.Int64}
        )  # fmt: skip
        .select(text.str.split("\r"), "file")
        .explode("seg")
        .filter(pl.col("seg").str.strip_chars() != "")
        .with_columns(pl.col("seg").str.strip_chars_start())
    )
    frame = frame.with_row_index("i")
    envelopes = frame.filter(pl.col("seg").str.slice(0, 3).is_in(list(BATCH_SEGMENTS)))
    if envelopes.height:  # rare: judged as the walker judges them, then dropped
        drop = [i for i, seg in envelopes.select("i", "seg").iter_rows() if _envelope(seg)]
        frame = frame.filter(~pl.col("i").is_in(drop)).drop("i").with_row_index("i")
    # the standard header is a header; any other text starting MSH is judged by the walker's
    # own test
    candidates = frame.filter(
        pl.col("seg").str.starts_with("MSH") & ~pl.col("seg").str.starts_with(STANDARD_MSH)
    )
    headers = [i for i, s in candidates.select("i", "seg").iter_rows() if _is_msh(s)]
    is_msh = pl.col("seg").str.starts_with(STANDARD_MSH) | pl.col("i").is_in(
        pl.Series(headers, dtype=frame["i"].dtype).implode()
    )
    return (
        frame.with_columns(name=pl.col("seg").str.slice(0, 3), is_msh=is_msh)
        .with_columns(
            position=pl.col("is_msh").cum_sum().over("file").cast(pl.Int64),
        )
        .with_columns(msg=pl.col("file") * (1 << 32) + pl.col("position"))
    )


def _messages_frame(frame: pl.DataFrame, walker: _MessageParser, size_limit: int) -> pl.DataFrame:
    """One row per message: the MSH values the rows carry and whether the message's shape
    is regular (the values of its PID and OBX are judged in their own frames)."""
    name = pl.col("name")
    per_message = frame.group_by("msg").agg(
        pl.col("file", "position").first(),
        chars=pl.col("seg").str.len_chars().sum() + pl.len() - 1,
        pids=(name == "PID").sum(),
        first_pid=pl.col("i").filter(name == "PID").min(),
        first_obx=pl.col("i").filter(name == "OBX").min(),
        escaped=pl.when(name.is_in(["PID", "OBR"]))
        .then(pl.col("seg"))
        .str.contains("\\", literal=True)
        .any(),
    )
    msh = frame.filter(pl.col("is_msh")).select(
        "msg",
        standard=pl.col("seg").str.starts_with(STANDARD_MSH)
        & ~pl.col("seg").str.slice(len(STANDARD_MSH)).str.contains("\\", literal=True),
        fields=pl.col("seg").str.split("|"),
    )
    field = pl.col("fields").list.get
    msh = msh.with_columns(
        facility=_first_component(field(3, null_on_oob=True)).str.strip_chars(),
        issued_raw=_first_component(field(6, null_on_oob=True)),
        msh9=field(8, null_on_oob=True).fill_null(""),
        control_id=field(9, null_on_oob=True).fill_null(""),
    ).drop("fields")
    kind = _lookup(msh["msh9"], lambda v: (walker._message_type(v) or "",), {"kind": pl.String})
    issued = _timestamps(msh["issued_raw"])
    msh = pl.concat([msh, kind, issued.rename(_ISSUED)], how="horizontal")
    return per_message.join(msh, on="msg", how="inner").select(
        "msg",
        "file",
        "position",
        "control_id",
        "issued_raw",
        "issued_at",
        "issued_at_offset_min",
        facility=pl.when(pl.col("facility") != "").then("facility"),
        ok=pl.col("standard")
        & pl.col("kind").str.starts_with("ORU")
        & (pl.col("pids") == 1)
        & (pl.col("first_obx").is_null() | (pl.col("first_obx") > pl.col("first_pid")))
        & ~pl.col("escaped")
        & (pl.col("chars") * 4 <= size_limit),
    )


def _patients(frame: pl.DataFrame, messages: pl.DataFrame, walker: _MessageParser) -> pl.DataFrame:
    """The PID of each message with one: its values and whether it lands (an identifier in
    PID-3, a readable or empty PID-29)."""
    pid = frame.filter(pl.col("name") == "PID").select(
        "msg", "seg", fields=pl.col("seg").str.split("|")
    )
    field = pl.col("fields").list.get
    pid = pid.with_columns(
        pid3=field(3, null_on_oob=True).fill_null(""),
        pid5=field(5, null_on_oob=True).fill_null(""),
        birth_raw=_first_component(field(7, null_on_oob=True)).str.strip_chars(),
        sex=field(8, null_on_oob=True).fill_null("").str.strip_chars(),
        deceased_raw=_first_component(field(29, null_on_oob=True)).str.strip_chars(),
    ).drop("fields")
    mrn = _lookup(pid["pid3"], lambda v: (walker._mrn(v),), {"mrn": pl.String})
    name = _lookup(pid["pid5"], walker._name, {"family_name": pl.String, "given_name": pl.String})
    birth = _lookup(pid["birth_raw"], lambda v: (parse_date(v),), {"birth_date": pl.Date})
    deceased = _timestamps(pid["deceased_raw"]).rename(_DECEASED)
    pid = pl.concat([pid, mrn, name, birth, deceased], how="horizontal")
    return pid.join(messages, on="msg", how="inner", maintain_order="left").with_columns(
        ok=pl.col("mrn").is_not_null()
        & ((pl.col("deceased_raw") == "") | pl.col("deceased_at").is_not_null()),
        sex=pl.when(pl.col("sex") != "").then("sex"),
    )


def _observations(
    frame: pl.DataFrame, messages: pl.DataFrame, pid: pl.DataFrame, walker: _MessageParser
) -> pl.DataFrame:
    """Each OBX with its order context (the last OBR after the PID), its values and whether
    it lands as the walker would land it."""
    name = pl.col("name")
    # the order context restarts at each PID and message (and file): the last OBR's values
    # carried forward to the OBX after it; "" where none (fill_null stops the carry at a start)
    start = (name == "PID") | pl.col("is_msh") | (pl.col("file") != pl.col("file").shift(1))
    obr = pl.when(name == "OBR").then(pl.col("seg")).str.splitn("|", 9).struct
    is_obx = (name == "OBX").cast(pl.Int64)
    context = (
        frame.with_columns(
            filler=_first_component(obr.field("field_3")).str.strip_chars(),
            obr7=_first_component(obr.field("field_7")).str.strip_chars(),
            obx_count=is_obx.cum_sum(),
        )
        .with_columns(
            pl.when(name == "OBR")
            .then(pl.col(column))
            .when(start.fill_null(True))
            .then(pl.lit(""))
            .forward_fill()
            .alias(column)
            for column in ("filler", "obr7")
        )
        .with_columns(  # n: the OBX's ordinal in its message
            n=pl.col("obx_count")
            - pl.when(pl.col("is_msh")).then(pl.col("obx_count")).forward_fill().fill_null(0),
        )
    )
    obx = (
        context.filter(name == "OBX")
        .select("msg", "seg", "n", "filler", "obr7", fields=pl.col("seg").str.splitn("|", 22))
        .unnest("fields")
    )

    def f(k: int) -> pl.Expr:  # OBX-k, "" when absent (the walker pads to 22 fields)
        return pl.col(f"field_{k}").fill_null("")

    obx = obx.select(
        "msg", "seg", "n", "filler", "obr7",
        set_id=f(1).str.strip_chars(),
        value_type=f(2).str.strip_chars(),
        obx3=f(3),
        obx5=f(5),
        obx6=f(6),
        ref=f(7),
        flag=_first_component(f(8).str.split("~").list.first()).str.strip_chars(),
        status_raw=f(11).str.strip_chars(),
        time_raw=pl.when(_first_component(f(14)).str.strip_chars() != "")
        .then(_first_component(f(14)).str.strip_chars())
        .otherwise("obr7"),
        obx17=f(17),
        obx20=f(20),
        shifted=(f(5) == "")
        & (f(6).str.strip_chars() == "")
        & (f(7).str.strip_chars() != "")
        & (f(8).str.strip_chars() != ""),
        escaped=f(5).str.contains("\\", literal=True) | f(7).str.contains("\\", literal=True),
    )  # fmt: skip
    obx = obx.with_columns(
        _lookup(obx["value_type"], lambda v: (v.upper(),), {"value_type": pl.String}).to_series()
    )
    code = _lookup(obx["obx3"], _code(walker), _CODE)
    value = _lookup(obx["value_type"] + "|" + obx["obx5"], _value(walker), _VALUE)
    unit = _lookup(obx["obx6"], _unit(walker), _UNIT)
    ranges = _lookup(obx["ref"], _reference_range, _RANGE)
    effective = _timestamps(obx["time_raw"]).rename(_EFFECTIVE)
    method = _lookup(obx["obx17"], walker._coded_element, _coded("method"))
    site = _lookup(obx["obx20"], walker._coded_element, _coded("body_site"))
    obx = pl.concat([obx, code, value, unit, ranges, effective, method, site], how="horizontal")
    people = pid.select("msg", "file", "position", "mrn", "control_id", "issued_raw",
                        "issued_at", "issued_at_offset_min", "facility")  # fmt: skip
    return obx.join(people, on="msg", how="inner", maintain_order="left").with_columns(
        ok=pl.col("coded")
        & ~pl.col("shifted")
        & ~pl.col("escaped")
        & ((pl.col("time_raw") == "") | pl.col("effective_at").is_not_null()),
    )


# the columns the rows carry as they are (the others are computed below)
PASSED = {
    "patients": ("mrn", "family_name", "given_name", "birth_date", "sex", "deceased_at",
                 "deceased_at_offset_min", "file"),
    "observations": ("mrn", "loinc", "local_code", "local_system", "code_display",
                     "value_numeric", "value_comparator", "value_unit", "value_unit_code",
                     "value_code", "value_code_system", "value_text", "ref_low", "ref_high",
                     "effective_at", "issued_at", "effective_at_offset_min",
                     "issued_at_offset_min", "method_code", "method_system", "method_text",
                     "body_site_code", "body_site_system", "body_site_text", "facility", "file"),
}  # fmt: skip


def _patient_rows(pid: pl.DataFrame) -> pl.DataFrame:
    control_id = pl.col("control_id")
    hashes = _sha256_each(pid.select(pl.concat_str("control_id", "seg", separator="\r")))
    return pid.select(
        *PASSED["patients"],
        source_position="position",
        record_id=control_id + "|PID|1",
        record_hash=pl.Series(hashes, dtype=pl.String),
    )


def _observation_rows(obx: pl.DataFrame) -> pl.DataFrame:
    hashes = _sha256_each(
        obx.select(
            pl.concat_str(
                "control_id",
                pl.col("issued_raw").fill_null(""),
                "mrn",
                "time_raw",
                "seg",
                separator="\r",
            )  # fmt: skip
        )
    )
    code = (  # the walker's `loinc or local_code or ""`
        pl.when(pl.col("loinc") != "").then("loinc")
        .when(pl.col("local_code") != "").then("local_code")
        .otherwise(pl.lit(""))
    )  # fmt: skip
    record_id = pl.concat_str(
        "control_id", "filler", "set_id", code, "status_raw", pl.col("n").cast(pl.String),
        separator="|",
    )  # fmt: skip
    return obx.select(
        *PASSED["observations"],
        source_position="position",
        record_id=record_id,
        record_hash=pl.Series(hashes, dtype=pl.String),
        value_type="kind",
        ref_text=pl.when(pl.col("ref") != "").then("ref"),
        abnormal_flag=pl.when(pl.col("flag") != "").then("flag"),
        status=pl.when(pl.col("status_raw") != "").then("status_raw"),
        order_id=pl.when(pl.col("filler") != "").then("filler").otherwise("control_id"),
    )


def _envelope(segment: str) -> bool:
    """``syntax._segments``' test for a batch envelope segment (its name is one)."""
    return len(segment) == 3 or not segment[3].isalnum()


def _other_messages(frame: pl.DataFrame, regular: pl.Series, files: int) -> list[list[Message]]:
    """Per file, the messages the walker reads: ``(position, segments)`` in file order."""
    spans = (
        frame.filter(~pl.col("msg").is_in(regular))
        .group_by("msg")
        .agg(pl.col("file", "position").first(), first=pl.col("i").min(), last=pl.col("i").max())
        .sort("msg")
        .select("file", "position", "first", "last")
    )
    out: list[list[Message]] = [[] for _ in range(files)]
    segments = frame.get_column("seg")
    for file, position, first, last in spans.iter_rows():
        out[file].append((position, segments.slice(first, last - first + 1).to_list()))
    return out


def _first_component(field: pl.Expr | pl.Series) -> Any:
    """HL7's first component (before ``^``); an absent field is the empty text."""
    return field.str.split("^").list.first().fill_null("")


# lookups: a function of one text, its values named and typed; run once per distinct text
_TIMESTAMP = {"at": pl.Datetime("us"), "offset_min": pl.Int32}
_ISSUED = {"at": "issued_at", "offset_min": "issued_at_offset_min"}
_DECEASED = {"at": "deceased_at", "offset_min": "deceased_at_offset_min"}
_EFFECTIVE = {"at": "effective_at", "offset_min": "effective_at_offset_min"}
_CODE = {
    "coded": pl.Boolean, "loinc": pl.String, "local_code": pl.String,
    "local_system": pl.String, "code_display": pl.String,
}  # fmt: skip
_VALUE = {
    "kind": pl.String, "value_numeric": pl.Float64, "value_comparator": pl.String,
    "value_code": pl.String, "value_code_system": pl.String, "value_text": pl.String,
}  # fmt: skip
_UNIT = {"value_unit": pl.String, "value_unit_code": pl.String}
_RANGE = {"ref_low": pl.Float64, "ref_high": pl.Float64}


def _coded(prefix: str) -> dict[str, pl.DataType]:
    return {f"{prefix}_{part}": pl.String() for part in ("code", "system", "text")}


def _timestamp(raw: str) -> tuple[Any, Any]:
    sent = parse_ts_sent(raw) if raw else None
    return sent if sent is not None else (None, None)


# values.parse_ts_sent's pattern with ASCII digits only: anything else is decided by it
_TS_ASCII = (
    r"^([0-9]{4})([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?([0-9]{2})?"
    r"(?:\.([0-9]{1,6})[0-9]*)?(?:([+-])([0-9]{2})([0-9]{2}))?$"
)


def _timestamps(keys: pl.Series) -> pl.DataFrame:
    """``_timestamp`` of each key as ``at`` and ``offset_min``: the common TS read by polars
    (calendar checked by ``strptime``, the same representable rule); a key it cannot read
    (empty, invalid, year 0, digits other than ASCII) is decided by ``parse_ts_sent``, once
    per distinct key."""
    keys = keys.fill_null("")
    distinct = keys.unique()
    g = distinct.str.strip_chars().str.extract_groups(_TS_ASCII).struct.unnest()
    part = [g.get_column(str(k)) for k in range(1, 11)]
    stamp = pl.concat_str(
        part[0],
        *(
            p.fill_null(default)
            for p, default in zip(part[1:6], ("01", "01", "00", "00", "00"), strict=True)
        ),
    )
    fraction = part[6].str.pad_end(6, "0").cast(pl.Int64).fill_null(0).cast(pl.Duration("us"))
    wall = stamp.str.strptime(pl.Datetime("us"), "%Y%m%d%H%M%S", strict=False) + fraction
    sign = pl.when(part[7] == "-").then(-1).otherwise(1)
    minutes = part[9].cast(pl.Int32)
    offset = (
        pl.when(part[7].is_not_null()).then(sign * (part[8].cast(pl.Int32) * 60 + minutes))
    ).cast(pl.Int32)
    table = pl.DataFrame({"key": distinct}).with_columns(
        at=wall,
        offset_min=offset,
        read=wall.is_not_null()
        & (part[0] != "0000")  # Python's datetime has no year 0, nor a leap second (chrono has)
        & (part[5].is_null() | (part[5] < "60"))
        & (part[7].is_null() | (minutes < 60))
        & representable_expr(wall, offset).fill_null(False),
    )
    unread = table.filter(~pl.col("read")).get_column("key")
    if unread.len():
        decided = _lookup(unread, _timestamp, _TIMESTAMP).with_columns(key=unread)
        table = pl.concat([table.filter(pl.col("read")).drop("read"), decided], how="diagonal")
    else:
        table = table.drop("read")
    return (
        keys.rename("key")
        .to_frame()
        .join(table.select("key", "at", "offset_min"), on="key", how="left", maintain_order="left")
        .drop("key")
    )


def _reference_range(ref: str) -> tuple[float | None, float | None]:
    return parse_reference_range(ref) if ref else (None, None)


def _code(walker: _MessageParser) -> Callable[[str], tuple[Any, ...]]:
    def decide(obx3: str) -> tuple[Any, ...]:
        code = walker._parse_code(obx3)
        return (False, None, None, None, None) if code is None else (True, *code)

    return decide


def _value(walker: _MessageParser) -> Callable[[str], tuple[Any, ...]]:
    def decide(key: str) -> tuple[Any, ...]:
        value_type, obx5 = key.split("|", 1)
        return walker._value(value_type, obx5)

    return decide


def _unit(walker: _MessageParser) -> Callable[[str], tuple[Any, ...]]:
    def decide(obx6: str) -> tuple[Any, ...]:
        return walker._parse_unit(obx6) if obx6 else (None, None)

    return decide


def _lookup(
    keys: pl.Series,
    decide: Callable[[Any], Sequence[Any]],
    columns: dict[str, Any],
) -> pl.DataFrame:
    """``decide`` of each key, as ``columns`` aligned with ``keys``; called once per distinct
    key (null keys are decided as the empty text)."""
    keys = keys.fill_null("")
    distinct = keys.unique()
    decided = [decide(k) for k in distinct.to_list()]
    names = list(columns)
    table = pl.DataFrame(
        {"key": distinct, **{n: [row[j] for row in decided] for j, n in enumerate(names)}},
        schema={"key": keys.dtype, **columns},
    )
    return (
        keys.rename("key")
        .to_frame()
        .join(table, on="key", how="left", maintain_order="left")
        .drop("key")
    )


def _sha256_each(texts: pl.DataFrame) -> list[str]:
    """sha256 of each text of a one-column frame: the walker's ``_sha256`` of its parts
    joined by CR."""
    sha256 = hashlib.sha256
    return [sha256(t).hexdigest() for t in texts.to_series().cast(pl.Binary).to_list()]
