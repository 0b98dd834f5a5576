"""Unmapped-code accounting on a whole drop (issue 10): a generated drop whose lab feeds carry
results under codes no seed maps (synth.labshapes.UNMAPPED) is ingested with every record
accounted for (audit.feed_counts: records_in = loaded + duplicates + quarantined, per feed), and
marts.dq_unmapped_codes lists exactly those codes per feed with their counts."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from tests.e2e.first_night import FirstNight
from trialscreen.synth.labshapes import UNMAPPED
from trialscreen.synth.population import build_patient
from trialscreen.warehouse import Warehouse

pytestmark = pytest.mark.slow  # the whole pipeline on a generated drop (the shared night)

SCREENING_DATE = date(2026, 11, 20)
SEED, PATIENTS = 41, 40  # the shared first night's drop
UNMAPPED_LOINCS = {code for code, *_ in UNMAPPED}
UNMAPPED_LOCALS = {local for *_, local in UNMAPPED if local}


def _generated() -> tuple[Counter[str], dict[str, set[str]]]:
    """Unmapped results per feed, and the codes each feed may name them by (a result with a
    local code is named by it, or by its LOINC when the HL7 OBX-3 carries both)."""
    per_feed: Counter[str] = Counter()
    codes: dict[str, set[str]] = {}
    for i in range(PATIENTS):
        p = build_patient(SEED, i, SCREENING_DATE)
        if p.test_patient:
            continue  # a test patient's results are loaded too: count them all the same
        for o in p.obs:
            if o.bad is None and o.loinc in UNMAPPED_LOINCS:
                per_feed[p.lab_feed] += 1
                codes.setdefault(p.lab_feed, set()).add(o.loinc)
                if o.local_code:
                    codes[p.lab_feed].add(o.local_code)
    return per_feed, codes


def test_unmapped_codes_are_counted_and_every_record_is_accounted_for(
    tmp_path: Path, first_night: FirstNight
) -> None:
    """On the suite's shared first night (tests/e2e/first_night.py): its generated drop
    carries unmapped codes in all three feeds."""
    assert (first_night.patients, first_night.seed) == (PATIENTS, SEED)
    assert first_night.screening_date == SCREENING_DATE
    result = first_night.result
    assert result.published, result.message
    first_night.copy_to(tmp_path / "wh.duckdb")
    with Warehouse.connect(tmp_path / "wh.duckdb") as wh:
        counts = wh.query_frame(
            "select feed, records_in, loaded, duplicates_skipped, quarantined "
            f"from audit.feed_counts where run_id = '{result.run_id}'"
        )
        unmapped = wh.query_frame(
            "select feed, code_system, code, observation_count from marts.dq_unmapped_codes"
        )
    assert set(counts.get_column("feed")) >= {"fhir", "hl7", "csv"}
    for row in counts.iter_rows(named=True):
        assert row["records_in"] == (
            row["loaded"] + row["duplicates_skipped"] + row["quarantined"]
        ), row
    assert all(c.balanced for c in result.feed_counts.values())

    per_feed, codes = _generated()
    assert len(per_feed) >= 2, "the drop should carry unmapped codes in several feeds"
    got: Counter[str] = Counter()
    for row in unmapped.iter_rows(named=True):
        assert row["code"] in codes.get(row["feed"], set()), row  # nothing else is unmapped
        assert row["code_system"] == ("local" if row["code"] in UNMAPPED_LOCALS else "loinc")
        got[row["feed"]] += row["observation_count"]
    assert got == per_feed
