"""Feed parsers. Each turns one file into a ``ParsedFile``; none touches the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from trialscreen import schema


@dataclass
class ParsedFile:
    """What one feed file yielded.

    ``tables`` maps an entity (``schema.ENTITIES``) to a frame conforming to
    ``schema.RAW_COLUMNS[entity]``; ``quarantined`` conforms to ``schema.QUARANTINE_COLUMNS``.
    ``records_in`` counts every record the parser read (a resource of a used type, an HL7
    OBX or PID, a CSV row): ``records_in == rows in tables + rows in quarantined``.
    ``ignored`` counts records of types the pipeline does not use (e.g. Encounter), by type.
    A file that cannot be read at all yields one quarantine row with ``scope == "file"``.
    """

    feed: str
    source_file: str
    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    quarantined: pl.DataFrame = field(default_factory=lambda: schema.quarantine_frame([]))
    records_in: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    # every coding of the conditions and medications in ``tables`` (``schema.CODING_COLUMNS``):
    # child rows of those records, not records themselves (not in ``records_in``/``rows_out``)
    codings: pl.DataFrame = field(default_factory=lambda: schema.empty_frame(schema.CODINGS))

    @property
    def rows_out(self) -> int:
        return sum(f.height for f in self.tables.values())
