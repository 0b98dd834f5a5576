"""HL7 v2 ORU parser against the 59 real, messy messages in hl7v2-oru-samples (read in place).

Known answers come from the samples' index.csv (OBX and numeric OBX counts per file) and from
reading the messages themselves; derived messages (no PID, MLLP framing, batch envelopes) are
built in tmp_path from a real sample.
"""

from __future__ import annotations

import csv
import re
import time
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from trialscreen import schema
from trialscreen.feeds import ParsedFile
from trialscreen.feeds.hl7v2 import (
    Encoding,
    is_hl7_file,
    parse_hl7_file,
    parse_reference_range,
    parse_ts,
    unescape,
)
from trialscreen.feeds.hl7v2.values import parse_ts_sent

SAMPLES = "hl7v2-oru-samples"
# Parametrization needs the index at collection time: the data is in tests/data (conftest.py).
_INDEX = Path(__file__).resolve().parents[1] / "data" / SAMPLES / "index.csv"
INDEX_ROWS = list(csv.DictReader(_INDEX.open(encoding="utf-8")))
FILES = [row["file"] for row in INDEX_ROWS]

# Messages quarantined whole (one record), with the reason.
WHOLE_MESSAGE_QUARANTINE = {
    "hapi-hl7v2/EscapeTest_L114_v24_highlight.hl7": "message has no PID segment",
    "hapi-hl7v2/NewPipeParserTest_L911_bare_obx.hl7": "message has no PID segment",
    "hapi-hl7v2/NewPipeParserTest_L1196_v2999.hl7": "message has no PID segment",
    "hapi-hl7v2/NewPipeParserTest_L493_blank_lines.hl7": "PID #1 has no patient identifier",
    "hl7v2-fhir-converter/FHIRConverterTest_L329_nonhdl.hl7": "PID #1 has no patient identifier",
    "hl7v2-fhir-converter/Hl7ObservationFHIRConversionTest_L494_nist_loi.hl7": (
        "PID #1 has no patient identifier"
    ),
}
# OBX segments the index does not count: run together on the OBR line in the source.
RECOVERED_OBX = {"hapi-hl7v2/messages_txt_v22_radiology.hl7": 5}
# Why a numeric (NM/SN) OBX of the index does not land as a quantity row.
NUMERIC_EXCLUSIONS: dict[str, tuple[int, str]] = {
    "node-hl7-complete/realm_realm-hepatitis-c-virus.hl7": (1, "OBX fields appear shifted"),
    "FHIR-Converter/LAB-ORU-1.hl7": (2, "pending (OBX-11 I) with empty OBX-5: value_type none"),
    "hl7v2-fhir-converter/FHIRConverterTest_L329_nonhdl.hl7": (1, "PID #1 has no patient"),
    "hl7v2-fhir-converter/Hl7ObservationFHIRConversionTest_L494_nist_loi.hl7": (
        1,
        "PID #1 has no patient",
    ),
    "nHapi/PipeParserV26Tests_L156_mixed_types.hl7": (1, "has no OBX-3 observation code"),
    **{
        f"nHapi/ValidationTests_{name}.hl7": (1, "has no OBX-3 observation code")
        for name in ("L46_nm_Hello", "L53_nm_symbols", "L60_nm_10", "L67_nm_neg1", "L74_nm_1_5")
    },
}
# How a reason names an OBX: set id and type only in their standard shapes, else lengths
_OBX = (
    r"OBX #\d+ \(set id (\d{1,4}|-|not a number, \d+ characters), "
    r"type ([A-Z]{1,3}|-|not a data type code, \d+ characters)\)"
)
# Every quarantine reason the parser may write: templates with ordinals, never a value.
ERROR_TEMPLATES = [
    r"message has no PID segment",
    r"PID #\d+ has no patient identifier in PID-3",
    _OBX + r" has no OBX-3 observation code",
    _OBX + r": OBX fields appear shifted \(.*\)",
    _OBX + r": observation time \((OBX-14|OBR-7)\) is not an HL7 timestamp",
    r"OBX #\d+ precedes the PID segment",
    r"segments before the first MSH segment \(no message header\)",
]


def _parse(external_dir: Path, rel: str) -> ParsedFile:
    root = external_dir / SAMPLES
    return parse_hl7_file(root / rel, root)


def _text(external_dir: Path, rel: str) -> str:
    return (external_dir / SAMPLES / rel).read_bytes().decode("utf-8")


