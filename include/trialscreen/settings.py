"""Deployment settings read from the environment, one function per setting.

The hospital time zone (``TRIALSCREEN_TIMEZONE``, an IANA name, default ``UTC``) decides the
screening date when none is given (today in that zone; the DAG takes its logical date in
it), how a timestamp sent without an offset is placed in time, and every local date the
clinical windows and reasons use (docs/decisions.md, "Local time").

Where a value comes from: the environment variable, else the configuration file
(``[hospital] timezone`` in ``trialscreen.toml``), else the default. The CLI applies the file
to the environment at start (``trialscreen.config.setup``), so this module reads the
environment only; docs/configuration.md#precedence.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TIMEZONE_ENV = "TRIALSCREEN_TIMEZONE"
DEFAULT_TIMEZONE = "UTC"


# a DuckDB memory size, as the settings that cap DuckDB take it (TRIALSCREEN_DUCKDB_MEMORY,
# TRIALSCREEN_GATE_MEMORY_LIMIT and the configuration file's checks)
_DUCKDB_SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)", re.IGNORECASE)


def is_duckdb_size(value: str) -> bool:
    """Whether ``value`` (already stripped) is a size such as 512MB or 4GB."""
    return _DUCKDB_SIZE.fullmatch(value) is not None


class SettingError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the setting."""


def hospital_timezone(value: str | None = None) -> str:
    """The hospital's IANA time zone name, validated (``value`` overrides the environment)."""
    raw = value if value is not None else os.environ.get(TIMEZONE_ENV, "")
    name = raw.strip() or DEFAULT_TIMEZONE
    # an IANA name is letters, digits and _+-/ only: it is spelled into SQL by dbt
    if not all(c.isalnum() or c in "_+-/" for c in name) or name.startswith("/"):
        raise SettingError(f"{TIMEZONE_ENV}: not an IANA time zone name (length {len(name)})")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingError(
            f"{TIMEZONE_ENV}: unknown time zone {name!r} (expected an IANA name such as "
            "'America/New_York' or 'UTC')"
        ) from exc
    return name


def hospital_zone(value: str | None = None) -> ZoneInfo:
    return ZoneInfo(hospital_timezone(value))


def today_in_hospital_zone(value: str | None = None) -> date:
    """Today's date in the hospital time zone (the default screening date)."""
    return datetime.now(hospital_zone(value)).date()
