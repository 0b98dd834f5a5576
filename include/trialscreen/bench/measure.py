"""``trialscreen bench``: the benchmark on generated populations
(docs/specification.md#performance-expectations).

For every size a population is generated once and cached (``<out>/pop_<n>_<seed>``, reused
when its manifest matches), then measured side by side in one run:

1. **Ingestion per feed** on DuckDB: each feed is landed by ``pipeline.ingest_feed`` in its
   own spawned process, so the process's peak RSS (``VmHWM``, its own high-water mark) is
   the peak of that feed's ingest alone, its parse workers' peak beside it; records/s comes
   from ``FeedCounts.seconds``.
2. **Parsing against peers**, on the same files: the FHIR Observation NDJSON with
   ``feeds.fhir`` vs a plain orjson loop that pulls the same few fields into lists (and
   polars ``read_ndjson`` with an explicit schema); the HL7 files with ``feeds.hl7v2`` vs
   splitting segments and fields with ``str.split`` (the lower bound). Best of
   ``repeat`` runs, in this process.
   Then **ingest end to end** against the same peers: the Observation NDJSON landed on a
   fresh DuckDB file vs polars, the HL7 feed's ingest vs ``str.split``
   (``measure_end_to_end``).
3. **The SQL layer**: ``dbt seed`` + ``dbt build`` (write-audit-publish off) in a spawned
   process, with dbt's own per-node timings; then the reference query "latest result per
   patient and analyte" over ``intermediate.int_observations`` as one DuckDB query vs pandas
   (``groupby``/``idxmax``) vs polars on the same frame.
4. Optionally (``postgres=URL``) the same ingest + dbt build on PostgreSQL, in a database of
   its own (``trialscreen_bench``, dropped and recreated on that server).

Results go to ``<out>/results.json`` and ``<out>/results.md`` (docs-ready tables) and are
printed as rich tables plus one line per ratio. Nothing here asserts a time: numbers on a
shared 2-core machine move by tens of percent between runs; compare ratios measured in the
same run, not absolute times across runs.

This module runs a size (``bench_size``) and the whole bench (``run_bench``); the steps
live beside it and are re-exported here: populations and drops in
:mod:`trialscreen.bench.populations`, the child processes of ingest and dbt in
:mod:`trialscreen.bench.children`, the parsing peers in :mod:`trialscreen.bench.peers`,
the reference query in :mod:`trialscreen.bench.query`, the end-to-end comparisons in
:mod:`trialscreen.bench.end_to_end`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trialscreen.bench.children import (
    _dbt_child,
    _guarded,
    _in_child,
    _ingest,
    _ingest_child,
    _rss_mb,
)
from trialscreen.bench.end_to_end import (
    measure_end_to_end,
    measure_sample,
)
from trialscreen.bench.peers import (
    _best,
    _ratio,
    _read,
    _throughput,
    _trialscreen_parse,
    json_lines_only,
    measure_parsing,
    orjson_observation_loop,
    polars_observation_scan,
    split_hl7,
)
from trialscreen.bench.populations import (
    MB,
    PG_BENCH_DB,
    SAMPLE_BYTES,
    SCREENING_DATE,
    TRIALS,
    _feed_bytes,
    _fresh_duckdb,
    _fresh_postgres,
    _observation_drop,
    _unpacked_size,
    increment_drop,
    population,
    sample_drop,
)
from trialscreen.bench.query import (
    FRAME_SQL,
    LATEST_SQL,
    PG_LATEST_SQL,
    _pg_latest_seconds,
    measure_latest_query,
)
from trialscreen.bench.render import _print, _progress, machine, markdown
from trialscreen.schema import FEEDS

# every name the bench had here before the split (nights, scripts/bench_ingest.py, tests)
__all__ = [
    "FRAME_SQL",
    "LATEST_SQL",
    "MB",
    "PG_BENCH_DB",
    "PG_LATEST_SQL",
    "SAMPLE_BYTES",
    "SCREENING_DATE",
    "TRIALS",
    "_best",
    "_dbt_child",
    "_feed_bytes",
    "_fresh_duckdb",
    "_fresh_postgres",
    "_guarded",
    "_in_child",
    "_ingest",
    "_ingest_child",
    "_observation_drop",
    "_pg_latest_seconds",
    "_ratio",
    "_read",
    "_rss_mb",
    "_throughput",
    "_trialscreen_parse",
    "_unpacked_size",
    "bench_size",
    "increment_drop",
    "json_lines_only",
    "measure_end_to_end",
    "measure_latest_query",
    "measure_parsing",
    "measure_sample",
    "orjson_observation_loop",
    "polars_observation_scan",
    "population",
    "run_bench",
    "sample_drop",
    "split_hl7",
]


def bench_size(
    out: Path,
    patients: int,
    seed: int,
    *,
    postgres: str | None = None,
    repeat: int = 3,
    dbt_select: str | None = None,
    tick: Callable[[str], None] = lambda _step: None,
) -> dict[str, Any]:
    from trialscreen import pseudonym
    from trialscreen.pipeline import start_run

    tick("population")
    started = time.perf_counter()
    drop, generated, screening_date = population(out, patients, seed)
    result: dict[str, Any] = {
        "patients": patients,
        "seed": seed,
        "screening_date": screening_date.isoformat(),
        "population": {
            "dir": str(drop),
            "generated": generated,
            "seconds": round(time.perf_counter() - started, 2),
            "mb_per_feed": {f: round(_feed_bytes(drop, f) / MB, 2) for f in FEEDS},
        },
    }
    tick("parse peers")
    result["parse"] = measure_parsing(drop, repeat)

    key = os.environ.get(pseudonym.KEY_ENV) or pseudonym.new_key()
    engines: dict[str, str] = {"duckdb": _fresh_duckdb(out / f"bench_{patients}_{seed}.duckdb")}
    if postgres:
        engines["postgres"] = _fresh_postgres(postgres)
    result["engines"] = {}
    os.environ.setdefault(pseudonym.KEY_ENV, key)
    for engine, warehouse in engines.items():
        run_id = start_run(warehouse, screening_date, TRIALS)  # ingest refuses a run not started
        measured: dict[str, Any] = {"ingest": _ingest(warehouse, drop, run_id, tick)}
        tick(f"dbt build ({engine})")
        measured["dbt"] = _in_child(
            _dbt_child, warehouse, screening_date.isoformat(), run_id, key, dbt_select
        )
        result["engines"][engine] = measured

    tick("ingest end to end vs peers")
    result["end_to_end"] = measure_end_to_end(
        out, drop, result["parse"], result["engines"]["duckdb"]["ingest"].get("hl7")
    )
    tick("latest-per-analyte query")
    query = measure_latest_query(Path(engines["duckdb"]), repeat)
    if postgres:
        query["postgres_seconds"] = _pg_latest_seconds(engines["postgres"], repeat)
    result["latest_query"] = query
    result["ratios"] = _ratios(result)
    return result


def _ratios(r: dict[str, Any]) -> dict[str, float | None]:
    q = r["latest_query"]
    duck = r["engines"]["duckdb"]
    out: dict[str, float | None] = {}
    for fmt, peer in (("fhir", "orjson_loop"), ("fhir", "polars_schema"), ("hl7", "string_split")):
        out[f"{fmt}_parse_vs_{peer}"] = r["parse"].get(fmt, {}).get(peer, {}).get("ratio")
    e2e = r.get("end_to_end", {})
    out["fhir_ingest_vs_polars_schema"] = e2e.get("fhir", {}).get("ratio")
    out["hl7_ingest_vs_string_split"] = e2e.get("hl7", {}).get("ratio")

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a is not None and b else None

    out["pandas_vs_duckdb_query"] = div(q["pandas_seconds"], q["duckdb_seconds"])
    out["polars_vs_duckdb_query"] = div(q["polars_seconds"], q["duckdb_seconds"])
    out["dbt_build_vs_query"] = div(duck["dbt"]["total_seconds"], q["duckdb_seconds"])
    out["dbt_models_vs_query"] = div(duck["dbt"]["node_seconds"].get("model"), q["duckdb_seconds"])
    if "postgres" in r["engines"]:
        pg = r["engines"]["postgres"]
        for feed in FEEDS:
            out[f"postgres_vs_duckdb_ingest_{feed}"] = div(
                pg["ingest"][feed]["seconds"], duck["ingest"][feed]["seconds"]
            )
        out["postgres_vs_duckdb_dbt"] = div(
            pg["dbt"]["total_seconds"], duck["dbt"]["total_seconds"]
        )
    return out


def run_bench(
    sizes: Sequence[int],
    out: Path,
    *,
    seed: int = 1,
    postgres: str | None = None,
    repeat: int = 3,
    dbt_select: str | None = None,
    scale: Sequence[int] = (),
) -> int:
    """Benchmark every size; print tables and ratios; write results.json and results.md.

    ``dbt_select`` narrows dbt to a selection (the smoke test builds ``+int_observations``
    only); the default builds the whole project as the nightly run does.

    ``scale`` sizes run the scale step (``bench.nights.bench_scale``) after the sizes: two
    nights of the nightly job on the cached population (the first full load, then the next
    day's increment), wall time and peak RSS per step. A night that does not publish fails
    the bench (exit status 1) with its reason, which names the failed model: the regression
    this step exists to catch (DuckDB's dict-surviving join at 300,000 patients,
    docs/decisions.md).
    """
    from rich.console import Console

    from trialscreen.bench.nights import bench_scale

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 160)
    results: dict[str, Any] = {
        "command": "trialscreen bench"
        + (" --sizes " + " ".join(map(str, sizes)) if sizes else "")
        + (" --scale " + " ".join(map(str, scale)) if scale else "")
        + f" --seed {seed} --out {out}",
        "machine": machine(),
        "settings": {"seed": seed, "repeat": repeat, "dbt_select": dbt_select},
        "sizes": {},
        "scale": {},
    }
    steps_per_size = 5 + len(FEEDS) + (len(FEEDS) + 1 if postgres else 0)
    steps = steps_per_size * len(sizes) + 4 * len(scale)
    with _progress(steps, console) as tick:
        for n in sizes:
            results["sizes"][str(n)] = bench_size(
                out, n, seed, postgres=postgres, repeat=repeat, dbt_select=dbt_select, tick=tick
            )
            (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        for n in scale:
            results["scale"][str(n)] = bench_scale(out, n, seed, tick=tick)
            (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
    _print(results, console)
    console.print(f"results: {out / 'results.json'}, {out / 'results.md'}", highlight=False)
    failed = {n: s for n, s in results["scale"].items() if not s["ok"]}
    for n, s in failed.items():
        reasons = "; ".join(
            f"night {i}: {night['message']}"
            for i, night in enumerate(s["nights"], 1)
            if night["status"] != "published"
        )
        console.print(
            f"[bold red]SCALE RUN FAILED at {int(n):,} patients:[/] {reasons}", highlight=False
        )
    return 1 if failed else 0