def _write(tmp_path: Path, name: str, content: str | bytes) -> ParsedFile:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return parse_hl7_file(path, tmp_path)


def _segments(message: str) -> list[str]:
    return [s for s in re.split(r"\r\n|\r|\n", message) if s.strip()]


def _obs(parsed: ParsedFile) -> pl.DataFrame:
    return parsed.tables["observations"]


def _assert_invariant(parsed: ParsedFile) -> None:
    assert parsed.records_in == parsed.rows_out + parsed.quarantined.height


# --- every real sample --------------------------------------------------------------------


@pytest.mark.parametrize("rel", FILES)
def test_every_sample_lands_or_is_quarantined_with_reason(external_dir: Path, rel: str) -> None:
    parsed = _parse(external_dir, rel)

    _assert_invariant(parsed)
    assert parsed.feed == "hl7" and parsed.source_file == rel
    assert parsed.rows_out + parsed.quarantined.height > 0
    for entity, frame in parsed.tables.items():
        assert frame.schema == pl.Schema(schema.RAW_COLUMNS[entity])
        assert frame["source_file"].to_list() == [rel] * frame.height
    assert parsed.quarantined.schema == pl.Schema(schema.QUARANTINE_COLUMNS)
    quarantined = parsed.quarantined.to_dicts()
    for row in quarantined:
        assert row["scope"] == "record" and row["source_position"] == 1
        assert row["raw_payload"].startswith("MSH")
        assert any(re.fullmatch(t, row["error"]) for t in ERROR_TEMPLATES), row["error"]
    if rel in WHOLE_MESSAGE_QUARANTINE:
        assert parsed.records_in == 1 and parsed.rows_out == 0
        assert WHOLE_MESSAGE_QUARANTINE[rel] in quarantined[0]["error"]
    else:
        assert parsed.tables["patients"].height == 1


@pytest.mark.parametrize("row", INDEX_ROWS, ids=FILES)
def test_obx_record_counts_match_index(external_dir: Path, row: dict[str, str]) -> None:
    parsed = _parse(external_dir, row["file"])

    if row["file"] in WHOLE_MESSAGE_QUARANTINE:
        assert parsed.records_in == 1
    else:  # one PID + every OBX, landed or quarantined
        expected = 1 + int(row["n_obx"]) + RECOVERED_OBX.get(row["file"], 0)
        assert parsed.records_in == expected


@pytest.mark.parametrize("row", INDEX_ROWS, ids=FILES)
def test_numeric_obx_counts_match_index(external_dir: Path, row: dict[str, str]) -> None:
    parsed = _parse(external_dir, row["file"])
    quantities = _obs(parsed).filter(pl.col("value_type") == "quantity")
    excluded, reason = NUMERIC_EXCLUSIONS.get(row["file"], (0, ""))

    assert quantities.height + excluded == int(row["n_obx_numeric"])
    assert quantities["value_numeric"].null_count() == 0
    if excluded and "value_type none" in reason:
        assert _obs(parsed).filter(pl.col("value_type") == "none").height == excluded
    elif excluded:
        assert any(reason in e for e in parsed.quarantined["error"])


def test_sample_corpus_totals(external_dir: Path) -> None:
    parsed = [_parse(external_dir, rel) for rel in FILES]

    # 177 OBX in the index + 5 recovered run-together OBX = 182; 9 of them sit in the 6
    # messages quarantined whole; 21 single OBX are quarantined (no OBX-3 code: 20, shifted: 1).
    assert len(parsed) == 59
    assert sum(p.tables["patients"].height for p in parsed) == 59 - 6
    assert sum(_obs(p).height for p in parsed) == 182 - 9 - 21
    assert sum(p.quarantined.height for p in parsed) == 6 + 21
    assert sum("no OBX-3" in e for p in parsed for e in p.quarantined["error"]) == 20
    assert all(not p.ignored for p in parsed)


# --- specific quirks ----------------------------------------------------------------------


def test_field_shifted_obx_is_quarantined_not_landed_with_unit_as_flag(external_dir: Path) -> None:
    parsed = _parse(external_dir, "node-hl7-complete/realm_realm-hepatitis-c-virus.hl7")

    errors = parsed.quarantined["error"].to_list()
    assert errors == [
        "OBX #1 (set id 1, type SN): OBX fields appear shifted"
        " (OBX-5/OBX-6 empty, a value in OBX-7)"
    ]
    obs = _obs(parsed)
    assert obs["loinc"].to_list() == ["35659-2", "11294-6"]  # the two unshifted OBX land
    assert "5198-7" not in obs["loinc"].to_list()
    assert obs.row(0, named=True)["value_unit"] == "a"


