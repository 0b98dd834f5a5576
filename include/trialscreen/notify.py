"""Alerts: a run failed, the quality gate blocked publication, a run published, a night was missed.

One :class:`Alert` is sent to every destination the deployment configured in the environment
(docs/decisions.md, "Alerts"):

* a generic webhook: ``TRIALSCREEN_ALERT_WEBHOOK_URL`` (http or https), a JSON ``POST``
  (``TRIALSCREEN_ALERT_WEBHOOK_TIMEOUT`` seconds, default 10). The body carries ``text`` (one
  line, what Slack- and Mattermost-style incoming webhooks display) and the structured fields;
* SMTP: ``TRIALSCREEN_ALERT_SMTP_HOST``, ``_PORT`` (default 587), ``_FROM``, ``_TO`` (comma
  separated), ``_USER`` / ``_PASSWORD`` (optional), ``_SECURITY`` (``starttls``, ``ssl`` or
  ``none``; default ``ssl`` on port 465, else ``starttls``).

No destination configured: the alert is logged at INFO and :func:`send` returns ``[]``. A
destination that fails is logged (its kind and the error's type, never the URL, which often
holds a token, nor the alert's content) and :func:`send` carries on: alerting never fails the
pipeline.

An alert carries counts, run ids and trial ids only, never an MRN, a name or a birth date.
:class:`Alert` refuses anything else: ``summary`` is one short line whose tokens with a digit
are counts, ``key=count`` pairs, the run id or a trial id (so an MRN or a date cannot ride in
it), and ``counts`` maps identifier keys to integers. A refused alert raises ``ValueError``
naming the field, not the value, at construction, before anything is sent.
"""

from __future__ import annotations

import json
import logging
import os
import re
import smtplib
import ssl
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from urllib.parse import urlsplit

from trialscreen.run_ids import RUN_ID_PATTERN

log = logging.getLogger("trialscreen.notify")

KINDS = ("failed", "gate_blocked", "published", "missed")

WEBHOOK_URL_ENV = "TRIALSCREEN_ALERT_WEBHOOK_URL"
WEBHOOK_TIMEOUT_ENV = "TRIALSCREEN_ALERT_WEBHOOK_TIMEOUT"
SMTP_HOST_ENV = "TRIALSCREEN_ALERT_SMTP_HOST"
SMTP_PORT_ENV = "TRIALSCREEN_ALERT_SMTP_PORT"
SMTP_FROM_ENV = "TRIALSCREEN_ALERT_SMTP_FROM"
SMTP_TO_ENV = "TRIALSCREEN_ALERT_SMTP_TO"
SMTP_USER_ENV = "TRIALSCREEN_ALERT_SMTP_USER"
SMTP_PASSWORD_ENV = "TRIALSCREEN_ALERT_SMTP_PASSWORD"  # noqa: S105 - the variable's name
SMTP_SECURITY_ENV = "TRIALSCREEN_ALERT_SMTP_SECURITY"
SMTP_TIMEOUT_ENV = "TRIALSCREEN_ALERT_SMTP_TIMEOUT"

DEFAULT_TIMEOUT = 10.0
MAX_SUMMARY = 240

_TRIAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_COUNT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# summary: one line of plain words, counts and ids; no quotes, @, #, / or newlines
_SUMMARY_CHARS = re.compile(r"^[A-Za-z0-9 _.,:;=()+%-]*$")
_COUNT_TOKEN = re.compile(r"^(?:[a-z][a-z0-9_]{0,63}=)?\d{1,12}%?$")


