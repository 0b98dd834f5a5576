"""Run identifiers: sortable, unique, free of PHI (``20261124T020000Z-3f9a1c``).

A run id is also accepted from outside (the Airflow run id, ``scheduled__2026-11-24T02:00:00
+00:00``, or the Python API); :func:`check_run_id` refuses anything but letters, digits and
``_ . : + -`` before it is stored or used, so it can never change the meaning of a query.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")


def new_run_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """``run_id`` if it is 1-128 characters of ``[A-Za-z0-9_.:+-]``, else ``ValueError``."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.match(run_id):
        raise ValueError(
            "run_id: use 1-128 letters, digits and _ . : + - (got "
            f"{len(str(run_id))} characters including others)"
        )
    return run_id
