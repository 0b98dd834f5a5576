"""The command line as an operator meets it (issue 13): help with defaults and an example,
global options after the command, a wrong trial id listing the valid ones, an --input with
no feed files refused (exit 1) unless --allow-empty, one info line for a re-delivered drop.

The exit codes of a real run (0 published, 3 quality gate blocked) and the progress on a
terminal are in tests/e2e/test_cli_exit_codes.py (they need a warehouse build).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from trialscreen import cli, progress
from trialscreen.ingest import scan
from trialscreen.synth import generate
from trialscreen.warehouse import Warehouse

COMMANDS = [
    ["run"],
    ["ingest"],
    ["synth"],
    ["demo"],
    ["manifest"],
    ["roles"],
    ["doctor"],
    ["trials", "list"],
    ["bench"],
]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """cli.main configures the package's logger (level, handler): put it back after."""
    logger = logging.getLogger("trialscreen")
    saved = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.level, logger.handlers[:], logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli_drop")
    generate(patients=6, seed=5, out=root, screening_date=date(2026, 11, 20))
    return root


def _help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_and_an_example(capsys, command: list[str]) -> None:
    text = _help(capsys, command)
    assert "example:\n  " in text
    assert "trialscreen " + " ".join(command) in text.split("example:\n", 1)[1]
    assert "-v, --verbose" in text  # the global options are listed with each command


def test_help_shows_the_defaults(capsys) -> None:
    synth = " ".join(_help(capsys, ["synth"]).split())
    assert "how many patients (default: 1000)" in synth
    assert "(default: 1)" in synth
    run = " ".join(_help(capsys, ["run"]).split())
    assert "(default: today in $TRIALSCREEN_TIMEZONE)" in run
    assert "(default: $TRIALSCREEN_WAREHOUSE_URL, else ./trialscreen.duckdb)" in run
    assert "(default: axiom)" in run
    assert "(default: None)" not in run and "(default: False)" not in run


def test_top_level_help_documents_the_exit_codes(capsys) -> None:
    text = _help(capsys, [])
    assert "exit status:" in text
    assert "  3    run: the quality gate blocked publication" in text
    assert "  2    usage error" in text
    codes = {cli.EXIT_OK, cli.EXIT_ERROR, cli.EXIT_USAGE, cli.EXIT_GATE_BLOCKED}
    assert len(codes) == 4 and cli.EXIT_GATE_BLOCKED == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "run", "--input", "x"],
        ["run", "--input", "x", "-v"],
        ["run", "-v", "--input", "x"],
        ["trials", "list", "-v"],
        ["ingest", "--input", "x", "--config", "site.toml"],
    ],
)
def test_global_options_are_accepted_after_the_command(argv: list[str]) -> None:
    args = cli.build_parser().parse_args(argv)
    assert args.verbose + getattr(args, "verbose_after", 0) == argv.count("-v")
    assert args.config == ("site.toml" if "--config" in argv else None)


def test_verbose_before_and_after_the_command_add_up(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    argv = ["-v", "ingest", "--input", str(tmp_path / "drop"), "--allow-empty", "-v"]
    argv += ["--warehouse", str(tmp_path / "wh.duckdb")]
    assert cli.main(argv) == 0
    assert logging.getLogger("trialscreen").level == logging.DEBUG


def test_config_given_before_the_command_is_kept() -> None:
    args = cli.build_parser().parse_args(["--config", "a.toml", "run", "--input", "x"])
    assert args.config == "a.toml"


def test_wrong_trial_id_lists_the_valid_ones(capsys, drop: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", "--input", str(drop), "--trial", "axoim"])
    assert exited.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "no trial 'axoim'" in err
    assert "did you mean 'axiom'?" in err
    assert "trial ids: axiom" in err


def test_a_trial_yaml_path_is_accepted() -> None:
    second = Path(cli.__file__).resolve().parents[1] / "trials/examples/second_trial.yml"
    args = cli.build_parser().parse_args(["run", "--input", "x", "--trial", str(second)])
    assert args.trial == [str(second)]


def test_input_with_no_feed_files_exits_1_and_says_why(capsys, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "fhir").mkdir(parents=True)  # a feed folder, but no file in it
    warehouse = tmp_path / "wh.duckdb"
    status = cli.main(["run", "--input", str(empty), "--warehouse", str(warehouse)])
    assert status == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"--input '{empty}' has no feed files" in err
    assert "--allow-empty" in err
    assert not warehouse.exists()  # refused before anything ran


def test_input_one_level_too_deep_names_the_folder_meant(capsys, drop: Path, tmp_path) -> None:
    nightly = tmp_path / "drops"
    shutil.copytree(drop / "csv", nightly / "2026-11-20" / "csv")
    assert cli.main(["run", "--input", str(nightly)]) == cli.EXIT_ERROR
    assert f"did you mean '{nightly / '2026-11-20'}'?" in capsys.readouterr().err

    assert cli.main(["ingest", "--input", str(drop / "fhir")]) == cli.EXIT_ERROR
    assert f"pass its parent '{drop}'" in capsys.readouterr().err


def test_missing_input_directory_exits_1(capsys, tmp_path: Path) -> None:
    assert cli.main(["run", "--input", str(tmp_path / "nope")]) == cli.EXIT_ERROR
    assert "is not a directory" in capsys.readouterr().err


def test_allow_empty_ingests_an_empty_night(capsys, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    warehouse = tmp_path / "wh.duckdb"
    argv = ["ingest", "--input", str(empty), "--warehouse", str(warehouse), "--allow-empty"]
    assert cli.main(argv) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "fhir  files new 0 skipped 0 | records_in 0" in out
    with Warehouse.connect(warehouse) as wh:
        assert wh.scalar("select count(*) from audit.feed_counts") == 3


def test_a_redelivered_drop_logs_one_info_line_per_feed(capsys, drop: Path, tmp_path) -> None:
    warehouse = str(tmp_path / "wh.duckdb")
    argv = ["ingest", "--input", str(drop), "--warehouse", warehouse, "-v"]
    assert cli.main(argv) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main(argv) == cli.EXIT_OK  # the same files again: every one already ingested
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert not [line for line in lines if line["msg"] == "file already ingested"]  # debug only
    summaries = {
        line["feed"]: line["files_skipped"]
        for line in lines
        if line["msg"] == "files already ingested, skipped"
    }
    files = {feed: len(scan(drop, feed)[0]) for feed in ("fhir", "hl7", "csv")}
    assert summaries == {feed: n for feed, n in files.items() if n}


def test_progress_is_silent_off_a_terminal() -> None:
    assert progress.run_progress({"fhir": 3}, stream=io.StringIO()) is None
