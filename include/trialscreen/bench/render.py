"""The benchmark's results as tables: the machine it ran on, docs-ready markdown
(``results.md``), rich tables and one line per ratio on the console.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from trialscreen.schema import FEEDS


def machine() -> dict[str, Any]:
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            d: version(d)
            for d in (
                "trialscreen",
                "duckdb",
                "polars",
                "pandas",
                "orjson",
                "dbt-core",
                "dbt-duckdb",
            )
        },
    }


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _x(ratio: float | None) -> str:
    if ratio is None:
        return "–"
    return f"{ratio:,.0f}×" if ratio >= 100 else f"{ratio:.2f}×"


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.1f} ms"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


def tables(results: dict[str, Any]) -> list[Table]:
    sizes = results["sizes"]
    ingest = Table(
        "Ingestion per feed (one spawned process per feed; peak RSS of that process)",
        [
            "patients",
            "engine",
            "feed",
            "files",
            "MB",
            "records in",
            "quarantined",
            "seconds",
            "records/s",
            "MB/s",
            "peak RSS MB",
        ],
        [],
    )
    parse = Table(
        "Parsing vs peers (same files, best of the repeats)",
        ["patients", "input", "MB", "trialscreen MB/s", "peer", "peer MB/s", "ratio"],
        [],
    )
    sql = Table(
        "SQL layer (dbt seed + build, wap off) and the latest-per-analyte query",
        [
            "patients",
            "engine",
            "obs rows",
            "dbt seed s",
            "dbt build s",
            "model SQL s",
            "peak RSS MB",
            "latest query",
            "pandas",
            "polars",
            "build ÷ query",
        ],
        [],
    )
    for n, r in sizes.items():
        for engine, measured in r["engines"].items():
            for feed, f in measured["ingest"].items():
                ingest.rows.append(
                    [
                        n,
                        engine,
                        feed,
                        _f(f["files"]),
                        _f(f["mb"]),
                        _f(f["records_in"]),
                        _f(f["quarantined"]),
                        _f(f["seconds"], 2),
                        _f(f["records_per_s"]),
                        _f(f["mb_per_s"], 1),
                        _f(f["peak_rss_mb"], 0),
                    ]
                )
        parse.rows.extend(_parse_rows(n, r["parse"]))
        q = r["latest_query"]
        for engine, measured in r["engines"].items():
            d = measured["dbt"]
            duck = engine == "duckdb"
            engine_q = q["duckdb_seconds"] if duck else q.get("postgres_seconds")
            sql.rows.append(
                [
                    n,
                    engine,
                    _f(q["rows_in"]),
                    _f(d["seed_seconds"], 1),
                    _f(d["build_seconds"], 1),
                    _f(d["node_seconds"].get("model"), 1),
                    _f(d["peak_rss_mb"], 0),
                    _ms(engine_q),
                    _ms(q["pandas_seconds"]) if duck else "",
                    _ms(q["polars_seconds"]) if duck else "",
                    f"{d['total_seconds'] / engine_q:,.0f}×" if engine_q else "–",
                ]
            )
    for n, sc in results.get("scale", {}).items():
        if "sample" in sc:
            parse.rows.extend(_parse_rows(f"{n} (sample)", sc["sample"]["parse"]))
    out = [t for t in (ingest, parse, sql) if t.rows]
    for n, sc in results.get("scale", {}).items():
        out.extend(_scale_tables(int(n), sc))
    return out


def _parse_rows(n: str, parsed: dict[str, Any]) -> list[list[str]]:
    rows = []
    for fmt, p in parsed.items():
        for peer in ("orjson_loop", "polars_schema", "string_split"):
            if peer in p:
                ratio = p[peer].get("ratio")
                rows.append(
                    [
                        n,
                        f"{fmt}, {p['files']} file(s)",
                        _f(p["mb"], 1),
                        _f(p["trialscreen"]["mb_per_s"]),
                        peer.replace("_", " "),
                        _f(p[peer].get("mb_per_s")) if "error" not in p[peer] else "failed",
                        f"{ratio:.2f}×" if ratio else "–",
                    ]
                )
    return rows


def _scale_tables(patients: int, s: dict[str, Any]) -> list[Table]:
    """The scale step: one row per night, then one per night and step."""
    nights = Table(
        f"Scale: two nights of the nightly job at {patients:,} patients (trialscreen run's "
        "steps on one DuckDB file; the second night is the next day's increment)",
        ["night", "plan", "records in", "wall s", "CPU s", "peak RSS MB", "status"],
        [],
    )
    steps = Table(
        f"Scale: each step of each night at {patients:,} patients (peak RSS of the whole "
        "process tree, parse workers included)",
        ["night", "step", "wall s", "peak RSS MB"],
        [],
    )
    for i, night in enumerate(s["nights"], 1):
        plan = night.get("build_plan", {})
        nights.rows.append(
            [
                f"{i} ({night['screening_date']})",
                "full" if plan.get("full_refresh") else "incremental" if plan else "–",
                _f(night["records_in"]),
                _f(night["wall_seconds"], 0),
                _f(night["cpu_seconds"], 0),
                _f(night["peak_rss_mb"], 0),
                night["status"] if night["status"] == "published" else night["message"],
            ]
        )
        for step in night["steps"]:
            steps.rows.append(
                [str(i), step["step"], _f(step["seconds"], 1), _f(step["peak_rss_mb"], 0)]
            )
    ratio = s.get("incremental_vs_full")
    build = s.get("incremental_vs_full_build")
    nights.rows.append(
        [
            "night 2 ÷ night 1",
            "",
            "",
            f"{ratio:.3f}×" if ratio is not None else "–",
            f"build {build:.3f}×" if build is not None else "",
            "",
            "",
        ]
    )
    return [nights, steps]


def ratio_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for n, r in results["sizes"].items():
        head = f"[{n} patients]"
        lines.extend(_parse_lines(head, r["parse"], r.get("end_to_end", {})))
        q = r["latest_query"]
        rt = r["ratios"]
        lines.append(
            f"{head} latest per patient+analyte over {q['rows_in']:,} rows: DuckDB "
            f"{_ms(q['duckdb_seconds'])} vs pandas {_ms(q['pandas_seconds'])} "
            f"({rt['pandas_vs_duckdb_query']}× DuckDB's time) vs polars "
            f"{_ms(q['polars_seconds'])} ({rt['polars_vs_duckdb_query']}×)"
        )
        d = r["engines"]["duckdb"]["dbt"]
        lines.append(
            f"{head} dbt seed+build {d['total_seconds']:.1f} s vs the single query "
            f"{_ms(q['duckdb_seconds'])} ({_x(rt['dbt_build_vs_query'])}; target ≤ 3×); "
            f"model SQL alone {d['node_seconds'].get('model', 0):.1f} s "
            f"({_x(rt['dbt_models_vs_query'])}), int_labs__latest_in_window "
            f"{d['latest_in_window_node_seconds']:.2f} s"
        )
        if "postgres" in r["engines"]:
            pg = r["engines"]["postgres"]
            lines.append(
                f"{head} postgres ÷ duckdb time: ingest "
                + ", ".join(f"{feed} {rt[f'postgres_vs_duckdb_ingest_{feed}']}×" for feed in FEEDS)
                + f"; dbt {pg['dbt']['total_seconds']:.1f} s vs "
                f"{d['total_seconds']:.1f} s ({rt['postgres_vs_duckdb_dbt']}×)"
            )
            slowest = pg["dbt"].get("slowest_nodes") or {}  # absent from older results
            if slowest:
                duck = d.get("slowest_nodes") or {}
                lines.append(
                    f"{head} postgres's slowest nodes: "
                    + ", ".join(
                        f"{name} {t:.1f} s"
                        + (f" (duckdb {duck[name]:.1f} s)" if name in duck else "")
                        for name, t in list(slowest.items())[:5]
                    )
                )
    for n, sc in results.get("scale", {}).items():
        if "sample" in sc:
            head = f"[{n} patients, sampled files]"
            lines.extend(_parse_lines(head, sc["sample"]["parse"], sc["sample"]["end_to_end"]))
    return lines


def _parse_lines(head: str, parse: dict[str, Any], e2e: dict[str, Any]) -> list[str]:
    lines = []
    fhir = parse.get("fhir")
    if fhir:
        ours = fhir["trialscreen"]["mb_per_s"]
        for peer, label in (("orjson_loop", "orjson loop"), ("polars_schema", "polars schema")):
            p = fhir.get(peer, {})
            if p.get("ratio"):
                lines.append(
                    f"{head} fhir parse: trialscreen {ours:.0f} MB/s vs {label} "
                    f"{p['mb_per_s']:.0f} MB/s ({p['ratio']:.2f}×)"
                )
    hl7 = parse.get("hl7")
    if hl7 and hl7["string_split"].get("ratio"):
        lines.append(
            f"{head} hl7 parse: trialscreen {hl7['trialscreen']['mb_per_s']:.1f} MB/s vs "
            f"string split {hl7['string_split']['mb_per_s']:.0f} MB/s "
            f"({hl7['string_split']['ratio']:.3f}×)"
        )
    if e2e.get("fhir", {}).get("ratio") is not None:
        f = e2e["fhir"]
        lines.append(
            f"{head} fhir ingest end to end (Observation NDJSON): {f['ingest_seconds']:.2f} s "
            f"vs polars read_ndjson with a schema {f['polars_schema_seconds']:.2f} s "
            f"({f['ratio']:.2f}×; target ≥ 0.5×), peak RSS {f['peak_rss_mb']:.0f} MB "
            f"(workers {f['worker_peak_rss_mb']:.0f} MB)"
        )
    if e2e.get("hl7", {}).get("ratio") is not None:
        h = e2e["hl7"]
        lines.append(
            f"{head} hl7 ingest end to end: {h['ingest_seconds']:.2f} s vs string split "
            f"{h['string_split_seconds']:.2f} s ({h['ratio']:.3f}×; target ≥ 0.25×)"
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"Measured {m['date']} on {m['cpus']} CPUs, {m['memory_gb']} GB RAM, Python "
        f"{m['python']} ({m['platform']}); command: `{results['command']}`.",
        "",
    ]
    for table in tables(results):
        out += [f"**{table.title}**", ""]
        out.append("| " + " | ".join(table.columns) + " |")
        out.append("|" + "|".join("---" for _ in table.columns) + "|")
        out += ["| " + " | ".join(row) + " |" for row in table.rows]
        out.append("")
    out += ["**Ratios**", ""] + [f"- {line}" for line in ratio_lines(results)] + [""]
    return "\n".join(out)


def _print(results: dict[str, Any], console: Any) -> None:
    from rich.table import Table as RichTable

    for table in tables(results):
        rich_table = RichTable(title=table.title, title_justify="left")
        for i, column in enumerate(table.columns):
            rich_table.add_column(column, justify="left" if i < 3 else "right")
        for row in table.rows:
            rich_table.add_row(*row)
        console.print(rich_table)
    for line in ratio_lines(results):
        console.print(line, markup=False, highlight=False)


@contextmanager
def _progress(total: int, console: Any) -> Iterator[Callable[[str], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("bench", total=total)
        started = [False]

        def tick(step: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=step)

        yield tick
        bar.update(task, completed=total)
