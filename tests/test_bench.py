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
    slowest = list(dbt["slowest_nodes"].values())  # what dominates the build, longest first
    assert len(slowest) == 10 and slowest == sorted(slowest, reverse=True) and slowest[0] > 0
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


def test_the_scale_steps_parser_comparison_runs_on_a_sample_of_the_files(
    bench_run: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a million patients the peers cannot hold the feeds in memory: the scale step
    compares the parsers on the first files of each feed, up to a budget (a gzip counted by
    the size it unpacks to)."""
    import gzip

    from rich.console import Console

    from trialscreen.bench import _print
    from trialscreen.bench.measure import measure_sample, sample_drop

    drop = bench_run / "pop_50_1"
    fhir = sorted((drop / "fhir").glob("Observation*.ndjson*"))
    hl7 = sorted(p for p in (drop / "hl7").iterdir() if p.suffix in (".hl7", ".txt"))
    assert fhir and hl7
    packed = bench_run / "packed"
    (packed / "fhir").mkdir(parents=True)
    (packed / "hl7").mkdir()
    big = gzip.compress(fhir[0].read_bytes() * 20)
    (packed / "fhir" / "Observation.1.ndjson.gz").write_bytes(big)
    (packed / "fhir" / "Observation.2.ndjson").write_bytes(fhir[0].read_bytes())
    for name in ("oru_1.hl7", "oru_2.txt", "notes.csv"):
        (packed / "hl7" / name).write_bytes(hl7[0].read_bytes())
    one = hl7[0].stat().st_size
    # a budget the gzip passes once unpacked (not on disk) and one HL7 file reaches
    sample = sample_drop(bench_run, packed, budget=min(fhir[0].stat().st_size * 2, one))
    assert [p.name for p in sorted((sample / "fhir").iterdir())] == ["Observation.1.ndjson.gz"]
    assert [p.name for p in sorted((sample / "hl7").iterdir())] == ["oru_1.hl7"]

    # Observation files over the file limit (as at 1M): the parser still reads them whole
    # beside the peers, not a refusal of each
    monkeypatch.setenv("TRIALSCREEN_MAX_FILE_BYTES", str(fhir[0].stat().st_size // 2))
    measured = measure_sample(bench_run, drop)
    parse, e2e = measured["parse"], measured["end_to_end"]
    assert parse["fhir"]["trialscreen"]["records"] >= parse["fhir"]["orjson_loop"]["records"] > 1
    assert _positive(parse["fhir"]["polars_schema"]["ratio"])
    assert _positive(parse["hl7"]["string_split"]["ratio"])
    assert e2e["fhir"]["records_in"] > 0 and _positive(e2e["fhir"]["ratio"])
    assert _positive(e2e["hl7"]["ratio"])
    results = json.loads((bench_run / "results.json").read_text())
    results["scale"] = {"50": {"nights": [], "sample": measured}}
    _print(results, Console(width=160))
    printed = capsys.readouterr().out
    assert "[50 patients, sampled files] fhir ingest end to end" in printed
    assert "50 (sample)" in printed
