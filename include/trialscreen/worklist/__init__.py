"""The coordinators' worklist (issue 12; docs/decisions.md, "The coordinators' worklist").

    build.py      restricted.worklist -> entries per (trial, cohort, patient), ordered
    snapshot.py   the run's whole worklist in a SQLite file, written and read as a stream
    render.py     the static HTML page (each cohort's first patients in work order)
    export.py     CSV / XLSX, streamed, with an audit row per export
    decisions.py  the coordinators' decisions store (SQLite file, or schema ``decisions`` on
                  PostgreSQL) and the export audit

``write_worklist`` is the run's worklist step (called where the reports are written, only for
a run that published): it refreshes the research-contact opt-out list and the merged
decisions in the warehouse, gives the analysts the accrual counts (no identities), and writes
``<worklist dir>/<run_id>/worklist.sqlite`` (the snapshot that ``trialscreen worklist export``
and ``mark`` read) and ``worklist.html`` (each cohort's first ``$TRIALSCREEN_WORKLIST_PAGE_LIMIT``
patients in work order). Nothing of it is held whole in memory (docs/decisions.md, "The
worklist at a health system's size"). The directory is
``$TRIALSCREEN_WORKLIST_DIR`` (default: ``worklist/`` beside the reports directory, never
inside it); directories are 0700, files 0600.
"""

from __future__ import annotations

import csv
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from trialscreen.run_ids import check_run_id
from trialscreen.warehouse import Warehouse, WarehouseUrl
from trialscreen.worklist.build import WORKLIST_TABLE, Entry, Worklist, read_frames
from trialscreen.worklist.decisions import (
    OUTCOMES,
    Decision,
    DecisionError,
    DecisionStore,
    default_location,
)
from trialscreen.worklist.export import export
from trialscreen.worklist.render import Source, private_write, render, write_page
from trialscreen.worklist.snapshot import SNAPSHOT_FILE, Snapshot, write_frames

__all__ = [
    "OUTCOMES",
    "Decision",
    "DecisionError",
    "DecisionStore",
    "Entry",
    "Snapshot",
    "Source",
    "Worklist",
    "export",
    "latest_snapshot",
    "mark",
    "render",
    "worklist_dir",
    "write_worklist",
]

log = logging.getLogger(__name__)

WORKLIST_DIR_ENV = "TRIALSCREEN_WORKLIST_DIR"
OPT_OUT_ENV = "TRIALSCREEN_OPT_OUT_FILE"
OPT_OUTS_TABLE = "restricted.research_opt_outs"
DECISIONS_TABLE = "restricted.worklist_decisions"
EXPORTS_TABLE = "audit.worklist_exports"
ACCRUAL_TABLE = "marts.worklist_accrual"
PAGE_LIMIT_ENV = "TRIALSCREEN_WORKLIST_PAGE_LIMIT"
DEFAULT_PAGE_LIMIT = 500
KEEP_SNAPSHOTS = 3


def worklist_dir(reports_dir: Path | None = None) -> Path:
    """``$TRIALSCREEN_WORKLIST_DIR``, else ``worklist/`` beside the reports directory."""
    configured = os.environ.get(WORKLIST_DIR_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(reports_dir or "reports").resolve().parent / "worklist"


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def opt_out_file(directory: Path) -> Path | None:
    """``$TRIALSCREEN_OPT_OUT_FILE`` (must exist), else ``<worklist dir>/research_opt_outs.csv``
    when present."""
    configured = os.environ.get(OPT_OUT_ENV, "").strip()
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise FileNotFoundError(
                f"{OPT_OUT_ENV}: '{path}' does not exist; no worklist is written without the "
                "research-contact opt-out list it names"
            )
        return path
    default = directory / "research_opt_outs.csv"
    return default if default.is_file() else None


def read_opt_outs(path: Path | None) -> list[str]:
    """MRNs of patients who declined research contact: a CSV with a column ``mrn``."""
    if path is None:
        return []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if "mrn" not in (reader.fieldnames or ()):
            raise ValueError(f"{OPT_OUT_ENV}: {path.name} has no column 'mrn'")
        return sorted({(r.get("mrn") or "").strip() for r in reader} - {""})


def _decision_frame(decisions: list[Decision]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "decision_id": [d.decision_id for d in decisions],
            "trial_id": [d.trial_id for d in decisions],
            "cohort_id": [d.cohort_id for d in decisions],
            "mrn": [d.mrn for d in decisions],
            "outcome": [d.outcome for d in decisions],
            "reason": [d.reason for d in decisions],
            "candidate_status": [d.candidate_status for d in decisions],
            "run_id": [d.run_id for d in decisions],
            "recorded_by": [d.recorded_by for d in decisions],
            "recorded_at": [d.recorded_at for d in decisions],
        },
        schema={
            "decision_id": pl.String(),
            "trial_id": pl.String(),
            "cohort_id": pl.String(),
            "mrn": pl.String(),
            "outcome": pl.String(),
            "reason": pl.String(),
            "candidate_status": pl.String(),
            "run_id": pl.String(),
            "recorded_by": pl.String(),
            "recorded_at": pl.Datetime("us"),
        },
    )


