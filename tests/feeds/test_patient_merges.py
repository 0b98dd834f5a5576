"""Patient merges as the feeds send them (docs/decisions.md "Patient merges and test
patients"): HL7 ADT A40/A34/A18 (MRG-1 retired -> PID-3 surviving) and the CSV extract's
patient_merges.csv land in raw.<feed>_patient_merges; records_in = rows + quarantined."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from trialscreen import schema
from trialscreen.feeds.csv import parse_csv_file
from trialscreen.feeds.hl7v2 import parse_hl7_bytes

ADT = (
    "MSH|^~\\&|ADM|H|||20261020120000+0200||ADT^A40^ADT_A39|M40|P|2.5\r"
    "EVN|A40|20261020113000\r"
    "PID|||B123^^^H^MR~99^^^SSA^SS||DOE^JANE\r"
    "MRG|A999^^^H^MR\r"
    "PID|||B124^^^H^MR\r"
    "MRG|A998^^^H^MR\r"
    "MSH|^~\\&|ADM|H|||20261021120000||ADT^A18|M18|P|2.5\r"
    "PID|||C1\r"
    "MRG|\r"
    "MSH|^~\\&|ADM|H|||20261021120000||ADT^A34|M34|P|2.5\r"
    "PID|||C1\r"
    "MRG|C1\r"
    "MSH|^~\\&|ADM|H|||20261022120000||ADT^A01|M01|P|2.5\r"
    "PID|||C1\r"
)


def test_hl7_merge_messages_land_one_row_per_mrg() -> None:
    parsed = parse_hl7_bytes(ADT.encode(), "adt.hl7")
    merges = parsed.tables["patient_merges"]
    assert merges.schema == pl.Schema(schema.RAW_COLUMNS["patient_merges"])
    assert merges.select("mrn", "prior_mrn", "event_type", "merged_at").rows() == [
        ("B123", "A999", "A40", datetime(2026, 10, 20, 11, 30)),
        ("B124", "A998", "A40", datetime(2026, 10, 20, 11, 30)),
    ]
    assert merges.get_column("record_id").to_list() == ["M40|MRG|1", "M40|MRG|2"]
    errors = parsed.quarantined.get_column("error").to_list()
    assert errors == [
        "MRG #1 has no prior patient identifier in MRG-1",
        "MRG #1: MRG-1 and PID-3 name the same identifier",
    ]
    assert not any("C1" in e for e in errors)  # no identifier in an error text
    assert parsed.ignored == {"ADT^A01": 1}
    assert parsed.records_in == merges.height + parsed.quarantined.height
    assert parsed.tables["patients"].height == 0  # merge PIDs are not patient records


def test_csv_patient_merges(tmp_path: Path) -> None:
    path = tmp_path / "patient_merges.csv"
    path.write_text(
        "retired_mrn,surviving_mrn,merged_at\n"
        "A1,B1,2026-10-01\n"
        "B1,C1,2026-10-02T10:00:00+02:00\n"
        "X,X,\n"
        ",Y,\n"
    )
    parsed = parse_csv_file(path, tmp_path)
    merges = parsed.tables["patient_merges"]
    assert merges.select("record_id", "mrn", "prior_mrn", "event_type").rows() == [
        ("A1", "B1", "A1", "csv"),
        ("B1", "C1", "B1", "csv"),
    ]
    assert merges.get_column("merged_at_offset_min").to_list() == [None, 120]
    assert parsed.quarantined.get_column("error").to_list() == [
        "retired_mrn and surviving_mrn are the same",
        "missing retired_mrn",
    ]
    assert parsed.records_in == 4
