"""Issue 10: every OBX of the real HL7 samples (tests/data/hl7v2-oru-samples) whose value is
of a text type and holds a digit, with how it is read (docs/decisions.md "Lab values as
laboratories send them").

None of them is a single numeric result: the TX rows of the nHapi CBC repeat the reference range
as a note, the others are timestamps sent as values, narrative text or a mis-typed FN field.
The parser lands each as sent (value_text, no number); dbt reads a text only when it starts
with a number, so the notes under codes the seeds map (WBC, HGB, PLTC) are never taken for a
count. The mirror of the dbt pattern below is the one in int_observations.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from trialscreen.feeds.hl7v2 import parse_hl7_file

ROOT = Path(__file__).resolve().parents[1] / "data" / "hl7v2-oru-samples"
SEEDS = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds"
# the number pattern of int_observations (text_split), in Python syntax
NUMBER = re.compile(
    r"^(<=|>=|<|>|=)? *"
    r"([0-9]{1,3}(?:,[0-9]{3})+(?:[.][0-9]+)?|[0-9]+(?:[.][0-9]*)?|[.][0-9]+) *(.*)$"
)
NBH = "nHapi/PipeParserV231Tests_L120_cbc_dollar_enc.hl7"
_REF_NOTE = "reference-range note under the NM result of the same OBX set id"

# (file, record_id) -> (value as sent, why it is not a numeric result)
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("hapi-hl7v2/MessageValidatorTest_L90_ihe_pcd.hl7", "MSGID1234|CD12345|7|67975|R|7"):
        ("20091028123702", "a DTM timestamp; MDC code 67975 maps to no analyte"),
    ("hapi-hl7v2/messages_txt_v22_radiology.hl7", "1994050216163360|0000000566||FIND||1"):
        ("This is a test on 05/02/94.", "radiology narrative"),
    ("hl7v2-fhir-converter/SegmentUtilTest_L219_two_obr.hl7", "MSGID000005|98|2|TS-F-01-002|F|4"):
        ("ECHOCARDIOGRAPHIC REPORT Group 2", "report title"),
    **{
        (NBH, f"52780002432|W442|{n}|{code}|Z|{2 * n}"): (f"(Ref Range: {d} {u})", _REF_NOTE)
        for n, code, d, u in (
            (1, "WBC", 4, "k/uL"), (2, "RBC", 4, "M/uL"), (3, "HGB", 1, "g/dL"), (4, "HCT", 3, "%"),
            (5, "MCV", 8, "fl"), (6, "MCH", 2, "pg"), (7, "MCHC", 3, "g/dL"), (8, "RDW", 1, "%"),
            (9, "PLTC", 1, "k/uL"), (10, "MPV", 6, "fL"),
        )
    },
    ("nHapi/PipeParserV26Tests_L129_ihe_pcd_dtm.hl7",
     "20160628142621000001|dfac748c-213c-e611-80c5-000c2996266c|1|721025|P|1"):
        ("20160627041809+0000", "a DTM timestamp; MDC code 721025 maps to no analyte"),
    ("python-hl7/samples_py_sample_hl7.hl7", "CNTRL-3456|1045813|2|1553-5|F|2"):
        ("^182", "OBX-2 FN (a name type) holding an SN value; glucose is no trial analyte"),
}  # fmt: skip


def _text_rows() -> dict[tuple[str, str], dict[str, object]]:
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for path in sorted(ROOT.rglob("*.hl7")):
        frame = parse_hl7_file(path, ROOT).tables.get("observations")
        if frame is None:
            continue
        for row in frame.iter_rows(named=True):
            text = row["value_text"]
            if row["value_type"] == "string" and text and re.search(r"\d", text):
                rows[(str(path.relative_to(ROOT)), row["record_id"])] = row
    return rows


def _mapped_local_codes() -> set[str]:
    with (SEEDS / "local_lab_codes.csv").open() as f:
        return {r["local_code"].upper() for r in csv.DictReader(f)}


def test_every_text_typed_obx_with_a_digit_is_listed():
    assert set(_text_rows()) == set(EXPECTED)


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda k: f"{Path(k[0]).stem}:{k[1][-14:]}")
def test_text_value_lands_as_sent_and_is_not_taken_for_a_number(key):
    row = _text_rows()[key]
    sent, _why = EXPECTED[key]
    assert row["value_text"] == sent
    assert row["value_numeric"] is None
    if (row["local_code"] or "").upper() in _mapped_local_codes() or row["loinc"]:
        # a code the seeds could map: the text must not read as a number
        assert NUMBER.match(sent) is None or row["loinc"] == "1553-5", sent
