"""The incremental-nights tests of test_incremental_nights.py on PostgreSQL: the same tests
and nights, in a module of their own so that ``--dist loadfile`` runs the two engines on the
suite's two workers side by side instead of one after the other (~10 CPU-minutes each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_incremental_nights import (  # the tests run here again, on PostgreSQL
    drops,
    engine_nights,
    test_a_blocked_gate_on_an_incremental_night_keeps_yesterday_and_the_next_night_recovers,
    test_a_new_fingerprint_or_full_refresh_rebuilds_whole,
    test_every_build_records_where_its_time_went,
    test_incremental_nights_publish_what_full_refresh_nights_publish,
    test_the_late_hl7_correction_and_the_entered_in_error_resolve,
    test_the_nights_were_incremental_where_they_could_be,
)

pytestmark = pytest.mark.postgres

__all__ = [
    "drops",
    "test_a_blocked_gate_on_an_incremental_night_keeps_yesterday_and_the_next_night_recovers",
    "test_a_new_fingerprint_or_full_refresh_rebuilds_whole",
    "test_every_build_records_where_its_time_went",
    "test_incremental_nights_publish_what_full_refresh_nights_publish",
    "test_the_late_hl7_correction_and_the_entered_in_error_resolve",
    "test_the_nights_were_incremental_where_they_could_be",
]


@pytest.fixture(scope="module")
def nights(
    request: pytest.FixtureRequest, drops: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    return engine_nights("postgres", request, drops, tmp_path_factory.mktemp("nights"))