def test_a_reason_names_a_shifted_set_id_and_type_by_length_only(tmp_path: Path) -> None:
    """Fields shifted by a sender put names, dates and MRNs in OBX-1/OBX-2: the reason gives
    their lengths, never their text (docs/decisions.md "Free text from source records")."""
    message = "\r".join(
        [
            "MSH|^~\\&|LAB|HOSP|TS|HOSP|20261110090000||ORU^R01|M1|P|2.5.1",
            "PID|1||MRNX0006^^^HOSP^MR||SMITH^JOHN||19700101|M",
            "OBX|SMITH^JOHN|DOB 1970-01-01 MRNX0006|||5|mg||||||F",
        ]
    )
    [error] = _write(tmp_path, "shifted.hl7", message + "\r").quarantined["error"].to_list()
    assert error == (
        "OBX #1 (set id not a number, 10 characters, type not a data type code, 23 characters)"
        " has no OBX-3 observation code"
    )


def test_unshifting_the_hcv_obx_lands_the_sn_comparator(tmp_path: Path, external_dir: Path) -> None:
    text = _text(external_dir, "node-hl7-complete/realm_realm-hepatitis-c-virus.hl7")
    fixed = text.replace("|1|||>^11.0|", "|1|>^11.0|")  # drop the two extra empty fields
    assert fixed != text

    row = (
        _obs(_write(tmp_path, "hcv.hl7", fixed))
        .filter(pl.col("loinc") == "5198-7")
        .row(0, named=True)
    )

    assert (row["value_type"], row["value_comparator"], row["value_numeric"]) == (
        "quantity",
        ">",
        11.0,
    )
    assert (row["value_unit"], row["value_unit_code"], row["abnormal_flag"]) == ("1", "1", "H")
    assert row["status"] == "F"  # as sent: staging maps it


def test_utf8_bom_and_lf_terminators_parse(external_dir: Path) -> None:
    assert (external_dir / SAMPLES / "FHIR-Converter/LAB-ORU-2.hl7").read_bytes()[
        :3
    ] == b"\xef\xbb\xbf"

    parsed = _parse(external_dir, "FHIR-Converter/LAB-ORU-2.hl7")

    patient = parsed.tables["patients"].row(0, named=True)
    assert (patient["mrn"], patient["birth_date"], patient["sex"]) == (
        "10006579",
        date(1924, 10, 10),
        "M",
    )
    hgb = _obs(parsed).filter(pl.col("loinc") == "20509-6").row(0, named=True)
    assert (hgb["value_numeric"], hgb["value_unit"], hgb["status"]) == (13.4, "g/l-1", "F")
    # 20141006083000+0700 -> the wall clock as sent, and its offset (decisions.md)
    assert hgb["effective_at"] == datetime(2014, 10, 6, 8, 30)
    assert hgb["effective_at_offset_min"] == 420
    assert hgb["order_id"] == "82503246"  # OBR-3 filler number of the second OBR
    assert _obs(parsed).height == 10


def test_lri_bom_message_reads_platelets_in_cells_per_ul(external_dir: Path) -> None:
    obs = _obs(_parse(external_dir, "FHIR-Converter/LRI_2.0-NG_CBC_Typ_Message.hl7"))

    plt = obs.filter(pl.col("loinc") == "26515-7").row(0, named=True)
    assert (plt["value_numeric"], plt["value_unit"], plt["value_unit_code"]) == (
        210000.0,
        "{cells}/uL",
        "{cells}/uL",
    )
    assert (plt["ref_low"], plt["ref_high"], plt["ref_text"]) == (
        150000.0,
        350000.0,
        "150000 to 350000",
    )
    hypochromia = obs.filter(pl.col("loinc") == "30400-6").row(0, named=True)
    assert (
        hypochromia["value_type"],
        hypochromia["value_code"],
        hypochromia["value_code_system"],
    ) == (
        "coded",
        "260415000",
        "SCT",
    )