def _accrual(run_id: str, decisions: list[Decision]) -> pl.DataFrame:
    """Patients per (trial, cohort, current outcome): counts only, for the analysts."""
    current = {(d.trial_id, d.cohort_id, d.mrn): d.outcome for d in decisions}
    counts: dict[tuple[str, str, str], int] = {}
    for (trial, cohort, _), outcome in current.items():
        counts[(trial, cohort, outcome)] = counts.get((trial, cohort, outcome), 0) + 1
    keys = sorted(counts)
    return pl.DataFrame(
        {
            "run_id": [run_id] * len(keys),
            "trial_id": [k[0] for k in keys],
            "cohort_id": [k[1] for k in keys],
            "outcome": [k[2] for k in keys],
            "patients": [counts[k] for k in keys],
        },
        schema={
            "run_id": pl.String(),
            "trial_id": pl.String(),
            "cohort_id": pl.String(),
            "outcome": pl.String(),
            "patients": pl.Int64(),
        },
    )


def _exports_frame(exports: list[dict[str, object]]) -> pl.DataFrame:
    def at(v: object) -> datetime | None:
        return datetime.fromisoformat(v) if isinstance(v, str) else v  # type: ignore[return-value]

    return pl.DataFrame(
        {
            "export_id": [e["export_id"] for e in exports],
            "exported_by": [e["exported_by"] for e in exports],
            "exported_at": [at(e["exported_at"]) for e in exports],
            "what": [e["what"] for e in exports],
            "format": [e["format"] for e in exports],
            "rows": [e["rows"] for e in exports],
            "target": [e["target"] for e in exports],
        },
        schema={
            "export_id": pl.String(),
            "exported_by": pl.String(),
            "exported_at": pl.Datetime("us"),
            "what": pl.String(),
            "format": pl.String(),
            "rows": pl.Int64(),
            "target": pl.String(),
        },
    )


def page_limit() -> int | None:
    """``$TRIALSCREEN_WORKLIST_PAGE_LIMIT``: the patients each cohort lists on the page
    (default :data:`DEFAULT_PAGE_LIMIT`; 0 lists all)."""
    value = os.environ.get(PAGE_LIMIT_ENV, "").strip() or str(DEFAULT_PAGE_LIMIT)
    if not value.isdigit():
        raise ValueError(f"{PAGE_LIMIT_ENV}: '{value}' is not a whole number of patients")
    return int(value) or None


def _screening_date(wh: Warehouse) -> str | None:
    day = wh.scalar(f"select max(screening_date) from {WORKLIST_TABLE}")
    return None if day is None else str(day)[:10]


def _prune_snapshots(directory: Path, run_id: str) -> None:
    """Keep the snapshots of the latest :data:`KEEP_SNAPSHOTS` runs (``export`` and ``mark``
    read the latest only); the pages stay."""
    runs = sorted(
        (p.parent for p in directory.glob(f"*/{SNAPSHOT_FILE}") if p.parent.name != run_id),
        key=lambda p: p.name,
    )
    for old in runs[: max(len(runs) - (KEEP_SNAPSHOTS - 1), 0)]:
        (old / SNAPSHOT_FILE).unlink(missing_ok=True)


def _store_location(warehouse_url: str, directory: Path) -> str:
    """On PostgreSQL the decisions are tables of the warehouse (schema ``decisions``), read
    here with the run's own role; else the SQLite file."""
    if WarehouseUrl.parse(warehouse_url).engine == "postgres":
        return warehouse_url
    return default_location(directory)


