"""Fixtures of the end-to-end modules: ``first_night``, the night several modules start from
(tests/e2e/first_night.py)."""

from __future__ import annotations

import shutil

import pytest

from tests.e2e.first_night import FirstNight, exclusive, prepare


@pytest.fixture(scope="session")
def first_night(tmp_path_factory: pytest.TempPathFactory) -> FirstNight:
    """The shared first night (module docstring): its drop and project, the night on first
    copy. Shared by the run's workers (their folders are ``popen-gw<n>`` in one root)."""
    base = tmp_path_factory.getbasetemp()
    if base.name.startswith("popen-gw"):
        base = base.parent
    root = base / "shared_first_night"
    with exclusive(base / "shared_first_night.lock"):
        if not (root / "prepared").is_file():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            prepare(root)
            (root / "prepared").touch()
    return FirstNight(root)
