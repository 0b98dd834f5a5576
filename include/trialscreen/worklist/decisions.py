"""The coordinators' decisions store (docs/decisions.md, "The coordinators' worklist").

Coordinators record what they did with a candidate (reviewed, contacted, screen-failed with a
reason, consented, enrolled, not interested) while the nightly run may hold the warehouse: the
embedded DuckDB file takes one writer at a time, so decisions go to a store of their own and
the next run's worklist step merges them (``merge_into_warehouse``).

* Embedded deployments: a SQLite file (``$TRIALSCREEN_DECISIONS_STORE``, default
  ``<worklist dir>/decisions.sqlite``), mode 0600 in a 0700 directory, WAL journal so a
  reader never blocks a writer.
* PostgreSQL: ``$TRIALSCREEN_DECISIONS_STORE`` is a ``postgresql://`` URL of the coordinator
  role; the tables live in schema ``decisions``, which the coordinator writes and the
  transformer reads (trialscreen.roles). Analysts read neither.

Every row carries who (``$TRIALSCREEN_USER`` or the login name; on PostgreSQL the database
role) and when (UTC). Rows are only ever appended: the latest decision per (trial, cohort,
patient) is the current one, the earlier ones are its history. The export audit
(``worklist_exports``: who, when, what, how many rows) lives in the same store.
"""

from __future__ import annotations

import csv
import getpass
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STORE_ENV = "TRIALSCREEN_DECISIONS_STORE"
USER_ENV = "TRIALSCREEN_USER"
SCHEMA = "decisions"

OUTCOMES = (
    "reviewed",
    "contacted",
    "screen_failed",
    "consented",
    "enrolled",
    "not_interested",
)
# outcomes after which a patient is not shown as new again while the candidate status stays
# what it was when the decision was made
CLOSING_OUTCOMES = ("screen_failed", "not_interested", "enrolled")

DECISION_COLUMNS = (
    "decision_id",
    "trial_id",
    "cohort_id",
    "mrn",
    "outcome",
    "reason",
    "candidate_status",
    "run_id",
    "recorded_by",
    "recorded_at",
)
EXPORT_COLUMNS = ("export_id", "exported_by", "exported_at", "what", "format", "rows", "target")


class DecisionError(ValueError):
    """A decision the store refuses; the message names the field (never the patient)."""


@dataclass(frozen=True)
class Decision:
    trial_id: str
    cohort_id: str
    mrn: str
    outcome: str
    reason: str = ""
    candidate_status: str = ""
    run_id: str = ""
    recorded_by: str = ""
    recorded_at: datetime | None = None
    decision_id: str = ""

    def checked(self) -> Decision:
        if self.outcome not in OUTCOMES:
            raise DecisionError(f"outcome: '{self.outcome}' is not one of {', '.join(OUTCOMES)}")
        for name in ("trial_id", "cohort_id", "mrn"):
            if not str(getattr(self, name)).strip():
                raise DecisionError(f"{name}: empty")
        if self.outcome == "screen_failed" and not self.reason.strip():
            raise DecisionError("reason: a screen-failed decision needs a reason")
        return Decision(
            trial_id=self.trial_id.strip(),
            cohort_id=self.cohort_id.strip(),
            mrn=self.mrn.strip(),
            outcome=self.outcome,
            reason=self.reason.strip(),
            candidate_status=self.candidate_status,
            run_id=self.run_id,
            recorded_by=self.recorded_by or current_user(),
            recorded_at=self.recorded_at or _now(),
            decision_id=self.decision_id or uuid.uuid4().hex,
        )

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, c) for c in DECISION_COLUMNS)


def current_user() -> str:
    return os.environ.get(USER_ENV, "").strip() or getpass.getuser()


def _now() -> datetime:
    """UTC to the microsecond: two decisions in one second still keep their order."""
    return datetime.now(UTC).replace(tzinfo=None)


def default_location(worklist_dir: Path) -> str:
    return os.environ.get(STORE_ENV, "").strip() or str(Path(worklist_dir) / "decisions.sqlite")


