"""``trialscreen bench`` (see :mod:`trialscreen.bench.measure`)."""

from trialscreen.bench.measure import (
    FEEDS,
    SCREENING_DATE,
    TRIALS,
    Table,
    _print,
    bench_scale,
    bench_size,
    machine,
    markdown,
    measure_latest_query,
    measure_parsing,
    population,
    ratio_lines,
    run_bench,
    tables,
)

__all__ = [
    "FEEDS",
    "SCREENING_DATE",
    "TRIALS",
    "Table",
    "_print",
    "bench_scale",
    "bench_size",
    "machine",
    "markdown",
    "measure_latest_query",
    "measure_parsing",
    "population",
    "ratio_lines",
    "run_bench",
    "tables",
]