def test_dollar_subcomponent_encoding_characters(external_dir: Path) -> None:
    parsed = _parse(external_dir, "nHapi/PipeParserV231Tests_L120_cbc_dollar_enc.hl7")

    obs = _obs(parsed)
    assert obs.height == 20 and parsed.quarantined.height == 0
    plt = obs.filter((pl.col("local_code") == "PLTC") & (pl.col("value_type") == "quantity"))
    row = plt.row(0, named=True)
    assert (row["value_numeric"], row["value_unit"], row["abnormal_flag"]) == (45.0, "k/uL", "PL")
    assert (row["ref_low"], row["ref_high"], row["status"]) == (150.0, 400.0, "Z")
    assert parsed.tables["patients"]["mrn"].to_list() == ["40206609"]


def test_doubled_escape_character_in_msh2(external_dir: Path) -> None:
    parsed = _parse(external_dir, "hl7v2-fhir-converter/SegmentUtilTest_L219_two_obr.hl7")

    obs = _obs(parsed)
    assert obs["order_id"].to_list() == ["986", "986", "98", "98"]
    assert obs["status"].to_list() == ["F", "F", "P", "F"]
    culture = obs.filter(pl.col("loinc") == "625-4").row(0, named=True)
    assert (culture["value_code"], culture["abnormal_flag"]) == ("27268008", "A")


def test_mojibake_molis_message_keeps_replacement_characters(external_dir: Path) -> None:
    parsed = _parse(external_dir, "nHapi/PipeParserV24Tests_L314_molis_german.hl7")

    obs = _obs(parsed)
    prolactin = obs.filter(pl.col("local_code") == "PROL").row(0, named=True)
    assert prolactin["value_unit"] == "\ufffdg/l"
    assert prolactin["ref_text"] == "(2.3-25.0) \\ (2.3-10.0)Menopause"  # literal \ kept
    assert (prolactin["ref_low"], prolactin["ref_high"]) == (None, None)  # two ranges: ambiguous
    aclag = obs.filter(pl.col("local_code") == "ACLAG").row(0, named=True)
    assert (aclag["ref_high"], aclag["value_unit"], aclag["local_system"]) == (1.0, "MOC", "MOLIS")
    allergy = obs.filter(pl.col("local_code") == "ALLERG").row(0, named=True)
    assert "Drucke\n etwas" in allergy["value_text"]  # \.br\ decoded
    assert obs["status"].value_counts().sort("status").rows() == [("C", 4), ("F", 5)]


def test_crlf_with_blank_lines_gives_the_same_rows_as_cr(
    tmp_path: Path, external_dir: Path
) -> None:
    cr = _text(external_dir, "python-hl7/samples_py_sample_hl7.hl7")
    crlf = "\r\n\r\n".join(_segments(cr)) + "\r\n\r\n"

    from_cr = _write(tmp_path, "cr.hl7", cr)
    from_crlf = _write(tmp_path, "crlf.hl7", crlf)

    cols = ["record_id", "value_numeric", "ref_low", "ref_high", "effective_at"]
    assert _obs(from_crlf).select(cols).equals(_obs(from_cr).select(cols))
    assert _obs(from_cr).height == 2


def test_hapi_blank_line_sample_splits_segments_and_quarantines_empty_pid(
    external_dir: Path,
) -> None:
    parsed = _parse(external_dir, "hapi-hl7v2/NewPipeParserTest_L493_blank_lines.hl7")

    row = parsed.quarantined.row(0, named=True)
    assert row["error"] == "PID #1 has no patient identifier in PID-3"
    assert [s[:3] for s in row["raw_payload"].split("\r")] == [
        "MSH",
        "PID",
        "PV1",
        "ORC",
        "OBR",
        "OBX",
    ]


def test_sn_values_with_and_without_comparator(external_dir: Path, tmp_path: Path) -> None:
    glucose = _obs(_parse(external_dir, "FHIR-Converter/ORU-R01-RMGEAD.hl7")).row(0, named=True)
    assert (glucose["value_numeric"], glucose["value_comparator"], glucose["value_text"]) == (
        182.0,
        None,
        "^182",
    )
    assert glucose["effective_at"] == datetime(2002, 2, 15, 7, 30)  # OBR-7 as sent
    assert glucose["effective_at_offset_min"] == 360

    text = _text(external_dir, "FHIR-Converter/ORU-R01-RMGEAD.hl7")
    for sent, expected in [("<^0.5", ("<", 0.5)), (">=^10", (">=", 10.0)), ("<0.5", ("<", 0.5))]:
        row = _obs(_write(tmp_path, "sn.hl7", text.replace("||^182|", f"||{sent}|"))).row(
            0, named=True
        )
        assert (row["value_comparator"], row["value_numeric"]) == expected
    ratio = _obs(_write(tmp_path, "sn.hl7", text.replace("||^182|", "||^1^:^128|"))).row(
        0, named=True
    )
    assert (ratio["value_type"], ratio["value_numeric"]) == ("string", None)


