"""The hospital time zone setting (trialscreen.settings): one place, validated, and reaching
the CLI's default screening date, dbt's vars and the DAG's screening date."""

from __future__ import annotations

from datetime import UTC, date, datetime
from unittest import mock

import pytest

from trialscreen import settings


def test_default_is_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(settings.TIMEZONE_ENV, raising=False)
    assert settings.hospital_timezone() == "UTC"
    monkeypatch.setenv(settings.TIMEZONE_ENV, "  ")
    assert settings.hospital_timezone() == "UTC"


def test_iana_name_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.TIMEZONE_ENV, "America/New_York")
    assert settings.hospital_timezone() == "America/New_York"


@pytest.mark.parametrize("bad", ["Mars/Olympus", "UTC'; drop table x; --", "../etc/passwd"])
def test_bad_zone_names_the_setting(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv(settings.TIMEZONE_ENV, bad)
    with pytest.raises(settings.SettingError, match=settings.TIMEZONE_ENV):
        settings.hospital_timezone()


def test_today_is_taken_in_the_hospital_zone() -> None:
    # 2026-11-20 23:30 UTC is already 2026-11-21 in Kiritimati (UTC+14), 11-20 in New York
    fixed = datetime(2026, 11, 20, 23, 30, tzinfo=UTC)

    class _Clock(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return fixed.astimezone(tz)

    with mock.patch.object(settings, "datetime", _Clock):
        assert settings.today_in_hospital_zone("Pacific/Kiritimati") == date(2026, 11, 21)
        assert settings.today_in_hospital_zone("America/New_York") == date(2026, 11, 20)


def test_dbt_vars_carry_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from trialscreen.pipeline import dbt_vars
    from trialscreen.transform import _run_vars

    monkeypatch.setenv(settings.TIMEZONE_ENV, "Europe/Paris")
    assert dbt_vars(date(2026, 11, 20), "r1")["timezone"] == "Europe/Paris"
    assert _run_vars(date(2026, 11, 20), "r1", None)["timezone"] == "Europe/Paris"


def test_cli_default_screening_date_is_hospital_today(monkeypatch: pytest.MonkeyPatch) -> None:
    from trialscreen import cli

    args = cli.build_parser().parse_args(["run", "--input", "x"])
    assert args.screening_date is None  # resolved at run time, in the hospital zone
