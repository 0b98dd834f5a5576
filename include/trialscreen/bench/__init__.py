"""``trialscreen bench``: one size and the whole run (``bench_size``, ``run_bench``) in
:mod:`trialscreen.bench.measure`, which re-exports its steps: populations and drops
(:mod:`~trialscreen.bench.populations`), the ingest and dbt child processes
(:mod:`~trialscreen.bench.children`), the parsing peers (:mod:`~trialscreen.bench.peers`),
the reference query (:mod:`~trialscreen.bench.query`), ingest end to end against the peers
(:mod:`~trialscreen.bench.end_to_end`); the scale step's two nights in
:mod:`trialscreen.bench.nights`, tables in :mod:`trialscreen.bench.render`."""

from trialscreen.bench.measure import (
    SCREENING_DATE,
    TRIALS,
    bench_size,
    increment_drop,
    measure_latest_query,
    measure_parsing,
    population,
    run_bench,
)
from trialscreen.bench.nights import bench_scale
from trialscreen.bench.render import Table, _print, machine, markdown, ratio_lines, tables
from trialscreen.schema import FEEDS

__all__ = [
    "FEEDS",
    "SCREENING_DATE",
    "TRIALS",
    "Table",
    "_print",
    "bench_scale",
    "bench_size",
    "increment_drop",
    "machine",
    "markdown",
    "measure_latest_query",
    "measure_parsing",
    "population",
    "ratio_lines",
    "run_bench",
    "tables",
]
