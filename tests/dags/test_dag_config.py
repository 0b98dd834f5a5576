"""The DAG reads trialscreen.toml as the CLI does: the file fills what the environment leaves
unset, the environment wins, and a wrong value fails the DAG's import naming the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = "import trialscreen_nightly as m; print(m.SCHEDULE, m.TIMEZONE)"


def _import_dag(tmp_path: Path, toml: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "trialscreen.toml"
    path.write_text(toml)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRIALSCREEN_")}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO / "dags",
        env={**clean, "TRIALSCREEN_CONFIG": str(path), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_dag_takes_schedule_and_zone_from_the_file_and_the_environment_wins(tmp_path):
    toml = '[hospital]\ntimezone = "Europe/Berlin"\n[schedule]\ncron = "30 1 * * *"\n'
    got = _import_dag(tmp_path, toml)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.strip().splitlines()[-1] == "30 1 * * * Europe/Berlin"

    got = _import_dag(tmp_path, toml, TRIALSCREEN_TIMEZONE="America/Chicago")
    assert got.stdout.strip().splitlines()[-1] == "30 1 * * * America/Chicago"


def test_a_wrong_value_in_the_file_fails_the_import_naming_the_field(tmp_path):
    got = _import_dag(tmp_path, "[hospital]\ntimezone = 5\n")
    assert got.returncode != 0
    assert "[hospital] timezone" in got.stderr
