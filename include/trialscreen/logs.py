"""Structured, quiet-by-default logging.

Lines are JSON objects (``{"ts":..., "level":..., "logger":..., "msg":..., <extra fields>}``)
on stderr. The default level is WARNING, ``-v`` gives INFO, ``-vv`` DEBUG. Messages carry
counts, file names, run ids and feed names — never an MRN, a name or a birth date; the test
suite runs a whole pipeline at DEBUG and searches every line for the population's PHI.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(verbosity: int = 0, stream: object = None) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("trialscreen")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
