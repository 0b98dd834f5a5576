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
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import date, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from trialscreen.bench.render import _print, _progress, machine, markdown
from trialscreen.schema import FEEDS

TRIALS = ["axiom"]
# Fixed so that a cached population stays valid from one day to the next.
SCREENING_DATE = date(2026, 11, 24)
PG_BENCH_DB = "trialscreen_bench"
MB = 1_000_000

# --- measurement in a child process ------------------------------------------------------


def _rss_mb() -> float:
    """This process's own peak resident set size so far, in MB.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's memory,
    which starts again at ``exec``. Not ``ru_maxrss``: Linux carries the parent's peak
    across fork+exec into it, so a spawned child would report the bench process's peak
    whenever that was higher (tests/test_gate_memory.py does the same). Elsewhere
    ``ru_maxrss`` (macOS reports bytes)."""
    from trialscreen.ingest import own_peak_rss_mb

    return own_peak_rss_mb()


def _in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh spawned interpreter (one task, then it exits), so the
    peak RSS it reports belongs to that step alone and not to what ran before it."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_guarded, fn, *args).result()


def _guarded(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Not every exception pickles back to the parent (dbt's do not): send its text."""
    try:
        return fn(*args)
    except Exception as exc:
        raise RuntimeError(f"{fn.__name__}: {type(exc).__name__}: {exc}") from None


def _ingest_child(warehouse: str, drop: str, feed: str, run_id: str) -> dict[str, Any]:
    from trialscreen.pipeline import ingest_feed

    baseline = _rss_mb()
    started = time.perf_counter()
    counts = ingest_feed(warehouse, Path(drop), feed, run_id)
    wall = time.perf_counter() - started
    row = counts.as_row()
    row["latest_record_at"] = str(row["latest_record_at"])
    return {
        "counts": row,
        "wall_seconds": round(wall, 3),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _rss_mb(),
        "worker_peak_rss_mb": counts.worker_peak_rss_mb,
    }


def _dbt_child(
    warehouse: str,
    screening_date: str,
    run_id: str,
    key: str,
    select: str | None,
) -> dict[str, Any]:
    from trialscreen import pseudonym
    from trialscreen.pipeline import prepare_build
    from trialscreen.transform import run_dbt

    os.environ.setdefault(pseudonym.KEY_ENV, key)
    baseline = _rss_mb()
    started = time.perf_counter()
    prepare_build(warehouse, TRIALS)
    prepare_s = time.perf_counter() - started
    dbt_vars = {"screening_date": screening_date, "run_id": run_id, "wap": False}
    selection = ["--select", *select.split()] if select else []

    started = time.perf_counter()
    run_dbt("seed", warehouse, args=["--full-refresh", *selection], dbt_vars=dbt_vars)
    seed_s = time.perf_counter() - started
    started = time.perf_counter()
    result = run_dbt("build", warehouse, args=selection, dbt_vars=dbt_vars)
    build_s = time.perf_counter() - started

    per_type: dict[str, float] = {}
    nodes: dict[str, int] = {}
    latest_node_s = 0.0
    for node_result in result.result or []:
        node = node_result.node
        kind = str(getattr(node.resource_type, "value", node.resource_type))
        per_type[kind] = per_type.get(kind, 0.0) + float(node_result.execution_time or 0.0)
        nodes[kind] = nodes.get(kind, 0) + 1
        if kind == "model" and node.name == "int_labs__latest_in_window":
            latest_node_s = float(node_result.execution_time or 0.0)
    return {
        "prepare_seconds": round(prepare_s, 3),
        "seed_seconds": round(seed_s, 3),
        "build_seconds": round(build_s, 3),
        "total_seconds": round(seed_s + build_s, 3),
        "build_elapsed_seconds": round(float(result.result.elapsed_time or 0.0), 3),
        "node_seconds": {k: round(v, 3) for k, v in sorted(per_type.items())},
        "nodes": dict(sorted(nodes.items())),
        "latest_in_window_node_seconds": round(latest_node_s, 3),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": _rss_mb(),
    }


# --- parsing peers ----------------------------------------------------------------------


def _best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """Fastest of ``repeat`` runs (the others measure the neighbours on a shared machine)."""
    best, out = float("inf"), 0
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def _read(path: Path) -> bytes:
    import gzip

    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def orjson_observation_loop(paths: Sequence[Path]) -> int:
    """The peer: one ``orjson.loads`` per line, the fields the pipeline needs into lists."""
    import orjson

    ids: list[Any] = []
    subjects: list[Any] = []
    codes: list[Any] = []
    values: list[Any] = []
    units: list[Any] = []
    times: list[Any] = []
    statuses: list[Any] = []
    for path in paths:
        for line in _read(path).splitlines():
            if not line.strip():
                continue
            try:
                r = orjson.loads(line)
                coding = ((r.get("code") or {}).get("coding") or [{}])[0]
                quantity = r.get("valueQuantity") or {}
                ids.append(r.get("id"))
                subjects.append((r.get("subject") or {}).get("reference"))
                codes.append((coding.get("system"), coding.get("code")))
                values.append(quantity.get("value"))
                units.append(quantity.get("code") or quantity.get("unit"))
                times.append(
                    r.get("effectiveDateTime")
                    or (r.get("effectivePeriod") or {}).get("start")
                    or r.get("issued")
                )
                statuses.append(r.get("status"))
            except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
                continue  # the peer skips a bad line; the pipeline quarantines it
    return len(ids)


def json_lines_only(paths: Sequence[Path]) -> list[bytes]:
    """The files' contents without the lines that are not JSON objects (done before timing:
    polars ``read_ndjson`` stops at the first bad line, ``ignore_errors`` or not)."""
    import orjson

    cleaned = []
    for path in paths:
        good = []
        for line in _read(path).splitlines():
            try:
                if isinstance(orjson.loads(line), dict):
                    good.append(line)
            except orjson.JSONDecodeError:
                continue
        cleaned.append(b"\n".join(good) + b"\n")
    return cleaned


def polars_observation_scan(contents: Sequence[bytes]) -> int:
    """The other peer: polars ``read_ndjson`` with an explicit schema of the same fields."""
    import polars as pl

    s = pl.String()
    coding = pl.Struct({"system": s, "code": s})
    schema = {
        "id": s,
        "status": s,
        "subject": pl.Struct({"reference": s}),
        "code": pl.Struct({"coding": pl.List(coding)}),
        "valueQuantity": pl.Struct({"value": pl.Float64(), "unit": s, "code": s}),
        "effectiveDateTime": s,
        "effectivePeriod": pl.Struct({"start": s}),
        "issued": s,
    }
    rows = 0
    for data in contents:
        frame = pl.read_ndjson(io.BytesIO(data), schema=schema, ignore_errors=True)
        rows += frame.height
    return rows


def split_hl7(paths: Sequence[Path]) -> int:
    """The lower bound: segments and fields by ``str.split``, nothing decoded or checked."""
    obx = 0
    for path in paths:
        text = path.read_bytes().decode("utf-8", errors="replace")
        for segment in text.replace("\r\n", "\r").replace("\n", "\r").split("\r"):
            if segment:
                fields = segment.split("|")
                if fields[0] == "OBX":
                    obx += 1
    return obx


def _trialscreen_parse(
    parse: Callable[[Path, Path], Any], paths: Sequence[Path], root: Path
) -> int:
    records = 0
    for path in paths:
        records += parse(path, root).records_in
    return records


def _throughput(n_bytes: int, seconds: float, records: int) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 4),
        "records": records,
        "mb_per_s": float(f"{n_bytes / MB / seconds:.3g}") if seconds > 0 else None,
        "records_per_s": round(records / seconds) if seconds > 0 else None,
    }


