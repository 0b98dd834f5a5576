"""Input limits for hostile or broken feed files, read from the environment in one place.

A parser holds one (decompressed) file in memory while it reads it (a large FHIR NDJSON or
CSV file, plain or gzipped: one part of it, ``ingest.parse.PART_BYTES``), so these limits are what
bounds the memory of an ingest beside the batch (``ingest.FLUSH_ROWS``). A file over a file
limit is quarantined whole (scope ``file``) without being read further; a record over the
record limit (an NDJSON line, an HL7 message, a CSV row) is quarantined alone and the rest
of the file goes on. Defaults and reasons: docs/decisions.md, "Hostile input: limits and drop
hygiene".

* ``TRIALSCREEN_MAX_FILE_BYTES``: the most bytes one file may hold once decompressed (a
  plain file's size; a gzip is stopped as soon as its output passes it). Default 256 MiB. A
  FHIR NDJSON or CSV file over it, plain or gzipped, is parsed in parts no larger than it
  instead.
* ``TRIALSCREEN_MAX_EXPANDED_BYTES``: the most bytes a gzipped FHIR NDJSON or CSV file parsed in
  parts may expand to (the decompression is streamed, a part at a time, so the file limit
  does not bound it; this does, beside the ratio). Default 16 GiB.
* ``TRIALSCREEN_MAX_EXPANSION_RATIO``: the most a gzip may expand (output bytes per input
  byte read so far), checked once the output passes ``TRIALSCREEN_RATIO_FLOOR_BYTES``
  (default 8 MiB: small files may compress very well and cost nothing). Default 100.
* ``TRIALSCREEN_MAX_RECORD_BYTES``: the most bytes one record may hold. Default 16 MiB.

Each is also a key of the ``[limits]`` table of ``trialscreen.toml`` (``max_file_bytes``, ...).
Precedence: the environment, else the file, else these defaults; the CLI applies the file to
the environment at start (``trialscreen.config.setup``), so :func:`current` reads the
environment only (docs/configuration.md#precedence). ``trialscreen.config`` validates the
file's values with the same rule (a positive whole number).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MiB = 1 << 20

MAX_FILE_BYTES_ENV = "TRIALSCREEN_MAX_FILE_BYTES"
MAX_EXPANSION_RATIO_ENV = "TRIALSCREEN_MAX_EXPANSION_RATIO"
RATIO_FLOOR_BYTES_ENV = "TRIALSCREEN_RATIO_FLOOR_BYTES"
MAX_RECORD_BYTES_ENV = "TRIALSCREEN_MAX_RECORD_BYTES"
MAX_EXPANDED_BYTES_ENV = "TRIALSCREEN_MAX_EXPANDED_BYTES"


class LimitSettingError(ValueError):
    """A limit setting is not a positive integer; the message names the setting."""


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int = 256 * MiB
    max_expansion_ratio: int = 100
    ratio_floor_bytes: int = 8 * MiB
    max_record_bytes: int = 16 * MiB
    max_expanded_bytes: int = 16 * 1024 * MiB


DEFAULTS = Limits()


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise LimitSettingError(f"{name}: expected a positive whole number (length {len(raw)})")
    return int(raw)


def current(env: Mapping[str, str] | None = None) -> Limits:
    """The limits in force: the environment (read at each call, so a test can set it) over
    the defaults."""
    env = os.environ if env is None else env
    return Limits(
        max_file_bytes=_positive_int(env, MAX_FILE_BYTES_ENV, DEFAULTS.max_file_bytes),
        max_expansion_ratio=_positive_int(
            env, MAX_EXPANSION_RATIO_ENV, DEFAULTS.max_expansion_ratio
        ),
        ratio_floor_bytes=_positive_int(env, RATIO_FLOOR_BYTES_ENV, DEFAULTS.ratio_floor_bytes),
        max_record_bytes=_positive_int(env, MAX_RECORD_BYTES_ENV, DEFAULTS.max_record_bytes),
        max_expanded_bytes=_positive_int(env, MAX_EXPANDED_BYTES_ENV, DEFAULTS.max_expanded_bytes),
    )


def record_too_large(kind: str, size: int, limit: int) -> str:
    """The quarantine reason for one record over the record limit (sizes only, no content)."""
    return (
        f"{kind} is {size} bytes, over the per-record limit of {limit} bytes "
        f"({MAX_RECORD_BYTES_ENV})"
    )
