"""The report's unmapped-code section (issue 10 item 2): the top observation codes no seed maps,
from marts.dq_unmapped_codes, as codes and counts only, escaped like every text from data."""

from __future__ import annotations

import polars as pl

from trialscreen.report import ReportData, render


def test_top_unmapped_codes_are_listed_with_counts():
    frame = pl.DataFrame(
        {
            "feed": ["hl7", "csv"],
            "code_system": ["loinc", "local"],
            "code": ["12345-6", "<b>ZZ</b>"],
            "results": [7, 2],
        }
    )
    html = render(ReportData(run_id="run-1", unmapped_codes=frame))
    assert 'id="unmapped-codes"' in html and 'id="unmapped-codes-table"' in html
    assert "12345-6" in html and ">7<" in html
    assert "<b>ZZ</b>" not in html and "&lt;b&gt;ZZ&lt;/b&gt;" in html


def test_no_unmapped_codes_says_so():
    html = render(ReportData(run_id="run-1", unmapped_codes=pl.DataFrame(
        schema={"feed": pl.String, "code_system": pl.String, "code": pl.String,
                "results": pl.Int64})))  # fmt: skip
    assert "Every observation code is mapped or ignored" in html
    assert "marts.dq_unmapped_codes not built" in render(ReportData(run_id="run-1"))