def test_inline_comparator_in_nm_and_numeric_st(external_dir: Path, tmp_path: Path) -> None:
    text = _text(external_dir, "hl7v2-fhir-converter/Hl7MessageTest_L515_gm_dl.hl7")
    nm = _obs(
        _write(
            tmp_path,
            "nm.hl7",
            text.replace("|NM|0135-4^TotalProtein||7.3|", "|NM|0135-4^TotalProtein||<0.5|"),
        )
    )
    st = _obs(
        _write(
            tmp_path,
            "st.hl7",
            text.replace("|NM|0135-4^TotalProtein||7.3|", "|ST|0135-4^TotalProtein||>= 10|"),
        )
    )

    assert nm.select("value_type", "value_comparator", "value_numeric").row(0) == (
        "quantity",
        "<",
        0.5,
    )
    assert st.select("value_type", "value_comparator", "value_numeric").row(0) == (
        "quantity",
        ">=",
        10.0,
    )


def test_non_numeric_nm_lands_as_unusable_string(external_dir: Path, tmp_path: Path) -> None:
    text = _text(external_dir, "nHapi/ValidationTests_L46_nm_Hello.hl7")
    assert _parse(external_dir, "nHapi/ValidationTests_L46_nm_Hello.hl7").quarantined.height == 1

    coded = text.replace("OBX|1|NM|||Hello", "OBX|1|NM|2345-7^Glucose^LN||Hello")
    row = _obs(_write(tmp_path, "hello.hl7", coded)).row(0, named=True)

    assert (row["value_type"], row["value_numeric"], row["value_text"]) == ("string", None, "Hello")


def test_repeated_nm_value_takes_the_first_and_keeps_all(external_dir: Path) -> None:
    obs = _obs(_parse(external_dir, "hapi-hl7v2/MessageQueryTest_L23_repeated_value.hl7"))

    temp = obs.filter(pl.col("local_code") == "1001910").row(0, named=True)
    assert (temp["value_numeric"], temp["value_text"]) == (37.0, "37.0~37.1~37.2")
    assert temp["order_id"] == "09527539021001920"


def test_reference_range_shapes_from_real_messages(external_dir: Path) -> None:
    obs = _obs(_parse(external_dir, "hapi-hl7v2/ParserPerformance_L35_abg_13obx.hl7"))
    ranges = dict(
        zip(
            obs["ref_text"].to_list(),
            zip(obs["ref_low"], obs["ref_high"], strict=True),
            strict=True,
        )
    )
    assert ranges["-3-3"] == (-3.0, 3.0)
    assert ranges[".4-1.5"] == (0.4, 1.5)
    assert ranges["7.35-7.45"] == (7.35, 7.45)

    cases = {
        "0.6-1.2": (0.6, 1.2),
        "<1.2": (None, 1.2),
        ">=10": (10.0, None),
        "3.5 to 5.0": (3.5, 5.0),
        "70_105": (70.0, 105.0),
        "(<1.0)": (None, 1.0),
        "(1.6-12.0)": (1.6, 12.0),
        "<9 mcg/dL:  Acceptable background lead exposure": (None, 9.0),
        "<130 optimal": (None, 130.0),
        "<0.50 IU/mL": (None, 0.5),
        "High Viral Load > or = 850000iU/mL": (None, None),
        "^^10.000000": (None, None),
        "(2.3-25.0) \\ (2.3-10.0)Menopause": (None, None),
        "Negative": (None, None),
    }
    for text, expected in cases.items():
        assert parse_reference_range(text) == expected, text


def test_status_as_sent_and_corrected_result(external_dir: Path) -> None:
    corrected = _obs(
        _parse(external_dir, "node-hl7-complete/nist_ORU_R01_2.5.1_SampleTestCase3.hl7")
    )
    row = corrected.row(0, named=True)
    assert (row["status"], row["value_numeric"], row["value_unit"], row["order_id"]) == (
        "C",
        25.0,
        "ug/dl",
        "9700123",
    )
    final = _obs(_parse(external_dir, "node-hl7-complete/nist_ORU_R01_2.5.1_SampleTestCase1.hl7"))
    # the corrected result shares the order and code with the final one it supersedes
    assert final.select("order_id", "loinc").row(0) == corrected.select("order_id", "loinc").row(0)
    assert final["status"].to_list() == ["F"]

    lab1 = _obs(_parse(external_dir, "FHIR-Converter/LAB-ORU-1.hl7"))
    assert set(lab1["status"]) == {"I", "P", "F"}
    ihe = _obs(_parse(external_dir, "hapi-hl7v2/MessageValidatorTest_L90_ihe_pcd.hl7"))
    assert ihe["status"].to_list() == [None, "X", "X"] + ["R"] * 4
    # OBX-11 lands as sent (raw keeps values as sent); staging maps the letters
    # (macro normalize_result_status; tests/dbt/test_normalization.py)


