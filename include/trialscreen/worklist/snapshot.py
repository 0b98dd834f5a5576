"""The worklist snapshot: the whole worklist of one run in a SQLite file,
``<worklist dir>/<run_id>/worklist.sqlite`` (0600), which ``trialscreen worklist export`` and
``mark`` read while the nightly run holds the warehouse.

It is written from ``restricted.worklist`` as a stream, a batch of rows at a time and
without a Python object per row (:meth:`SnapshotWriter.add_frame`; tests and small
worklists built in Python write :class:`~trialscreen.worklist.build.Entry` objects with
:meth:`SnapshotWriter.add`), and read an entry at a time: the entries of one cohort in the
page's order under the current decisions, each with its criteria. At 1,000,000 patients the
worklist holds 365,000 entries and 6.5 M criterion rows, which never sit in memory together
(docs/decisions.md, "The worklist at a health system's size"). The order is SQL here and
:meth:`Entry.sort_key` in the in-memory :class:`~trialscreen.worklist.build.Worklist`;
tests/test_worklist.py holds the two equal.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import polars as pl

from trialscreen.worklist.build import (
    ENTRY_VALUES,
    READINESS,
    Criterion,
    Entry,
    Worklist,
    _plain,
    criterion_values,
    decision_dict,
)
from trialscreen.worklist.decisions import CLOSING_OUTCOMES, Decision

SNAPSHOT_FILE = "worklist.sqlite"
ENTRY_FIELDS = tuple(f.name for f in fields(Entry) if f.name not in ("criteria", "decision"))
CRITERION_FIELDS = tuple(f.name for f in fields(Criterion) if f.name != "extra")
_FLUSH_ROWS = 20_000  # criterion rows per insert batch
_KEY = ("trial_id", "cohort_id", "patient_key")  # restricted.worklist's rows of one entry


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class SnapshotWriter:
    """Writes a snapshot to a private temporary file beside ``path`` and moves it into place
    only when :meth:`finish` completes: a reader sees yesterday's whole file or today's."""

    def __init__(self, path: Path, extra_columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.extras = list(extra_columns)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._tmp.unlink(missing_ok=True)
        os.close(os.open(self._tmp, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        self.con = sqlite3.connect(self._tmp)
        self.con.execute("pragma journal_mode = off")
        self.con.execute("pragma synchronous = off")
        self.con.execute("create table meta (key text primary key, value text)")
        self.con.execute(
            "create table entries (entry_id integer primary key, "
            + ", ".join(_q(f) for f in ENTRY_FIELDS)
            + ")"
        )
        criterion_columns = [*CRITERION_FIELDS, *(f"x_{x}" for x in self.extras)]
        self.con.execute(
            "create table criteria (entry_id integer, position integer, "
            + ", ".join(_q(c) for c in criterion_columns)
            + ", primary key (entry_id, position)) without rowid"
        )
        self._entry_sql = f"insert into entries values ({', '.join('?' * (len(ENTRY_FIELDS) + 1))})"
        self._criterion_sql = (
            f"insert into criteria values ({', '.join('?' * (len(criterion_columns) + 2))})"
        )
        self._entries: list[tuple[Any, ...]] = []
        self._criteria: list[tuple[Any, ...]] = []
        self.n_entries = 0
        self.n_criteria = 0
        # the key of the entry the last frame ended in, and its criteria so far
        self._open: tuple[Any, ...] | None = None
        self._open_criteria = 0

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self.con is not None:  # not finished: an error, so nothing is moved into place
            self.con.close()
            self._tmp.unlink(missing_ok=True)

    def add(self, entry: Entry) -> None:
        self._open = None
        self.n_entries += 1
        eid = self.n_entries
        self._entries.append((eid, *(getattr(entry, f) for f in ENTRY_FIELDS)))
        for position, c in enumerate(entry.criteria):
            self._criteria.append(
                (
                    eid,
                    position,
                    *(getattr(c, f) for f in CRITERION_FIELDS),
                    *(c.extra.get(x) for x in self.extras),
                )
            )
        if len(self._criteria) >= _FLUSH_ROWS:
            self._flush()

    def add_frame(self, frame: pl.DataFrame) -> None:
        """Rows of restricted.worklist, plain (:func:`~trialscreen.worklist.build.read_frames`)
        and in its order: an entry per run of rows of one (trial, cohort, patient) with its
        first row's values, a criterion per row; the entry the previous frame ended in
        continues when this one begins with it. The same rows :meth:`add` writes for the same
        worklist as entries."""
        if frame.height == 0:
            return
        row = pl.int_range(pl.len())
        begins = pl.any_horizontal([pl.col(k).ne_missing(pl.col(k).shift(1)) for k in _KEY])
        continues = self._open is not None and frame.select(_KEY).row(0) == self._open
        numbered = frame.with_columns(
            pl.when(row == 0).then(not continues).otherwise(begins).alias("_ts_begins")
        ).with_columns(
            (pl.col("_ts_begins").cum_sum().cast(pl.Int64) + self.n_entries).alias("_ts_entry"),
            # rows since the entry's first row (in an earlier frame for the continued entry)
            (
                row
                - pl.when(pl.col("_ts_begins"))
                .then(row)
                .forward_fill()
                .fill_null(-self._open_criteria)
            ).alias("_ts_position"),
        )
        entries = numbered.filter(pl.col("_ts_begins")).select(
            pl.col("_ts_entry"), *(ENTRY_VALUES[f].alias(f) for f in ENTRY_FIELDS)
        )
        values = criterion_values(self.extras)
        criteria = numbered.select(
            pl.col("_ts_entry"),
            pl.col("_ts_position"),
            *(values[f].alias(f) for f in CRITERION_FIELDS),
            *(values[x].alias(f"x_{x}") for x in self.extras),
        )
        self._entries.extend(entries.rows())
        self._criteria.extend(criteria.rows())
        self.n_entries += entries.height
        last = numbered.select(*_KEY, "_ts_position").row(-1)
        self._open, self._open_criteria = last[:-1], last[-1] + 1
        if len(self._criteria) >= _FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        self.con.executemany(self._entry_sql, self._entries)
        self.con.executemany(self._criterion_sql, self._criteria)
        self.n_criteria += len(self._criteria)
        self._entries, self._criteria = [], []

    def finish(self, meta: Mapping[str, Any]) -> None:
        self._flush()
        self.con.executemany(
            "insert into meta values (?, ?)",
            [(k, json.dumps(v, default=_plain)) for k, v in meta.items()]
            + [("extra_columns", json.dumps(self.extras))],
        )
        self.con.execute("create index entries_patient on entries (trial_id, cohort_id, mrn)")
        self.con.commit()
        self.con.close()
        self.con = None  # type: ignore[assignment]
        os.replace(self._tmp, self.path)
        os.chmod(self.path, 0o600)


def write(path: Path, worklist: Worklist) -> None:
    """An in-memory worklist as a snapshot (tests, and small worklists built in Python)."""
    write_entries(path, worklist.entries, worklist.extra_columns, _meta(worklist))


def _meta(source: Any) -> dict[str, Any]:
    return {
        "run_id": source.run_id,
        "screening_date": source.screening_date,
        "built_at": source.built_at,
        "opted_out": source.opted_out,
        "opt_out_source": source.opt_out_source,
    }


class Snapshot:
    """A snapshot opened read-only. :meth:`apply` the current decisions, then read the
    cohorts' entries in the page's order with :meth:`ordered`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no worklist snapshot at {self.path}")
        self.con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        meta = {k: json.loads(v) for k, v in self.con.execute("select key, value from meta")}
        self.run_id: str = meta["run_id"]
        self.screening_date: str | None = meta["screening_date"]
        self.built_at: str = meta["built_at"]
        self.opted_out: dict[str, int] = meta["opted_out"]
        self.opt_out_source: str = meta["opt_out_source"]
        self.extra_columns: list[str] = meta["extra_columns"]
        self._decisions: dict[tuple[str, str, str], dict[str, Any]] = {}

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def apply(self, decisions: Mapping[tuple[str, str, str], Decision]) -> Snapshot:
        """The current decision of each patient, shown and used for the order."""
        self._decisions = {k: decision_dict(d) for k, d in decisions.items()}
        return self

    def cohorts(self) -> list[tuple[str, str]]:
        keys = {
            tuple(r) for r in self.con.execute("select distinct trial_id, cohort_id from entries")
        }
        keys |= {tuple(k.split("/", 1)) for k in self.opted_out}
        return sorted(keys)

    def _entry(self, row: Sequence[Any]) -> Entry:
        entry = Entry(**dict(zip(ENTRY_FIELDS, row, strict=True)))
        entry.is_new_in_marts = bool(entry.is_new_in_marts)
        entry.is_no_longer_eligible = bool(entry.is_no_longer_eligible)
        entry.decision = self._decisions.get((entry.trial_id, entry.cohort_id, entry.mrn))
        return entry

    def _criteria(self, entry_id: int) -> list[Criterion]:
        rows = self.con.execute(
            "select * from criteria where entry_id = ? order by position", [entry_id]
        ).fetchall()
        n = len(CRITERION_FIELDS)
        return [
            Criterion(
                **dict(zip(CRITERION_FIELDS, r[2 : 2 + n], strict=True)),
                extra=dict(zip(self.extra_columns, r[2 + n :], strict=True)),
            )
            for r in rows
        ]

    def ordered(
        self, trial_id: str, cohort_id: str, criteria_limit: int | None = None
    ) -> Iterator[Entry]:
        """The cohort's entries in the page's order (:meth:`Entry.sort_key`), each with its
        decision; the first ``criteria_limit`` (all when None) with their criteria, the rest
        without (what the page's counts need)."""
        decided = [
            (t, c, m, d.get("candidate_status"), int(d.get("outcome") in CLOSING_OUTCOMES))
            for (t, c, m), d in self._decisions.items()
            if (t, c) == (trial_id, cohort_id)
        ]
        self.con.execute("drop table if exists temp.decided")
        self.con.execute("drop table if exists temp.readiness")
        self.con.execute(
            "create temp table decided (mrn text primary key, candidate_status text, closing int)"
        )
        self.con.executemany(
            "insert or replace into temp.decided values (?, ?, ?)",
            [(m, s, closing) for _, _, m, s, closing in decided],
        )
        self.con.execute("create temp table readiness (status text primary key, rank int)")
        self.con.executemany("insert into temp.readiness values (?, ?)", READINESS.items())
        cursor = self.con.execute(
            "select e.entry_id, "
            + ", ".join(f"e.{_q(f)}" for f in ENTRY_FIELDS)
            + " from entries e left join temp.decided d on d.mrn = e.mrn "
            "left join temp.readiness r on r.status = e.candidate_status "
            "where e.trial_id = ? and e.cohort_id = ? order by e.is_no_longer_eligible, "
            "coalesce(d.closing and d.candidate_status = e.candidate_status, 0), "
            "coalesce(r.rank, 3), e.n_unknown, "
            "coalesce(nullif(e.rescreen_by, ''), '9999-12-31'), e.mrn, e.entry_id",
            [trial_id, cohort_id],
        )
        for n, row in enumerate(cursor):
            entry = self._entry(row[1:])
            if criteria_limit is None or n < criteria_limit:
                entry.criteria = self._criteria(row[0])
            yield entry

    def find(self, trial_id: str, cohort_id: str, mrn: str) -> Entry | None:
        row = self.con.execute(
            "select "
            + ", ".join(_q(f) for f in ENTRY_FIELDS)
            + " from entries where trial_id = ? and cohort_id = ? and mrn = ?",
            [trial_id, cohort_id, mrn],
        ).fetchone()
        return None if row is None else self._entry(row)

    def rows(self, trial_id: str | None = None) -> int:
        """Criterion rows of one trial's entries (all trials when None)."""
        return int(
            self.con.execute(
                "select count(*) from criteria c inner join entries e using (entry_id) "
                "where ? is null or e.trial_id = ?",
                [trial_id, trial_id],
            ).fetchone()[0]
        )

    def load(self) -> Worklist:
        """The whole snapshot in memory, in the order it was written (tests, small lists)."""
        entries = []
        for row in self.con.execute(
            "select entry_id, " + ", ".join(_q(f) for f in ENTRY_FIELDS) + " from entries "
            "order by entry_id"
        ).fetchall():
            entry = self._entry(row[1:])
            entry.criteria = self._criteria(row[0])
            entries.append(entry)
        worklist = Worklist(
            run_id=self.run_id,
            screening_date=self.screening_date,
            built_at=self.built_at,
            entries=entries,
            opted_out=dict(self.opted_out),
            opt_out_source=self.opt_out_source,
            extra_columns=list(self.extra_columns),
        )
        return worklist


def write_entries(
    path: Path, entries: Iterable[Entry], extra_columns: Sequence[str], meta: Mapping[str, Any]
) -> tuple[int, int]:
    """Stream ``entries`` into a snapshot at ``path``; returns (entries, criterion rows)."""
    with SnapshotWriter(path, extra_columns) as writer:
        for entry in entries:
            writer.add(entry)
        writer.finish(meta)
        return writer.n_entries, writer.n_criteria


def write_frames(
    path: Path,
    frames: Iterable[pl.DataFrame],
    extra_columns: Sequence[str],
    meta: Mapping[str, Any],
) -> tuple[int, int]:
    """Stream restricted.worklist's plain frames (:func:`~trialscreen.worklist.build.
    read_frames`) into a snapshot at ``path``; returns (entries, criterion rows)."""
    with SnapshotWriter(path, extra_columns) as writer:
        for frame in frames:
            writer.add_frame(frame)
        writer.finish(meta)
        return writer.n_entries, writer.n_criteria
