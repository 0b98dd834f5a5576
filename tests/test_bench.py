"""Smoke test of ``trialscreen bench`` on a tiny population: it runs end to end, writes its
results and prints them. No time is asserted (docs/specification.md#performance-expectations:
measured by the bench
command, not by timed tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trialscreen.bench import run_bench

pytestmark = pytest.mark.slow  # the benchmark: generation, loading and dbt


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and value > 0


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    # dbt limited to int_observations (and int_patients, which its tests refer to) and their
    # parents keeps the smoke test well under a minute
    select = "+int_observations +int_patients"
    assert run_bench(sizes=[50], out=out, repeat=1, dbt_select=select) == 0
    return out


def test_bench_writes_results_with_positive_measurements(bench_run: Path) -> None:
    results = json.loads((bench_run / "results.json").read_text())
    assert set(results) >= {"command", "machine", "settings", "sizes"}
    r = results["sizes"]["50"]
    assert set(r) >= {"population", "parse", "engines", "latest_query", "ratios"}
    assert (bench_run / "pop_50_1" / "expected" / "manifest.json").exists()

    ingest = r["engines"]["duckdb"]["ingest"]
    assert set(ingest) == {"fhir", "hl7", "csv"}
    for feed in ingest.values():
        for key in ("records_in", "seconds", "records_per_s", "mb_per_s", "peak_rss_mb"):
            assert _positive(feed[key]), key

    fhir, hl7 = r["parse"]["fhir"], r["parse"]["hl7"]
    for measured in (fhir["trialscreen"], fhir["orjson_loop"], hl7["trialscreen"]):
        assert _positive(measured["mb_per_s"])
    assert _positive(fhir["orjson_loop"]["ratio"])
    assert _positive(hl7["string_split"]["ratio"])
    e2e = r["end_to_end"]  # ingest end to end (read, parse, hash, dedup, write) vs the peers
    assert e2e["fhir"]["records_in"] > 0 and _positive(e2e["fhir"]["ratio"])
    assert _positive(e2e["hl7"]["ratio"])
    assert _positive(r["ratios"]["fhir_ingest_vs_polars_schema"])

    dbt = r["engines"]["duckdb"]["dbt"]
    for key in ("seed_seconds", "build_seconds", "total_seconds", "peak_rss_mb"):
        assert _positive(dbt[key]), key
    query = r["latest_query"]
    assert query["rows_in"] > 0 and query["rows_agree"]
    for key in ("duckdb_seconds", "pandas_seconds", "polars_seconds"):
        assert _positive(query[key]), key
    assert _positive(r["ratios"]["dbt_build_vs_query"])


def test_bench_prints_tables_and_ratio_lines(
    bench_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the module fixture printed before this test captured: run the printing step again
    from rich.console import Console

    from trialscreen.bench import _print

    results = json.loads((bench_run / "results.json").read_text())
    _print(results, Console(width=160))
    printed = capsys.readouterr().out
    assert "Ingestion per feed" in printed
    assert "fhir parse: trialscreen" in printed and "vs orjson loop" in printed
    assert "hl7 parse: trialscreen" in printed
    assert "fhir ingest end to end" in printed and "hl7 ingest end to end" in printed
    assert "dbt seed+build" in printed
    assert (bench_run / "results.md").read_text().count("|") > 20


def test_bench_reuses_a_cached_population(bench_run: Path) -> None:
    from trialscreen.bench import population

    drop, generated, _ = population(bench_run, 50, 1)
    assert drop == bench_run / "pop_50_1" and not generated
