"""Parsing against peers, on the same files and in this process: the FHIR Observation
NDJSON with ``feeds.fhir`` vs a plain orjson loop and polars ``read_ndjson`` with a schema;
the HL7 files with ``feeds.hl7v2`` vs ``str.split`` (the lower bound). Best of ``repeat``
runs; ratios > 1 mean trialscreen is faster.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from trialscreen.bench.populations import MB


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
    from trialscreen.feeds.hl7v2 import parse_hl7_files

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
        # the ingest's own call: a run of files parsed together (feeds/hl7v2/columnar.py)
        ours = _best(lambda: sum(p.records_in for p in parse_hl7_files(hl7_files, drop)), repeat)
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