def measure_parsing(drop: Path, repeat: int = 3) -> dict[str, Any]:
    from trialscreen.feeds.fhir import parse_fhir_file
    from trialscreen.feeds.hl7v2 import parse_hl7_file

    out: dict[str, Any] = {}
    obs = sorted((drop / "fhir").glob("Observation*.ndjson*"))
    if obs:
        n = sum(p.stat().st_size for p in obs)
        ours = _best(lambda: _trialscreen_parse(parse_fhir_file, obs, drop), repeat)
        peers: dict[str, Any] = {"orjson_loop": _best(lambda: orjson_observation_loop(obs), repeat)}
        try:
            clean = json_lines_only(obs)
            peers["polars_schema"] = _best(lambda: polars_observation_scan(clean), repeat)
        except Exception as exc:  # a peer failing on a bad line is a finding, not a crash
            peers["polars_schema"] = exc
        fhir: dict[str, Any] = {"files": len(obs), "mb": round(n / MB, 2)}
        fhir["trialscreen"] = _throughput(n, *ours)
        for name, measured in peers.items():
            if isinstance(measured, Exception):
                fhir[name] = {"error": f"{type(measured).__name__}: {measured}"[:200]}
            else:
                fhir[name] = _throughput(n, *measured)
                fhir[name]["ratio"] = _ratio(fhir["trialscreen"]["seconds"], measured[0])
        out["fhir"] = fhir
    hl7_files = sorted(p for p in (drop / "hl7").glob("*") if p.suffix in (".hl7", ".txt"))
    if hl7_files:
        n = sum(p.stat().st_size for p in hl7_files)
        ours = _best(lambda: _trialscreen_parse(parse_hl7_file, hl7_files, drop), repeat)
        peer = _best(lambda: split_hl7(hl7_files), repeat)
        out["hl7"] = {
            "files": len(hl7_files),
            "mb": round(n / MB, 2),
            "trialscreen": _throughput(n, *ours),
            "string_split": {
                **_throughput(n, *peer),
                "ratio": _ratio(ours[0], peer[0]),
            },
        }
    return out