@dataclass(frozen=True)
class Alert:
    """What happened to one run, in counts and ids (see the module docstring for the guard)."""

    kind: str
    run_id: str | None
    trials: tuple[str, ...]
    summary: str
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Alert.kind: one of {', '.join(KINDS)}")
        if self.run_id is not None and (
            not isinstance(self.run_id, str) or not RUN_ID_PATTERN.match(self.run_id)
        ):
            raise ValueError("Alert.run_id: a run id (1-128 letters, digits and _ . : + -)")
        if not isinstance(self.trials, tuple) or not all(
            isinstance(t, str) and _TRIAL_ID.match(t) for t in self.trials
        ):
            raise ValueError("Alert.trials: a tuple of trial ids (letters, digits, _ and -)")
        if not isinstance(self.counts, dict) or not all(
            isinstance(k, str)
            and _COUNT_KEY.match(k)
            and isinstance(v, int)
            and not isinstance(v, bool)
            for k, v in self.counts.items()
        ):
            raise ValueError("Alert.counts: identifier keys (a-z, 0-9, _) and integer values")
        _check_summary(self.summary, self.run_id, self.trials)

    @property
    def text(self) -> str:
        """The one line a chat channel or a mail subject shows."""
        trials = ",".join(self.trials) or "-"
        return f"TrialScreen {self.kind} run={self.run_id or '-'} trials={trials}: {self.summary}"

    def payload(self) -> dict[str, object]:
        """The JSON body: these fields and no others."""
        return {
            "source": "trialscreen",
            "text": self.text,
            "kind": self.kind,
            "run_id": self.run_id,
            "trials": list(self.trials),
            "summary": self.summary,
            "counts": dict(self.counts),
            "sent_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def _check_summary(summary: str, run_id: str | None, trials: tuple[str, ...]) -> None:
    if not isinstance(summary, str) or not summary.strip():
        raise ValueError("Alert.summary: one line of counts and ids (it is empty)")
    if len(summary) > MAX_SUMMARY or not _SUMMARY_CHARS.match(summary):
        raise ValueError(
            f"Alert.summary: one line of at most {MAX_SUMMARY} characters of letters, digits, "
            "spaces and _ . , : ; = ( ) + % - (free text is refused: it may carry PHI)"
        )
    allowed = set(trials) | ({run_id} if run_id else set())
    for raw in summary.split():
        token = raw.strip(".,;:()")
        if not token or not any(c.isdigit() for c in token):
            continue
        value = token.split("=", 1)[1] if "=" in token else token
        if _COUNT_TOKEN.match(token) or value in allowed or token in allowed:
            continue
        raise ValueError(
            "Alert.summary: a token with digits that is neither a count, a key=count pair, "
            "the run id nor a trial id (an MRN or a date may not appear in an alert)"
        )


def send(alert: Alert) -> list[str]:
    """Deliver ``alert`` to every configured destination; the names of those that took it.

    Never raises: a destination that fails is logged and skipped.
    """
    destinations: list[tuple[str, object]] = []
    if os.environ.get(WEBHOOK_URL_ENV, "").strip():
        destinations.append(("webhook", _send_webhook))
    if os.environ.get(SMTP_HOST_ENV, "").strip():
        destinations.append(("smtp", _send_smtp))
    if not destinations:
        log.info(
            "alert not sent: no destination configured",
            extra={"alert_kind": alert.kind, "run_id": alert.run_id, "counts": alert.counts},
        )
        return []
    delivered: list[str] = []
    for name, deliver in destinations:
        try:
            deliver(alert)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - alerting must not fail the pipeline
            # the error's type only: its text may hold the URL (a token) or the server's reply
            log.warning(
                "alert delivery failed",
                extra={
                    "destination": name,
                    "alert_kind": alert.kind,
                    "run_id": alert.run_id,
                    "error": type(exc).__name__,
                },
            )
        else:
            delivered.append(name)
            log.info(
                "alert delivered",
                extra={"destination": name, "alert_kind": alert.kind, "run_id": alert.run_id},
            )
    return delivered


def _timeout(env: str) -> float:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    value = float(raw)
    if not 0 < value <= 300:
        raise ValueError(f"{env}: seconds between 0 and 300")
    return value


def _send_webhook(alert: Alert) -> None:
    url = os.environ[WEBHOOK_URL_ENV].strip()
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"{WEBHOOK_URL_ENV}: an http:// or https:// URL")
    body = json.dumps(alert.payload()).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "trialscreen-alerts"},
    )
    with urllib.request.urlopen(request, timeout=_timeout(WEBHOOK_TIMEOUT_ENV)) as response:  # noqa: S310
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")


def _send_smtp(alert: Alert) -> None:
    host = os.environ[SMTP_HOST_ENV].strip()
    port = int(os.environ.get(SMTP_PORT_ENV, "").strip() or 587)
    sender = os.environ.get(SMTP_FROM_ENV, "").strip()
    recipients = [a.strip() for a in os.environ.get(SMTP_TO_ENV, "").split(",") if a.strip()]
    if not sender or not recipients:
        raise ValueError(f"{SMTP_FROM_ENV} and {SMTP_TO_ENV} are needed with {SMTP_HOST_ENV}")
    security = os.environ.get(SMTP_SECURITY_ENV, "").strip().lower() or (
        "ssl" if port == 465 else "starttls"
    )
    if security not in ("starttls", "ssl", "none"):
        raise ValueError(f"{SMTP_SECURITY_ENV}: starttls, ssl or none")
    user = os.environ.get(SMTP_USER_ENV, "")
    password = os.environ.get(SMTP_PASSWORD_ENV, "")

    message = EmailMessage()
    message["Subject"] = alert.text[:200]
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(json.dumps(alert.payload(), indent=2) + "\n")

    timeout = _timeout(SMTP_TIMEOUT_ENV)
    context = ssl.create_default_context()
    client: smtplib.SMTP
    if security == "ssl":
        client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
    else:
        client = smtplib.SMTP(host, port, timeout=timeout)
    with client:
        if security == "starttls":
            client.starttls(context=context)
        if user:
            client.login(user, password)
        client.send_message(message)


# --- what the DAG and the CLI alert about ----------------------------------------------


def trial_ids(trials: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The trial ids of ``trials`` (ids or YAML paths); one that does not load is left out
    (an alert about a failed run must not fail on the definition that failed it)."""
    from trialscreen.trial import load_trial

    ids: list[str] = []
    for trial in trials:
        try:
            ids.append(load_trial(trial).trial_id)
        except Exception:  # noqa: BLE001, S112 - the alert goes out with the others
            continue
    return tuple(ids)


def status_counts(candidates: dict[str, int]) -> dict[str, int]:
    """``{"trial/cohort/status": n}`` (``pipeline.candidate_counts``) summed per status."""
    totals: dict[str, int] = {}
    for key, n in candidates.items():
        status = key.rsplit("/", 1)[-1].lower()
        if _COUNT_KEY.match(status):
            totals[status] = totals.get(status, 0) + int(n)
    return totals


def missed_nights(warehouse: str, scheduled: list[date]) -> list[date]:
    """The scheduled screening dates that have no run at all in ``audit.pipeline_runs``.

    Only dates after the first run the warehouse ever recorded count (a new deployment has
    missed nothing), and only those before the latest of ``scheduled``'s own run are asked
    about by the caller. A warehouse without the runs table has missed nothing.
    """
    from trialscreen.pipeline import RUNS_TABLE
    from trialscreen.warehouse import Warehouse

    with Warehouse.connect(warehouse) as wh:
        if not wh.table_exists(RUNS_TABLE):
            return []
        rows = wh.query(f"select distinct screening_date from {RUNS_TABLE}")
    ran = {r[0] for r in rows if r[0] is not None}
    if not ran:
        return []
    first = min(ran)
    return sorted(d for d in set(scheduled) if d > first and d not in ran)
