"""Alerts: what an alert may carry (counts and ids, never PHI), delivery to a real webhook
endpoint and a real SMTP listener on localhost, and a delivery failure that never raises."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Iterator
from datetime import date
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from trialscreen import notify
from trialscreen.notify import Alert, send

RUN = "scheduled__2026-11-24T02:00:00+00:00"


def _alert(**changes: object) -> Alert:
    fields: dict[str, object] = {
        "kind": "gate_blocked",
        "run_id": RUN,
        "trials": ("axiom",),
        "summary": "quality gate blocked publication: 3 blocking expectations failed",
        "counts": {"blocking_failures": 3, "warnings": 1},
    }
    fields.update(changes)
    return Alert(**fields)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (notify.WEBHOOK_URL_ENV, notify.SMTP_HOST_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("summary", "patient MRN0001234 failed"),  # an MRN
        ("summary", "born 1950-03-02"),  # a date
        ("summary", "two\nlines"),
        ("summary", "Smith, 'John' <john@example.org>"),  # quotes, @, <>
        ("summary", "x" * 300),
        ("summary", ""),
        ("kind", "panic"),
        ("run_id", "run id with spaces"),
        ("trials", ("axiom", "../etc/passwd")),
        ("trials", ["axiom"]),  # a list, not a tuple
        ("counts", {"MRN0001234": 1}),
        ("counts", {"eligible": "12"}),
        ("counts", {"eligible": True}),
    ],
)
def test_alert_refuses_free_text_and_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"Alert.{field}") as info:
        _alert(**{field: value})
    if isinstance(value, str) and len(value) > 3:
        assert value not in str(info.value)  # the refused value is not echoed


def test_alert_allows_counts_and_its_own_ids() -> None:
    alert = _alert(summary=f"run {RUN} for axiom: eligible=12, 3 failed (25%)")
    assert alert.payload()["counts"] == {"blocking_failures": 3, "warnings": 1}
    assert alert.text.startswith(f"TrialScreen gate_blocked run={RUN} trials=axiom: ")
    assert Alert("missed", None, (), "2 nights without a run").run_id is None


def test_no_destination_logs_and_returns_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trialscreen.notify"):
        assert send(_alert()) == []
    assert "no destination configured" in caplog.text


class _Webhook:
    def __init__(self, status: int = 204) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers["Content-Length"])
                received.append((self.headers["Content-Type"], json.loads(self.rfile.read(length))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Webhook]:
    endpoint = _Webhook()
    monkeypatch.setenv(notify.WEBHOOK_URL_ENV, endpoint.url)
    yield endpoint
    endpoint.close()


def test_webhook_gets_one_json_post_with_counts_and_ids(webhook: _Webhook) -> None:
    assert send(_alert()) == ["webhook"]
    [(content_type, body)] = webhook.received
    assert content_type == "application/json"
    assert set(body) == {
        "source",
        "text",
        "kind",
        "run_id",
        "trials",
        "summary",
        "counts",
        "sent_at",
    }
    assert body["kind"] == "gate_blocked" and body["run_id"] == RUN
    assert body["trials"] == ["axiom"]
    assert body["counts"] == {"blocking_failures": 3, "warnings": 1}


@pytest.mark.parametrize("status", [500, None])
def test_a_failed_delivery_is_logged_without_the_url_and_never_raises(
    status: int | None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = _Webhook(status or 204)
    url = endpoint.url
    if status is None:  # nobody listens any more: connection refused
        endpoint.close()
    monkeypatch.setenv(notify.WEBHOOK_URL_ENV, url)
    monkeypatch.setenv(notify.WEBHOOK_TIMEOUT_ENV, "5")
    try:
        with caplog.at_level(logging.INFO, logger="trialscreen.notify"):
            assert send(_alert()) == []
    finally:
        if status is not None:
            endpoint.close()
    failed = [r for r in caplog.records if r.getMessage() == "alert delivery failed"]
    assert len(failed) == 1 and failed[0].destination == "webhook"  # type: ignore[attr-defined]
    assert "s3cret" not in caplog.text and "127.0.0.1" not in caplog.text


class _Smtp(socketserver.ThreadingTCPServer):
    """Just enough SMTP (RFC 5321: EHLO, MAIL, RCPT, DATA, QUIT) to receive one message."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                def reply(line: str) -> None:
                    self.wfile.write(line.encode() + b"\r\n")

                reply("220 localhost test SMTP")
                sender, recipients = "", []
                while line := self.rfile.readline():
                    verb = line.decode().strip()
                    upper = verb.upper()
                    if upper.startswith(("EHLO", "HELO")):
                        reply("250 localhost")
                    elif upper.startswith("MAIL FROM:"):
                        sender = verb[10:].strip("<> ")
                        reply("250 OK")
                    elif upper.startswith("RCPT TO:"):
                        recipients.append(verb[8:].strip("<> "))
                        reply("250 OK")
                    elif upper == "DATA":
                        reply("354 end with .")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        server.messages.append((sender, recipients, data))
                        reply("250 queued")
                    elif upper == "QUIT":
                        reply("221 bye")
                        return
                    else:
                        reply("250 OK")

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_smtp_sends_one_mail_with_the_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    smtp = _Smtp()
    try:
        monkeypatch.setenv(notify.SMTP_HOST_ENV, "127.0.0.1")
        monkeypatch.setenv(notify.SMTP_PORT_ENV, str(smtp.server_address[1]))
        monkeypatch.setenv(notify.SMTP_SECURITY_ENV, "none")
        monkeypatch.setenv(notify.SMTP_FROM_ENV, "trialscreen@hospital.example")
        monkeypatch.setenv(
            notify.SMTP_TO_ENV, "data-team@hospital.example, oncall@hospital.example"
        )
        assert send(_alert()) == ["smtp"]
    finally:
        smtp.shutdown()
        smtp.server_close()
    [(sender, recipients, data)] = smtp.messages
    assert sender == "trialscreen@hospital.example"
    assert recipients == ["data-team@hospital.example", "oncall@hospital.example"]
    mail = message_from_bytes(data)
    assert mail["Subject"].startswith("TrialScreen gate_blocked")
    assert json.loads(mail.get_payload(decode=True))["counts"]["blocking_failures"] == 3


def test_smtp_without_recipients_fails_alone(
    monkeypatch: pytest.MonkeyPatch, webhook: _Webhook
) -> None:
    monkeypatch.setenv(notify.SMTP_HOST_ENV, "127.0.0.1")  # no FROM/TO: SMTP fails, webhook not
    assert send(_alert()) == ["webhook"]


def test_status_counts_sum_per_status() -> None:
    counts = {"axiom/a/ready_for_review": 2, "axiom/b/ready_for_review": 1, "axiom/a/excluded": 5}
    assert notify.status_counts(counts) == {"ready_for_review": 3, "excluded": 5}


def test_missed_nights_are_scheduled_dates_without_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trialscreen import pseudonym
    from trialscreen.pipeline import start_run

    monkeypatch.setenv(pseudonym.KEY_ENV, "notify-test-key")
    warehouse = str(tmp_path / "wh.duckdb")
    nights = [date(2026, 11, d) for d in range(15, 21)]  # the nights before the 21st
    assert notify.missed_nights(warehouse, nights) == []  # no runs table: nothing missed
    for day in (17, 18, 21):
        start_run(warehouse, date(2026, 11, day), ["axiom"], f"night-{day}")
    # before the first run nothing counts; the 19th and 20th had no run at all
    assert notify.missed_nights(warehouse, nights) == [date(2026, 11, 19), date(2026, 11, 20)]