def _ratio(ours_seconds: float, peer_seconds: float) -> float | None:
    """Our throughput relative to the peer's (> 1: we are faster)."""
    # three significant digits: a tiny population on a loaded machine gives 0.0004×, not 0
    return float(f"{peer_seconds / ours_seconds:.3g}") if ours_seconds > 0 else None


# --- the reference query ----------------------------------------------------------------

LATEST_SQL = """
select patient_mrn, analyte, value_canonical, effective_at
from intermediate.int_observations
where effective_at is not null
qualify row_number() over (partition by patient_mrn, analyte order by effective_at desc) = 1
"""
PG_LATEST_SQL = """
select count(*) from (
    select distinct on (patient_mrn, analyte) patient_mrn, analyte, value_canonical, effective_at
    from intermediate.int_observations
    where effective_at is not null
    order by patient_mrn, analyte, effective_at desc
) latest
"""
FRAME_SQL = """
select patient_mrn, analyte, value_canonical, effective_at
from intermediate.int_observations
where effective_at is not null
"""


def measure_latest_query(warehouse: Path, repeat: int = 3) -> dict[str, Any]:
    """Latest result per patient and analyte: one DuckDB query vs pandas vs polars."""
    import duckdb
    import polars as pl

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows_in = int(con.sql(f"select count(*) from ({FRAME_SQL})").fetchall()[0][0])
        frame = con.sql(FRAME_SQL).pl()  # also warms DuckDB's buffer cache for the query
        # duckdb 2.x: .arrow() is a stream; read_all() drains it into a table
        duck_s, duck_rows = _best(lambda: con.sql(LATEST_SQL).arrow().read_all().num_rows, repeat)
    finally:
        con.close()
    pdf = frame.to_pandas()

    def with_pandas() -> int:
        idx = pdf.groupby(["patient_mrn", "analyte"], sort=False)["effective_at"].idxmax()
        return len(pdf.loc[idx])

    def with_polars() -> int:
        latest = frame.group_by("patient_mrn", "analyte").agg(
            pl.all().sort_by("effective_at").last()
        )
        return int(latest.height)

    with_pandas(), with_polars()  # warm-up, as DuckDB got
    pandas_s, pandas_rows = _best(with_pandas, repeat)
    polars_s, polars_rows = _best(with_polars, repeat)
    return {
        "rows_in": rows_in,
        "rows_out": duck_rows,
        "rows_agree": duck_rows == pandas_rows == polars_rows,
        "duckdb_seconds": round(duck_s, 5),
        "pandas_seconds": round(pandas_s, 5),
        "polars_seconds": round(polars_s, 5),
    }


# --- one size -----------------------------------------------------------------------------


def population(out: Path, patients: int, seed: int, workers: int = 2) -> tuple[Path, bool, date]:
    """The cached population for (patients, seed); generated only when missing or stale.

    Reused only when ``<drop>/.synth/key.json`` says it was generated to the end under the
    same key (the generator's code fingerprint, size, seed, screening date, time zone); a
    drop without that record (older generators) is generated again. An interrupted
    generation resumes from its finished parts (``synth.generate``)."""
    from trialscreen.synth import cache_key, generate, is_complete

    drop = out / f"pop_{patients}_{seed}"
    if is_complete(drop, cache_key(patients, seed, SCREENING_DATE)):
        return drop, False, SCREENING_DATE
    generate(patients=patients, seed=seed, out=drop, screening_date=SCREENING_DATE, workers=workers)
    return drop, True, SCREENING_DATE


def increment_drop(
    out: Path, patients: int, seed: int, share: float = 0.02
) -> tuple[Path, bool, date]:
    """The cached next night of the cached population: one day of new lab results for
    ``share`` of its patients, dated the day after ``SCREENING_DATE``
    (``<out>/pop_<n>_<seed>_night2``). Reused only when it was written by the same code from
    the same population; returns (drop, generated, its day = the night's screening date)."""
    from trialscreen.synth import cache_key
    from trialscreen.synth.increment import fingerprint, increment

    base, _, _ = population(out, patients, seed)
    drop = out / f"pop_{patients}_{seed}_night2"
    day = SCREENING_DATE + timedelta(days=1)
    held = drop / "expected" / "increment.json"
    if held.exists():
        meta = json.loads(held.read_text())
        if (
            meta.get("base") == cache_key(patients, seed, SCREENING_DATE)
            and meta.get("fingerprint") == fingerprint()
            and meta.get("share") == share
            and meta.get("day") == day.isoformat()
        ):
            return drop, False, day
    increment(base, drop, day, share)
    return drop, True, day