def test_trailing_space_status_is_trimmed(external_dir: Path, tmp_path: Path) -> None:
    text = _text(external_dir, "hapi-hl7v2/EscapeTest_L114_v24_highlight.hl7")
    segs = _segments(text)
    with_pid = "\r".join([segs[0], "PID|||7005728^^^TML^MR||TEST^A", *segs[1:]])

    row = _obs(_write(tmp_path, "pid.hl7", with_pid)).row(0, named=True)

    assert row["status"] == "F"
    assert "pH :  7.28 (7.38-7.43)" in row["value_text"]  # \H\ \N\ dropped, \.br\ -> newline
    assert "\n" in row["value_text"]


def test_message_without_pid_is_quarantined(tmp_path: Path, external_dir: Path) -> None:
    text = _text(external_dir, "hapi-hl7v2/ParserPerformance_L35_abg_13obx.hl7")
    no_pid = "\r".join(s for s in _segments(text) if not s.startswith("PID"))

    parsed = _write(tmp_path, "nopid.hl7", no_pid)

    _assert_invariant(parsed)
    assert parsed.records_in == 1 and parsed.rows_out == 0
    row = parsed.quarantined.row(0, named=True)
    assert (row["error"], row["source_position"], row["scope"]) == (
        "message has no PID segment",
        1,
        "record",
    )
    assert row["raw_payload"] == no_pid


def test_mllp_framing_is_stripped(tmp_path: Path, external_dir: Path) -> None:
    raw = (external_dir / SAMPLES / "hapi-hl7v2/ParserPerformance_L35_abg_13obx.hl7").read_bytes()

    framed = _write(tmp_path, "mllp.hl7", b"\x0b" + raw + b"\x1c\x0d" + b"\x0b" + raw + b"\x1c\x0d")
    plain = _parse(external_dir, "hapi-hl7v2/ParserPerformance_L35_abg_13obx.hl7")

    _assert_invariant(framed)
    assert _obs(framed).height == 2 * _obs(plain).height == 26
    assert (
        _obs(framed)
        .filter(pl.col("source_position") == 2)
        .drop("source_file", "source_position")
        .equals(_obs(plain).drop("source_file", "source_position"))
    )


def test_batch_file_with_envelopes_and_an_adt_message(tmp_path: Path, external_dir: Path) -> None:
    samples = [
        "hapi-hl7v2/ParserPerformance_L35_abg_13obx.hl7",
        "FHIR-Converter/LAB-ORU-2.hl7",
        "nHapi/ValidationTests_L46_nm_Hello.hl7",
    ]
    adt = "MSH|^~\\&|ADM|H|||20240101120000||ADT^A01|ADT1|P|2.5\rPID|||123^^^H^MR||X^Y\rPV1|1|I"
    messages = [_text(external_dir, s).lstrip("\ufeff") for s in samples]
    body = [
        *_segments(messages[0]),
        *_segments(adt),
        *_segments(messages[1]),
        *_segments(messages[2]),
    ]
    batch = "\n".join(["FHS|^~\\&|LAB", "BHS|^~\\&|LAB", *body, "BTS|4", "FTS|1"]) + "\n"

    parsed = _write(tmp_path, "batch.txt", batch)

    _assert_invariant(parsed)
    assert parsed.ignored == {"ADT^A01": 1}
    assert parsed.tables["patients"]["source_position"].to_list() == [1, 3, 4]
    assert _obs(parsed)["source_position"].value_counts().sort("source_position").rows() == [
        (1, 13),
        (3, 10),
    ]
    assert parsed.quarantined.select("source_position", "error").rows() == [
        (4, "OBX #1 (set id 1, type NM) has no OBX-3 observation code")
    ]
    assert parsed.records_in == (1 + 13) + (1 + 10) + (1 + 1)


