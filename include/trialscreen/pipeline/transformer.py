"""Which role builds, checks and publishes: :func:`transform_url`, the transformer's URL
when the deployment names one (``$TRIALSCREEN_TRANSFORM_URL``, docs/deployment.md), else
the warehouse's own URL. dbt, the quality gate, publish and the reports connect with it.
"""

from __future__ import annotations

import os
from pathlib import Path

from trialscreen.warehouse import WarehouseUrl

TRANSFORM_URL_ENV = "TRIALSCREEN_TRANSFORM_URL"


def transform_url(warehouse: str | Path) -> str:
    """The URL of dbt, the quality gate, publish and the reports: ``$TRIALSCREEN_TRANSFORM_URL``
    when the warehouse is PostgreSQL and that variable names a role on the same database (the
    compose deployment: the loader lands, the transformer builds and publishes), else the
    warehouse URL itself."""
    url = WarehouseUrl.parse(warehouse)
    override = os.environ.get(TRANSFORM_URL_ENV, "").strip()
    if url.engine != "postgres" or not override:
        return str(warehouse)
    other = WarehouseUrl.parse(override)
    if other.engine != "postgres" or _database(other) != _database(url):
        raise ValueError(
            f"{TRANSFORM_URL_ENV} ({other.redacted()}) is not the warehouse's database "
            f"({url.redacted()}): the transformer must build where the loader lands"
        )
    return override


def _database(url: WarehouseUrl) -> tuple[str, int, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url.url or "")
    return (parts.hostname or "", parts.port or 5432, parts.path.strip("/"))