class DecisionStore:
    """Append-only decisions and export audit, in SQLite or PostgreSQL."""

    def __init__(self, location: str | Path, readonly: bool = False) -> None:
        """``readonly``: the nightly run's view (it reads decisions, never writes them); a
        store nobody has written yet reads as empty."""
        self.location = str(location)
        self.postgres = self.location.startswith(("postgresql://", "postgres://"))
        self.readonly = readonly
        self._con: Any = None
        self._empty = False

    # --- connection ------------------------------------------------------------------
    def __enter__(self) -> DecisionStore:
        if self.postgres:
            import psycopg2  # type: ignore[import-untyped]

            self._con = psycopg2.connect(self.location)
        elif self.readonly:
            path = Path(self.location)
            if not path.is_file():
                self._empty = True
                return self
            self._con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        else:
            path = Path(self.location)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            os.chmod(path, 0o600)
            self._con = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._con.execute("pragma journal_mode=wal")
        if self.readonly:
            self._empty = not self._has_tables()
        else:
            self._ensure()
        return self

    def _has_tables(self) -> bool:
        with self._cursor() as cur:
            if self.postgres:
                cur.execute(
                    "select count(*) from information_schema.tables where table_schema = %s "
                    "and table_name in ('worklist_decisions', 'worklist_exports')",
                    [SCHEMA],
                )
            else:
                cur.execute(
                    "select count(*) from sqlite_master where type = 'table' "
                    "and name in ('worklist_decisions', 'worklist_exports')"
                )
            return int(cur.fetchone()[0]) == 2

    def __exit__(self, *exc: object) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def _p(self) -> str:
        return "%s" if self.postgres else "?"

    def _table(self, name: str) -> str:
        return f"{SCHEMA}.{name}" if self.postgres else name

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        cur = self._con.cursor()
        try:
            yield cur
            if self.postgres:
                self._con.commit()
        except BaseException:
            if self.postgres:
                self._con.rollback()
            raise
        finally:
            cur.close()

    def _ensure(self) -> None:
        ts = "timestamp" if self.postgres else "text"
        with self._cursor() as cur:
            if self.postgres:
                cur.execute(
                    "select count(*) from information_schema.schemata where schema_name = %s",
                    [SCHEMA],
                )
                if not cur.fetchone()[0]:
                    cur.execute(f"create schema if not exists {SCHEMA}")
            cur.execute(
                f"create table if not exists {self._table('worklist_decisions')} ("
                "decision_id text primary key, trial_id text not null, cohort_id text not null, "
                "mrn text not null, outcome text not null, reason text, candidate_status text, "
                f"run_id text, recorded_by text not null, recorded_at {ts} not null)"
            )
            cur.execute(
                f"create table if not exists {self._table('worklist_exports')} ("
                f"export_id text primary key, exported_by text not null, exported_at {ts} "
                "not null, what text not null, format text not null, rows integer not null, "
                "target text)"
            )

    # --- decisions -------------------------------------------------------------------
    def record(self, decisions: Iterable[Decision]) -> int:
        """Append decisions (all or none); returns how many."""
        checked = [d.checked() for d in decisions]
        if self.postgres:
            with self._cursor() as cur:
                cur.execute("select current_user")
                role = cur.fetchone()[0]
            checked = [
                Decision(**{**d.__dict__, "recorded_by": f"{d.recorded_by} ({role})"})
                for d in checked
            ]
        marks = ", ".join([self._p] * len(DECISION_COLUMNS))
        sql = (
            f"insert into {self._table('worklist_decisions')} ({', '.join(DECISION_COLUMNS)}) "
            f"values ({marks})"
        )
        rows = [self._param_row(d.row()) for d in checked]
        if self.postgres:
            with self._cursor() as cur:
                cur.executemany(sql, rows)
        else:
            self._con.execute("begin immediate")  # one transaction: all or none
            try:
                self._con.executemany(sql, rows)
            except BaseException:
                self._con.execute("rollback")
                raise
            self._con.execute("commit")
        return len(checked)

    def _param_row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        if self.postgres:
            return tuple(row)
        return tuple(v.isoformat(sep=" ") if isinstance(v, datetime) else v for v in row)

    def decisions(self) -> list[Decision]:
        """Every decision, oldest first."""
        if self._empty:
            return []
        with self._cursor() as cur:
            cur.execute(
                f"select {', '.join(DECISION_COLUMNS)} from "
                f"{self._table('worklist_decisions')} order by recorded_at, "
                + ("decision_id" if self.postgres else "rowid")
            )
            rows = cur.fetchall()
        out = []
        for row in rows:
            values = dict(zip(DECISION_COLUMNS, row, strict=True))
            at = values["recorded_at"]
            values["recorded_at"] = datetime.fromisoformat(at) if isinstance(at, str) else at
            values = {k: ("" if v is None else v) for k, v in values.items()}
            out.append(Decision(**values))
        return out

    def latest(self) -> dict[tuple[str, str, str], Decision]:
        """The current decision per (trial_id, cohort_id, mrn)."""
        return {(d.trial_id, d.cohort_id, d.mrn): d for d in self.decisions()}

    # --- export audit ----------------------------------------------------------------
    def record_export(self, what: str, fmt: str, rows: int, target: str, who: str = "") -> str:
        export_id = uuid.uuid4().hex
        values = (export_id, who or current_user(), _now(), what, fmt, rows, target)
        marks = ", ".join([self._p] * len(EXPORT_COLUMNS))
        with self._cursor() as cur:
            cur.execute(
                f"insert into {self._table('worklist_exports')} ({', '.join(EXPORT_COLUMNS)}) "
                f"values ({marks})",
                self._param_row(values),
            )
        return export_id

    def exports(self) -> list[dict[str, Any]]:
        if self._empty:
            return []
        with self._cursor() as cur:
            cur.execute(
                f"select {', '.join(EXPORT_COLUMNS)} from {self._table('worklist_exports')} "
                "order by exported_at, export_id"
            )
            return [dict(zip(EXPORT_COLUMNS, r, strict=True)) for r in cur.fetchall()]


def read_decisions_csv(path: Path, default_trial: str = "") -> list[Decision]:
    """Decisions from a CSV with columns mrn, outcome and optionally trial_id, cohort_id,
    reason, recorded_by. An error names the line and the column, never the value."""
    out: list[Decision] = []
    with Path(path).open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"mrn", "outcome", "cohort_id"} - set(reader.fieldnames or ())
        if missing:
            raise DecisionError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            trial = (row.get("trial_id") or default_trial).strip()
            try:
                out.append(
                    Decision(
                        trial_id=trial,
                        cohort_id=row.get("cohort_id") or "",
                        mrn=row.get("mrn") or "",
                        outcome=(row.get("outcome") or "").strip().lower().replace("-", "_"),
                        reason=row.get("reason") or "",
                        recorded_by=(row.get("recorded_by") or "").strip(),
                    ).checked()
                )
            except DecisionError as exc:
                raise DecisionError(f"{path.name} line {line}: {exc}") from None
    return out
