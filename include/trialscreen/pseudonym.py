"""Pseudonymized patient keys (docs/specification.md#patient-key).

``patient_key`` = first 16 hex characters of HMAC-SHA256(key, MRN), both as UTF-8 text. The
key comes from ``TRIALSCREEN_PSEUDONYM_KEY`` and never enters the warehouse, the repo or a
log: the warehouse holds only the resulting keys (``restricted.patient_keys``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

KEY_ENV = "TRIALSCREEN_PSEUDONYM_KEY"


class MissingPseudonymKey(RuntimeError):
    pass


def pseudonym_key(env: dict[str, str] | None = None) -> str:
    value = (env if env is not None else os.environ).get(KEY_ENV, "")
    if not value:
        raise MissingPseudonymKey(
            f"{KEY_ENV} is not set: export a secret (e.g. `openssl rand -hex 32`) before a run"
        )
    return value


def new_key() -> str:
    """A fresh random key, for the demo and tests only."""
    return secrets.token_hex(32)


def patient_key(mrn: str, key: str) -> str:
    return hmac.new(key.encode("utf-8"), mrn.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
