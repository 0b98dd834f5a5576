"""Ingest end to end against the bare peers on the same files (``measure_end_to_end``),
and the scale step's parser and ingest ratios on a sample of a population too large to
hold (``measure_sample``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trialscreen import limits
from trialscreen.bench.children import _in_child, _ingest_child
from trialscreen.bench.peers import _ratio, measure_parsing
from trialscreen.bench.populations import (
    SCREENING_DATE,
    TRIALS,
    _fresh_duckdb,
    _observation_drop,
    _unpacked_size,
    sample_drop,
)


def measure_sample(out: Path, drop: Path) -> dict[str, Any]:
    """The parser ratios and the ingest-end-to-end ratios of :func:`bench_size` on
    :func:`sample_drop` of a population too large to hold: one repeat."""
    from trialscreen.pipeline import start_run

    sample = sample_drop(out, drop)
    # the peers read each file whole, so the parser does too: a file over the file limit
    # (a 1M population's Observation files unpack to ~365 MB) would be refused unread, and
    # the ratio would compare a refusal with a parse. The ingest below keeps the limits.
    largest = max(_unpacked_size(p) for p in sample.rglob("*") if p.is_file())
    saved = os.environ.get(limits.MAX_FILE_BYTES_ENV)
    os.environ[limits.MAX_FILE_BYTES_ENV] = str(max(largest + 1, limits.current().max_file_bytes))
    try:
        parse = measure_parsing(sample, repeat=1)
    finally:
        if saved is None:
            del os.environ[limits.MAX_FILE_BYTES_ENV]
        else:
            os.environ[limits.MAX_FILE_BYTES_ENV] = saved
    warehouse = _fresh_duckdb(out / f"{sample.name}.duckdb")
    run_id = start_run(warehouse, SCREENING_DATE, TRIALS)
    hl7 = _in_child(_ingest_child, warehouse, str(sample), "hl7", run_id)["counts"]
    return {
        "dir": str(sample),
        "parse": parse,
        "end_to_end": measure_end_to_end(out, sample, parse, {"seconds": float(hl7["seconds"])}),
    }


def measure_end_to_end(
    out: Path, drop: Path, parse: dict[str, Any], hl7_ingest: dict[str, Any] | None
) -> dict[str, Any]:
    """Ingest end to end (read, parse, hash, dedup, write; ``FeedCounts.seconds``) against
    the bare peers on the same files: the Observation NDJSON landed on a fresh DuckDB file
    vs polars ``read_ndjson`` with a schema; the HL7 feed's ingest vs ``str.split``."""
    from trialscreen.pipeline import start_run

    result: dict[str, Any] = {}
    polars = parse.get("fhir", {}).get("polars_schema", {})
    if polars.get("seconds"):
        subset = _observation_drop(out, drop)
        warehouse = _fresh_duckdb(out / f"{drop.name}_observations.duckdb")
        run_id = start_run(warehouse, SCREENING_DATE, TRIALS)
        child = _in_child(_ingest_child, warehouse, str(subset), "fhir", run_id)
        seconds = float(child["counts"]["seconds"])
        result["fhir"] = {
            "files": child["counts"]["files_new"],
            "records_in": child["counts"]["records_in"],
            "ingest_seconds": seconds,
            "polars_schema_seconds": polars["seconds"],
            "ratio": _ratio(seconds, polars["seconds"]),
            "peak_rss_mb": child["peak_rss_mb"],
            "worker_peak_rss_mb": child["worker_peak_rss_mb"],
        }
    split = parse.get("hl7", {}).get("string_split", {})
    if hl7_ingest and split.get("seconds") and hl7_ingest.get("seconds"):
        result["hl7"] = {
            "ingest_seconds": hl7_ingest["seconds"],
            "string_split_seconds": split["seconds"],
            "ratio": _ratio(hl7_ingest["seconds"], split["seconds"]),
            "parse_ratio": split.get("ratio"),
        }
    return result