def write_worklist(warehouse_url: str, run_id: str, reports_dir: Path | None = None) -> Path:
    """The run's worklist step (see the module docstring); returns the page's path. The run
    reads the decisions store and never writes it."""
    check_run_id(run_id)
    directory = _private_dir(worklist_dir(reports_dir))
    source = opt_out_file(directory)
    opt_outs = read_opt_outs(source)
    with DecisionStore(_store_location(warehouse_url, directory), readonly=True) as store:
        decisions = store.decisions()
        exports = store.exports()
    latest = {(d.trial_id, d.cohort_id, d.mrn): d for d in decisions}
    run_dir = _private_dir(directory / run_id)
    snapshot = run_dir / SNAPSHOT_FILE
    with Warehouse.connect(warehouse_url) as wh:
        wh.replace_table(
            OPT_OUTS_TABLE, pl.DataFrame({"mrn": opt_outs}, schema={"mrn": pl.String()})
        )
        # an opt-out listed after tonight's build leaves the published table now
        wh.execute(
            f"delete from restricted.worklist where mrn in (select mrn from {OPT_OUTS_TABLE})"
        )
        opted = wh.query(
            "select c.trial_id, c.cohort_id, count(distinct c.patient_key) "
            "from marts.eligible_candidates c "
            "inner join restricted.patient_keys k on c.patient_key = k.patient_key "
            f"inner join {OPT_OUTS_TABLE} o on k.mrn = o.mrn group by 1, 2"
        )
        wh.replace_table(DECISIONS_TABLE, _decision_frame(decisions))
        wh.replace_table(ACCRUAL_TABLE, _accrual(run_id, decisions))
        extra, frames = read_frames(wh)
        n_entries, _ = write_frames(
            snapshot,
            frames,
            extra,
            {
                "run_id": run_id,
                "screening_date": _screening_date(wh),
                "built_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
                "opted_out": {f"{t}/{c}": int(n) for t, c, n in opted},
                "opt_out_source": str(source) if source else "",
            },
        )
    page = run_dir / "worklist.html"
    with Snapshot(snapshot) as snap:
        rows = write_page(page, snap.apply(latest), page_limit())
        opted_out = sum(snap.opted_out.values())
    private_write(directory / "LATEST", [run_id + "\n"])
    _prune_snapshots(directory, run_id)
    page_export = {
        "export_id": f"page-{run_id}",
        "exported_by": "nightly run",
        "exported_at": datetime.now(UTC).replace(tzinfo=None, microsecond=0),
        "what": f"worklist run {run_id} trial all",
        "format": "html",
        "rows": rows,
        "target": str(page),
    }
    audit = _exports_frame([*exports, page_export])
    with Warehouse.connect(warehouse_url) as wh, wh.transaction():
        wh.ensure_table(EXPORTS_TABLE, dict(audit.schema))
        ids = audit["export_id"].to_list()
        wh.execute(
            f"delete from {EXPORTS_TABLE} where export_id in ({', '.join([wh.param] * len(ids))})",
            ids,
        )
        wh.load_frame(EXPORTS_TABLE, audit)
    log.info(
        "worklist written",
        extra={
            "run_id": run_id,
            "patients": n_entries,
            "opted_out": opted_out,
        },
    )
    return page


def latest_snapshot(directory: Path | None = None) -> Snapshot:
    """The latest run's worklist snapshot (what the page shows), without decisions; close it
    (a context manager)."""
    directory = directory or worklist_dir()
    latest = directory / "LATEST"
    if not latest.is_file():
        raise FileNotFoundError(f"no worklist in {directory} yet: run the pipeline first")
    run_id = latest.read_text(encoding="utf-8").strip()
    return Snapshot(directory / check_run_id(run_id) / SNAPSHOT_FILE)


def mark(
    store: DecisionStore,
    worklist: Source,
    decisions: list[Decision],
) -> int:
    """Record decisions on patients of the latest worklist; each keeps the candidate status the
    coordinator saw. A patient not on that worklist is refused (named by line, not by MRN)."""
    complete = []
    for n, d in enumerate(decisions, start=1):
        entry = worklist.find(d.trial_id, d.cohort_id, d.mrn.strip())
        if entry is None:
            raise DecisionError(
                f"decision {n}: no such patient on the {d.trial_id}/{d.cohort_id} worklist of "
                f"run {worklist.run_id}"
            )
        complete.append(
            Decision(
                **{
                    **d.__dict__,
                    "candidate_status": entry.candidate_status,
                    "run_id": worklist.run_id,
                }
            )
        )
    return store.record(complete)