def test_run_together_obx_segments_are_recovered(external_dir: Path) -> None:
    obs = _obs(_parse(external_dir, "hapi-hl7v2/messages_txt_v22_radiology.hl7"))

    assert obs["value_text"].to_list()[:2] == [
        "This is a test on 05/02/94.",
        "This is a test for the CRR.",
    ]
    assert set(obs["local_code"]) == {"FIND"} and set(obs["order_id"]) == {"0000000566"}
    assert obs["effective_at"].to_list() == [datetime(1994, 5, 2, 15, 45)] * 5


def test_unparseable_observation_time_quarantines_only_that_obx(
    tmp_path: Path, external_dir: Path
) -> None:
    text = _text(external_dir, "FHIR-Converter/LAB-ORU-2.hl7")
    broken = text.replace(
        "|20570-8^HEMATOCRIT^LN||39.7|%||N|||F|||20141006083000+0700",
        "|20570-8^HEMATOCRIT^LN||39.7|%||N|||F|||2014-10-06",
    )
    assert broken != text

    parsed = _write(tmp_path, "badtime.hl7", broken)

    _assert_invariant(parsed)
    assert _obs(parsed).height == 9
    assert parsed.quarantined["error"].to_list() == [
        "OBX #9 (set id 4, type NM): observation time (OBX-14) is not an HL7 timestamp"
    ]


def test_pid3_prefers_the_mr_identifier(external_dir: Path) -> None:
    def mrn(rel: str) -> str:
        return _parse(external_dir, rel).tables["patients"]["mrn"].item()

    assert mrn("node-hl7-complete/realm_realm-campylobacter-jejuni.hl7") == "36363636"  # MR, not SS
    assert mrn("hapi-hl7v2/MessageQueryTest_L23_repeated_value.hl7") == "T12345"  # first repetition
    assert (
        mrn("hl7v2-fhir-converter/Hl7MessageTest_L515_gm_dl.hl7") == "000010016"
    )  # MR only in CX.4
    assert mrn("hapi-hl7v2/MessageValidatorTest_L90_ihe_pcd.hl7") == "1"  # trailing space trimmed


def test_patient_fields_as_sent(external_dir: Path) -> None:
    patient = _parse(external_dir, "hl7v2-fhir-converter/Hl7MessageTest_L515_gm_dl.hl7").tables[
        "patients"
    ]
    row = patient.row(0, named=True)
    assert (row["family_name"], row["given_name"], row["sex"], row["birth_date"]) == (
        "Wood",
        "Patrick",
        "female",
        date(1970, 1, 1),
    )
    assert row["patient_ref"] == row["mrn"]
    bad_birth = _parse(external_dir, "python-hl7/samples_py_sample_hl7.hl7").tables["patients"]
    assert bad_birth["birth_date"].to_list() == [None]  # PID-7 196203520 is not a date


def test_loinc_and_local_code_from_both_triplets(external_dir: Path) -> None:
    obs = _obs(
        _parse(external_dir, "hl7v2-fhir-converter/Hl7ORUMessageTest_L758_nist_hep_panel.hl7")
    )

    assert obs.select("loinc", "local_code", "local_system").rows() == [
        ("22314-9", "HAVM", "L"),
        ("20575-7", "HAVAB", "L"),
        ("22316-4", "HBcAbQ", "L"),
    ]
    hbc = obs.row(2, named=True)
    assert (hbc["value_numeric"], hbc["value_unit"], hbc["ref_high"], hbc["abnormal_flag"]) == (
        0.7,
        "[IU]/mL",
        0.5,
        "H",
    )


def test_escape_sequences_are_decoded() -> None:
    enc = Encoding()
    assert unescape(r"a\F\b\S\c\T\d\R\e\E\f", enc) == "a|b^c&d~e\\f"
    assert unescape(r"\H\7.28\N\ line\.br\next\X41\ ", enc) == "7.28 line\nnextA "
    assert (
        unescape(r"(1.6-12.0)x \ (8.0-22.0)Peak \ end", enc)
        == r"(1.6-12.0)x \ (8.0-22.0)Peak \ end"
    )
    dollar = Encoding("|", "^", "~", "\\", "$")
    assert unescape(r"a\T\b", dollar) == "a$b"