def _feed_bytes(drop: Path, feed: str) -> int:
    folder = drop / feed
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def _fresh_duckdb(path: Path) -> str:
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    return str(path)


def _fresh_postgres(url: str) -> str:
    """Drop and recreate the bench's own database on the server of ``url``; its URL."""
    import psycopg2  # type: ignore[import-untyped]

    admin = psycopg2.connect(url)
    admin.autocommit = True  # create/drop database cannot run inside a transaction
    try:
        with admin.cursor() as cur:
            cur.execute(f"drop database if exists {PG_BENCH_DB}")
            cur.execute(f"create database {PG_BENCH_DB}")
    finally:
        admin.close()
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{PG_BENCH_DB}"))


def _ingest(warehouse: str, drop: Path, run_id: str, tick: Callable[[str], None]) -> dict[str, Any]:
    feeds: dict[str, Any] = {}
    for feed in FEEDS:
        tick(f"ingest {feed}")
        child = _in_child(_ingest_child, warehouse, str(drop), feed, run_id)
        counts = child["counts"]
        n_bytes = _feed_bytes(drop, feed)
        seconds = float(counts["seconds"])
        feeds[feed] = {
            "files": counts["files_new"],
            "mb": round(n_bytes / MB, 2),
            "records_in": counts["records_in"],
            "loaded": counts["loaded"],
            "duplicates_skipped": counts["duplicates_skipped"],
            "quarantined": counts["quarantined"],
            "seconds": seconds,
            "records_per_s": round(counts["records_in"] / seconds) if seconds > 0 else None,
            "mb_per_s": float(f"{n_bytes / MB / seconds:.3g}") if seconds > 0 else None,
            "peak_rss_mb": child["peak_rss_mb"],
            "worker_peak_rss_mb": child["worker_peak_rss_mb"],
            "baseline_rss_mb": child["baseline_rss_mb"],
        }
    return feeds


def _observation_drop(out: Path, drop: Path) -> Path:
    """A drop holding only the population's FHIR Observation NDJSON files (hard links, else
    copies): the files the polars peer reads, for the end-to-end ratio."""
    import shutil

    subset = out / f"{drop.name}_observations"
    shutil.rmtree(subset, ignore_errors=True)
    (subset / "fhir").mkdir(parents=True)
    for path in sorted((drop / "fhir").glob("Observation*.ndjson*")):
        try:
            os.link(path, subset / "fhir" / path.name)
        except OSError:
            shutil.copyfile(path, subset / "fhir" / path.name)
    return subset


SAMPLE_BYTES = 256 * MB  # per feed, of the scale step's parser comparison


def _unpacked_size(path: Path) -> int:
    """Bytes a file holds once read: a gzip's size from its trailer (ISIZE, modulo 4 GiB)."""
    if path.suffix != ".gz":
        return path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(-4, os.SEEK_END)
        return int.from_bytes(fh.read(4), "little")


def sample_drop(out: Path, drop: Path, budget: int = SAMPLE_BYTES) -> Path:
    """The first files of the drop's FHIR Observation NDJSON and of its HL7 feed, up to
    ``budget`` bytes each once read (at least one file each), as hard links in a drop of
    their own: the scale step compares the parsers with their peers on these, since the
    peers hold their input in memory and a million patients' feeds are 10 GB."""
    import shutil

    subset = out / f"{drop.name}_sample"
    shutil.rmtree(subset, ignore_errors=True)
    chosen = {
        "fhir": sorted((drop / "fhir").glob("Observation*.ndjson*")),
        "hl7": sorted(p for p in (drop / "hl7").glob("*") if p.suffix in (".hl7", ".txt")),
    }
    for feed, paths in chosen.items():
        (subset / feed).mkdir(parents=True)
        taken = 0
        for path in paths:
            if taken >= budget:
                break
            try:
                os.link(path, subset / feed / path.name)
            except OSError:
                shutil.copyfile(path, subset / feed / path.name)
            taken += _unpacked_size(path)
    return subset


def measure_sample(out: Path, drop: Path) -> dict[str, Any]:
    """The parser ratios and the ingest-end-to-end ratios of :func:`bench_size` on
    :func:`sample_drop` of a population too large to hold: one repeat."""
    from trialscreen.pipeline import start_run

    sample = sample_drop(out, drop)
    parse = measure_parsing(sample, repeat=1)
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


def _pg_latest_seconds(url: str, repeat: int) -> float:
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(url) as wh:
        seconds, _ = _best(lambda: int(wh.scalar(PG_LATEST_SQL)), repeat)
    return round(seconds, 5)


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
