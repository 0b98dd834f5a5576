"""The report's feed-health dashboard (issue 13 item 2), on the hand-written warehouse of
test_validate plus a known three-night history: the hl7 feed delivers 12, 13, then nothing.

Known answers: three dated nights per feed; hl7 on the last night is flagged ``no_records``
(trailing median 12.5); fhir (40, 50, 60) is not flagged; freshness ignores the observation
dated after the screening date and counts it as future-dated; the unit no seed converts is
named with its count; accrual per night comes from marts.screening_candidate_history.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest
from test_validate import SCREENING_DATE, build_clean

from trialscreen import ingest
from trialscreen.warehouse import Warehouse

RUN_ID = "run-health"
FUTURE = datetime(2026, 11, 10, 9, 0)  # 8 days after the screening date (2026-11-02)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = build_clean(tmp_path_factory.mktemp("wh") / "wh.duckdb", RUN_ID)
    with Warehouse.connect(url) as wh:
        # tonight hl7 delivers nothing (its row says records_in 0)
        wh.execute(
            f"update {ingest.FEED_COUNTS_TABLE} set records_in = 0, loaded = 0, "
            f"duplicates_skipped = 0, quarantined = 0 where run_id = '{RUN_ID}' and feed = 'hl7'"
        )
        # a future-dated fhir observation (a sender's clock or a test system)
        wh.execute(
            "insert into raw.fhir_observations (source_file, source_position, record_id, "
            "record_hash, patient_ref, loinc, value_numeric, value_unit, status, effective_at, "
            f"run_id) values ('f', 9, 'obs-future', 'h', 'pat-1', '751-8', 2.0, '10*9/L', "
            f"'final', cast('{FUTURE}' as timestamp), '{RUN_ID}')"
        )
    return url


@pytest.fixture(scope="module")
def data(warehouse):
    from trialscreen.report import collect

    with Warehouse.connect(warehouse) as wh:
        return collect(wh, RUN_ID)


@pytest.fixture(scope="module")
def page(warehouse, tmp_path_factory) -> Path:
    from trialscreen.report import write_report

    reports = tmp_path_factory.mktemp("reports")
    (reports / "dbt_docs").mkdir()
    (reports / "dbt_docs" / "index.html").write_text("<html></html>")
    with pytest.MonkeyPatch.context() as mp:  # the default zone, whatever ran before
        mp.delenv("TRIALSCREEN_TIMEZONE", raising=False)
        return write_report(warehouse, reports, RUN_ID)


def test_every_night_is_dated_and_an_empty_night_is_a_zero_row(data):
    nights = data.nights
    assert nights is not None
    expected = [date(2026, 10, 31), date(2026, 11, 1), SCREENING_DATE]
    for feed in ("fhir", "hl7", "csv"):
        rows = nights.filter(pl.col("feed") == feed).sort("night")
        assert rows.get_column("night").to_list() == expected, feed
    hl7 = nights.filter(pl.col("feed") == "hl7").sort("night")
    assert hl7.get_column("records_in").to_list() == [12, 13, 0]


def test_a_feed_silent_on_a_night_it_used_to_deliver_is_flagged(data):
    flagged = data.nights.filter(pl.col("flag").is_not_null()).to_dicts()
    assert [(r["feed"], r["night"], r["flag"], r["trailing_median"]) for r in flagged] == [
        ("hl7", SCREENING_DATE, "no_records", 12.5)
    ]
    # csv never delivered: zero every night, never flagged (nothing to fall from)
    csv = data.nights.filter(pl.col("feed") == "csv")
    assert csv.get_column("records_in").sum() == 0 and csv.get_column("flag").null_count() == 3


def test_a_low_night_is_flagged_low_volume():
    from trialscreen.report import feed_nights

    volumes = pl.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "feed": ["fhir"] * 4,
            "records_in": [100, 90, 110, 30],
            "loaded": [100, 90, 110, 30],
            "duplicates_skipped": [0] * 4,
            "quarantined": [0] * 4,
            "finished_at": [datetime(2026, 11, d, 2, 0) for d in (1, 2, 3, 4)],
        }
    )

    class NoRuns:  # only audit.feed_counts: nights are the local dates the ingests finished
        def table_exists(self, table: str) -> bool:
            return False

    nights = feed_nights(NoRuns(), volumes, None, "America/New_York")  # type: ignore[arg-type]
    # 02:00 UTC is the evening before in New York
    assert nights.get_column("night").to_list() == [date(2026, 10, d) for d in (31,)] + [
        date(2026, 11, d) for d in (1, 2, 3)
    ]
    assert nights.get_column("flag").to_list() == [None, None, None, "low_volume"]


def test_freshness_ignores_future_dated_records(data):
    fresh = {r["feed"]: r for r in data.freshness.to_dicts()}
    # fhir: the latest observation on or before 2026-11-02 is 2026-11-01, not 2026-11-10
    assert fresh["fhir"]["latest_record_on"] == date(2026, 11, 1)
    assert fresh["fhir"]["days_before_screening_date"] == 1
    assert fresh["fhir"]["future_dated"] == 1
    assert fresh["hl7"]["latest_record_on"] == date(2026, 9, 23)
    assert fresh["hl7"]["future_dated"] == 0
    assert "csv" not in fresh or fresh["csv"]["latest_record_on"] is None


def test_unmapped_units_are_named_with_counts(data):
    units = data.unmapped_units.to_dicts()
    assert [(r["analyte"], r["unit_as_sent"], r["results"]) for r in units] == [
        ("anc", "furlongs", 1)
    ]


def test_accrual_per_night_from_the_candidate_history(data):
    accrual = data.accrual.filter(pl.col("cohort_id") == "asps").sort("night").to_dicts()
    assert [r["night"] for r in accrual] == [date(2026, 10, 31), SCREENING_DATE]
    # the same four candidates both nights: nobody new, nobody lost; the first night has no
    # night before it
    assert [(r["candidates"], r["newly_eligible"], r["no_longer_eligible"]) for r in accrual] == [
        (4, None, None),
        (4, 0, 0),
    ]


def test_the_page_names_the_trial_and_links_the_dbt_docs(page):
    html = page.read_text()
    assert "Atezolizumab with selinexor" in html and "NCT05333458" in html
    assert "Alveolar soft part sarcoma" in html
    funnel = re.search(r'<svg id="funnel-axiom-asps".*?</svg>', html).group(0)
    assert ">ANC<" in funnel and ">anc<" not in funnel
    assert "started 2026-11-01 01:00 UTC (UTC)" in html  # TRIALSCREEN_TIMEZONE unset
    index = (page.parent.parent / "index.html").read_text()
    assert 'id="dbt-docs-link" href="dbt_docs/index.html"' in index


def test_run_times_are_shown_in_the_hospital_time_zone():
    from trialscreen.report import ReportData, render

    page = render(
        ReportData(
            run_id="r",
            run_row={"started_at": datetime(2026, 11, 1, 1, 0)},  # audit rows are UTC
            timezone="Europe/Paris",
        )
    )
    assert "started 2026-11-01 02:00 CET (Europe/Paris)" in page


@pytest.mark.browser
def test_the_dashboard_flags_the_empty_night_in_the_browser(page, chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=["--no-sandbox"])
        context = browser.new_context(offline=True)
        tab = context.new_page()
        tab.goto(page.as_uri(), wait_until="load")
        hl7 = tab.locator("#feed-nights-hl7 g.night")
        nights = [hl7.nth(i).get_attribute("data-night") for i in range(hl7.count())]
        flagged = tab.locator("#feed-nights-hl7 g.night.flagged")
        flagged_night = flagged.first.get_attribute("data-night") if flagged.count() else None
        fhir_flagged = tab.locator("#feed-nights-fhir g.night.flagged").count()
        flag_items = tab.locator("#feed-flags li").all_inner_texts()
        zero_label = tab.locator("#feed-nights-hl7 g.night.flagged text.zero").text_content()
        zero_color = tab.eval_on_selector(
            "#feed-nights-hl7 g.night.flagged text.zero", "el => getComputedStyle(el).fill"
        )
        browser.close()
    assert nights == ["2026-10-31", "2026-11-01", "2026-11-02"]
    assert flagged_night == "2026-11-02" and fhir_flagged == 0
    assert flag_items == ["hl7, 2026-11-02: no records (trailing median 12.5)"]
    assert zero_label == "0" and zero_color == "rgb(198, 40, 40)"