def test_hl7_timestamps_are_kept_as_sent() -> None:
    # wall clock as sent + the offset in minutes (docs/decisions.md, "Timestamps as sent")
    assert parse_ts_sent("20021011161756.297-0500") == (
        datetime(2002, 10, 11, 16, 17, 56, 297000),
        -300,
    )
    assert parse_ts_sent("20080818183002.1-0700") == (
        datetime(2008, 8, 18, 18, 30, 2, 100000),
        -420,
    )
    assert parse_ts_sent("201203141259-0215") == (datetime(2012, 3, 14, 12, 59), -135)
    assert parse_ts_sent("201203141259") == (datetime(2012, 3, 14, 12, 59), None)
    assert parse_ts("2015") == datetime(2015, 1, 1)
    assert parse_ts("19100000000000+0000") is None  # month 00
    assert parse_ts("2014-10-06") is None


def test_file_that_is_not_hl7_is_quarantined_as_a_file(external_dir: Path, tmp_path: Path) -> None:
    parsed = parse_hl7_file(external_dir / SAMPLES / "PROVENANCE.md", external_dir / SAMPLES)

    _assert_invariant(parsed)
    row = parsed.quarantined.row(0, named=True)
    assert (row["scope"], row["source_position"], row["source_file"]) == (
        "file",
        None,
        "PROVENANCE.md",
    )
    assert row["error"] == "no MSH segment found: not an HL7 v2 file"
    assert row["raw_payload"].startswith("# Provenance")
    assert _write(tmp_path, "empty.hl7", b"").quarantined["error"].to_list() == ["file is empty"]


def test_text_before_first_msh_is_quarantined(tmp_path: Path, external_dir: Path) -> None:
    text = _text(external_dir, "hapi-hl7v2/ParserTest_L100_ethanol_v2999.hl7")

    parsed = _write(tmp_path, "pre.hl7", "garbage line\r" + text)

    _assert_invariant(parsed)
    assert parsed.quarantined.select("source_position", "error").rows() == [
        (0, "segments before the first MSH segment (no message header)")
    ]
    assert _obs(parsed)["value_numeric"].to_list() == [224.0]


def test_is_hl7_file() -> None:
    assert is_hl7_file(Path("a/b.hl7")) and is_hl7_file(Path("x.TXT"))
    assert not is_hl7_file(Path("x.json"))


@pytest.mark.slow  # a measurement on a large generated input
def test_throughput_on_generated_oru_batch(tmp_path: Path, external_dir: Path) -> None:
    """A measurement, not a timed assert: prints MB/s and OBX/s (run with -s to see it)."""
    text = _text(external_dir, "hapi-hl7v2/ParserPerformance_L35_abg_13obx.hl7")
    msh, *rest = _segments(text)
    fields = msh.split("|")
    messages = []
    for i in range(20_000):
        fields[9] = f"CTRL{i:08d}"
        messages.append("\r".join(["|".join(fields), *rest]) + "\r")
    path = tmp_path / "bulk.hl7"
    path.write_text("".join(messages), encoding="utf-8")

    started = time.perf_counter()
    parsed = parse_hl7_file(path, tmp_path)
    elapsed = time.perf_counter() - started

    n_obx = _obs(parsed).height
    assert n_obx == 20_000 * 13 and parsed.tables["patients"].height == 20_000
    assert parsed.records_in == 20_000 * 14 and parsed.quarantined.height == 0
    assert _obs(parsed)["record_id"].n_unique() == n_obx
    size_mb = path.stat().st_size / 1e6
    print(f"\nHL7 throughput: {size_mb:.1f} MB in {elapsed:.2f} s = {size_mb / elapsed:.1f} MB/s, "
          f"{n_obx / elapsed:,.0f} OBX/s, {20_000 / elapsed:,.0f} messages/s")  # fmt: skip


def test_each_pid_in_one_message_owns_the_results_after_it(
    tmp_path: Path, external_dir: Path
) -> None:
    first = _segments(_text(external_dir, "hapi-hl7v2/ParserTest_L100_ethanol_v2999.hl7"))
    second = _segments(_text(external_dir, "nHapi/EscapeTests_L168_olis_escapes.hl7"))[1:]

    parsed = _write(tmp_path, "two_pid.hl7", "\r".join(first + second))

    _assert_invariant(parsed)
    assert parsed.tables["patients"]["mrn"].to_list() == ["T12345", "7005728"]
    assert parsed.tables["patients"]["record_id"].to_list() == [
        "LABGL1199510021852632|PID|1",
        "LABGL1199510021852632|PID|2",
    ]
    assert _obs(parsed).select("mrn", "local_code").rows() == [
        ("T12345", "7000040"),
        ("7005728", "Z049107"),
        ("7005728", "Z101068"),
    ]
