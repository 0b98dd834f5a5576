"""The configuration file (trialscreen.config), `trialscreen doctor` and `trialscreen trials
list` (docs/configuration.md): env > file > default, errors naming the field, secrets refused,
and the doctor's findings on a real DuckDB file and a real PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from trialscreen import cli, config, doctor, limits, pseudonym, settings
from trialscreen.roles import SCHEMAS

REPO = Path(__file__).resolve().parents[1]
KEY = "k" * 64  # a test key; real ones come from `openssl rand -hex 32`
MRNS = ("MRN-TEST-001", "MRN-TEST-002", "MRN-TEST-003")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TRIALSCREEN_* from the caller's shell, no ./trialscreen.toml from the checkout."""
    for name in [*config.BY_ENV, config.CONFIG_ENV, pseudonym.KEY_ENV]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.load(write(tmp_path / "trialscreen.toml", text))
    return str(caught.value).splitlines()


# --------------------------------------------------------------------------- the file


def test_environment_overrides_file_overrides_default(tmp_path: Path) -> None:
    path = write(
        tmp_path / "site.toml",
        '[hospital]\ntimezone = "Europe/Paris"\n[limits]\nmax_record_bytes = 1_000\n'
        'max_file_bytes = 2_000\n[warehouse]\npublish_lock_timeout = "5s"\n',
    )
    file = config.load(path)
    env = {"TRIALSCREEN_TIMEZONE": "America/New_York", "TRIALSCREEN_MAX_FILE_BYTES": "  "}
    found = {r.setting.env: (r.value, r.source) for r in config.resolve(file, env)}
    assert found["TRIALSCREEN_TIMEZONE"] == ("America/New_York", "environment")
    assert found["TRIALSCREEN_MAX_RECORD_BYTES"] == ("1000", "file")
    assert found["TRIALSCREEN_MAX_FILE_BYTES"] == ("2000", "file")  # empty variable = unset
    assert found["TRIALSCREEN_RATIO_FLOOR_BYTES"] == (str(8 << 20), "default")

    applied = config.apply(file, env)
    assert env["TRIALSCREEN_TIMEZONE"] == "America/New_York"  # not overwritten
    assert env["TRIALSCREEN_MAX_RECORD_BYTES"] == "1000"
    assert "TRIALSCREEN_TIMEZONE" not in applied


def test_the_readers_see_the_file_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trialscreen --config` applies the file before the command: today's env readers
    (settings, limits) take its values; a variable set in the environment still wins."""
    path = write(
        tmp_path / "site.toml",
        '[hospital]\ntimezone = "Pacific/Kiritimati"\n[limits]\nmax_record_bytes = 4096\n',
    )
    monkeypatch.setenv("TRIALSCREEN_MAX_RECORD_BYTES", "8192")
    assert cli.main(["--config", str(path), "trials", "list"]) == 0
    assert settings.hospital_timezone() == "Pacific/Kiritimati"
    assert limits.current().max_record_bytes == 8192
    capsys.readouterr()


def test_cli_refuses_a_bad_environment_value_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRIALSCREEN_ALERT_SMTP_PORT", "smtp")
    assert cli.main(["trials", "list"]) == 1
    assert capsys.readouterr().err.strip() == (
        "TRIALSCREEN_ALERT_SMTP_PORT: expected a port number (1-65535)"
    )


def test_relative_paths_are_taken_from_the_files_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    file = config.load(write(tmp_path / "etc" / "t.toml", '[paths]\ndrops_dir = "../drops"\n'))
    assert file.values["TRIALSCREEN_DROPS_DIR"] == str((tmp_path / "drops").resolve())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[warehouse]\nurl = 5\n", "trialscreen.toml: [warehouse] url: expected a string"),
        (
            '[limits]\nmax_file_bytes = "big"\n',
            "trialscreen.toml: [limits] max_file_bytes: expected an integer",
        ),
        (
            "[limits]\nmax_record_bytes = 0\n",
            "trialscreen.toml: [limits] max_record_bytes: expected a positive whole number",
        ),
        ('[warehouse]\nuri = "x"\n', "trialscreen.toml: [warehouse] uri: unknown setting"),
        ("[wharehouse]\nurl = 'x'\n", "trialscreen.toml: [wharehouse]: unknown table"),
        ("warehouse = 'x'\n", "trialscreen.toml: warehouse: expected a table"),
        (
            '[hospital]\ntimezone = "Mars/Olympus"\n',
            "trialscreen.toml: [hospital] timezone: unknown time zone",
        ),
        (
            '[warehouse]\npublish_lock_timeout = "a minute"\n',
            "trialscreen.toml: [warehouse] publish_lock_timeout: expected a PostgreSQL duration",
        ),
        ('[warehouse]\nurl = "mysql://h/db"\n', "trialscreen.toml: [warehouse] url: expected"),
        ('[hospital]\ntimezone = ""\n', "trialscreen.toml: [hospital] timezone: empty"),
    ],
)
def test_a_bad_value_names_the_file_table_and_key(tmp_path: Path, text: str, expected: str) -> None:
    lines = errors_of(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(str(tmp_path / expected.split(": ", 1)[0]) + ": ")
    assert expected.split(": ", 1)[1] in lines[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[limits]\nmax_file_bytes = true\n", "[limits] max_file_bytes: expected an integer"),
        ("[limits]\nmax_file_bytes = 1.5\n", "[limits] max_file_bytes: expected an integer"),
        ('[alerts]\nsmtp_timeout = "ten"\n', "[alerts] smtp_timeout: expected a number"),
        ("[alerts]\nsmtp_timeout = false\n", "[alerts] smtp_timeout: expected a number"),
        ("[paths]\ndrops_dir = 3\n", "[paths] drops_dir: expected a string"),
        ('[paths]\ndrops_dir = ["a"]\n', "[paths] drops_dir: expected a string"),
        ("[alerts]\nsmtp_to = 7\n", "[alerts] smtp_to: expected a string"),
        ("[hospital]\ntimezone = 1.0\n", "[hospital] timezone: expected a string"),
    ],
)
def test_each_kind_refuses_a_value_of_another_type(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Every kind of setting (integer, number, path, addresses, string) names the field and
    the type it expected; a TOML boolean is no number."""
    (line,) = errors_of(tmp_path, text)
    assert line == f"{tmp_path / 'trialscreen.toml'}: {expected}"


def test_each_kind_accepts_its_own_type(tmp_path: Path) -> None:
    file = config.load(
        write(
            tmp_path / "trialscreen.toml",
            "[limits]\nmax_file_bytes = 1024\n"
            "[alerts]\nsmtp_timeout = 2.5\nsmtp_to = ['a@example.org', ' b@example.org']\n"
            "[warehouse]\nurl = 'wh.duckdb'\n",
        )
    )
    assert file.values["TRIALSCREEN_MAX_FILE_BYTES"] == "1024"
    assert file.values["TRIALSCREEN_ALERT_SMTP_TIMEOUT"] == "2.5"
    assert file.values["TRIALSCREEN_ALERT_SMTP_TO"] == "a@example.org,b@example.org"
    assert file.values["TRIALSCREEN_WAREHOUSE_URL"] == str((tmp_path / "wh.duckdb").resolve())


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    lines = errors_of(tmp_path, "[warehouse]\nurl = 1\n[hospital]\ntimezone = 2\n")
    assert [line.split(": ")[1] for line in lines] == ["[warehouse] url", "[hospital] timezone"]


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    (line,) = errors_of(tmp_path, '[warehouse]\nurl = "x"\ntimezone "UTC"\n')
    assert "not valid TOML" in line and "line 3" in line


@pytest.mark.parametrize(
    ("text", "field", "variable"),
    [
        ('[pseudonym]\nkey = "s3cr3t-value"\n', "[pseudonym] key", "TRIALSCREEN_PSEUDONYM_KEY"),
        ('[warehouse]\npseudonym_key = "s3cr3t-value"\n', "[warehouse] pseudonym_key",
         "TRIALSCREEN_PSEUDONYM_KEY"),
        ('[roles]\nloader_password = "s3cr3t-value"\n', "[roles] loader_password",
         "TRIALSCREEN_LOADER_PASSWORD"),
        ('[warehouse]\nurl = "postgresql://trialscreen_loader:s3cr3t-value@db:5432/ts"\n',
         "[warehouse] url", "TRIALSCREEN_WAREHOUSE_URL"),
        ('[warehouse]\nadmin_url = "postgresql://admin:s3cr3t-value@db/ts"\n',
         "[warehouse] admin_url", "TRIALSCREEN_ADMIN_URL"),
    ],
)  # fmt: skip
def test_secrets_in_the_file_are_refused_naming_the_variable(
    tmp_path: Path, text: str, field: str, variable: str
) -> None:
    (line,) = errors_of(tmp_path, text)
    assert f"{field}: " in line and variable in line and "environment" in line
    assert "s3cr3t-value" not in line


def test_which_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config.locate() is None  # no file: environment and defaults only
    write(tmp_path / "trialscreen.toml", "")
    assert config.locate() == Path("trialscreen.toml")
    other = write(tmp_path / "other.toml", "")
    monkeypatch.setenv(config.CONFIG_ENV, str(other))
    assert config.locate() == other
    given = write(tmp_path / "given.toml", "")
    assert config.locate(given) == given
    with pytest.raises(config.ConfigError, match="--config: no such file"):
        config.locate(tmp_path / "missing.toml")
    monkeypatch.setenv(config.CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(config.ConfigError, match=f"{config.CONFIG_ENV}: no such file"):
        config.locate()


def test_cli_refuses_a_bad_file_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "trialscreen.toml", "[warehouse]\nurl = 5\n")  # found in the cwd
    assert cli.main(["trials", "list"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "trialscreen.toml: [warehouse] url: expected a string"


def test_example_file_is_valid_and_shows_every_setting() -> None:
    example = REPO / "trialscreen.example.toml"
    config.load(example)
    uncommented = example.read_text().replace("# ", "")
    live = config.parse(
        __import__("tomllib").loads(
            "\n".join(line for line in uncommented.splitlines() if " = " in line or "[" in line)
        ),
        "example",
    )
    assert set(live.values) == set(config.BY_ENV), "trialscreen.example.toml lacks a setting"
    documented = (REPO / "docs" / "configuration.md").read_text()
    missing = [s.env for s in config.SETTINGS if s.env not in documented]
    missing += [name for name in config.SECRETS if name not in documented]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_every_variable_the_code_reads_is_a_setting_a_secret_or_listed() -> None:
    """A TRIALSCREEN_* variable added anywhere must be registered in trialscreen.config
    (SETTINGS, SECRETS or NOT_SETTINGS) and so documented in docs/configuration.md."""
    sources = [
        *(REPO / "include" / "trialscreen").rglob("*.py"),
        *(REPO / "dags").glob("*.py"),
        REPO / "dbt_project" / "profiles.yml",
        REPO / "docker-compose.yml",
        REPO / ".env.example",
    ]
    seen: dict[str, str] = {}
    for path in sources:
        for name in re.findall(r"\bTRIALSCREEN_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
            seen.setdefault(name, str(path.relative_to(REPO)))
    known = set(config.BY_ENV) | set(config.SECRETS) | set(config.NOT_SETTINGS)
    # prefixes named in prose (TRIALSCREEN_PG_*, TRIALSCREEN_ALERT_SMTP_*)
    unknown = {
        name: where
        for name, where in seen.items()
        if name not in known and not any(k.startswith(name + "_") for k in known)
    }
    assert not unknown, f"add to trialscreen.config and docs/configuration.md: {unknown}"
    documented = (REPO / "docs" / "configuration.md").read_text()
    assert [n for n in config.NOT_SETTINGS if n not in documented] == []


# --------------------------------------------------------------------------- trials list


def test_trials_list_prints_id_nct_title_and_cohorts(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trials", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "NCT", "id", "title", "cohorts"]
    axiom = next(line for line in out if line.startswith("axiom "))
    assert "NCT05333458" in axiom and "(AXIOM)" in axiom
    assert axiom.endswith("safety_run_in, asps")


def test_trials_list_names_an_invalid_definition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "trials"
    folder.mkdir()
    write(folder / "broken.yml", "trial_id: broken\ntitle: x\ncohorts: []\ncriteria: []\n")
    write(tmp_path / "trialscreen.toml", '[paths]\ntrials_dir = "trials"\n')
    assert cli.main(["trials", "list"]) == 1
    assert "broken.yml: cohorts:" in capsys.readouterr().err


# --------------------------------------------------------------------------- doctor


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


@pytest.fixture()
def duckdb_warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DuckDB warehouse after one published run, holding patient keys made with KEY."""
    from datetime import date

    from trialscreen.pipeline import finish_run, start_run

    path = tmp_path / "wh" / "trialscreen.duckdb"
    path.parent.mkdir()
    with monkeypatch.context() as env:
        env.setenv(pseudonym.KEY_ENV, KEY)
        run_id = start_run(path, date(2026, 11, 20), ["axiom"])
        finish_run(path, run_id, "published")
    (tmp_path / "run_id").write_text(run_id)
    con = duckdb.connect(str(path))
    con.execute("create schema if not exists restricted")
    con.execute("create table restricted.patient_keys (mrn varchar, patient_key varchar)")
    con.executemany(
        "insert into restricted.patient_keys values (?, ?)",
        [[mrn, pseudonym.patient_key(mrn, KEY)] for mrn in MRNS],
    )
    con.close()
    return path


def test_doctor_on_a_duckdb_warehouse(duckdb_warehouse: Path, tmp_path: Path) -> None:
    toml = write(
        tmp_path / "site.toml",
        f'[warehouse]\nurl = "{duckdb_warehouse}"\n[hospital]\ntimezone = "Europe/Paris"\n',
    )
    env = {pseudonym.KEY_ENV: KEY}
    checks = doctor.run_checks(config_path=toml, env=env)
    found = by_name(checks)
    assert [c.name for c in checks] == [
        "config", "timezone", "warehouse", "transform", "roles", "keys", "spark", "dbt",
        "trials", "folders", "worklist", "alerts",
    ]  # fmt: skip
    assert found["config"].status == "OK" and "2 settings from the file" in found["config"].found
    assert "overrides" not in found["config"].found
    assert found["timezone"].found.startswith("Europe/Paris (file)")
    assert found["warehouse"].status == "OK"
    assert "DuckDB" in found["warehouse"].found
    assert re.search(rf"\d+ of {len(SCHEMAS)} schemas", found["warehouse"].found)
    run_id = (tmp_path / "run_id").read_text()
    assert found["warehouse"].found.endswith(
        f"last run {run_id} published; last published {run_id} (screening date 2026-11-20)"
    )
    assert found["roles"].status == "OK" and "not applicable" in found["roles"].found
    assert found["keys"].status == "OK"
    assert "matches the 3 stored patient keys checked" in found["keys"].found
    assert found["trials"].status == "OK" and "axiom" in found["trials"].found
    assert doctor.exit_status(checks) == 0
    text = doctor.render(checks)
    assert not any(mrn in text for mrn in MRNS) and KEY not in text
    assert re.search(r"^doctor: \d+ OK, \d+ WARN, 0 FAIL$", text, re.M)


def test_doctor_fails_on_a_different_pseudonym_key(duckdb_warehouse: Path) -> None:
    env = {pseudonym.KEY_ENV: "another-key-" + "x" * 40}
    checks = doctor.run_checks(warehouse=str(duckdb_warehouse), env=env)
    keys = by_name(checks)["keys"]
    assert keys.status == "FAIL" and "does NOT match 3 of 3" in keys.found
    assert doctor.exit_status(checks) == 1


def test_doctor_without_key_or_warehouse_file(tmp_path: Path) -> None:
    checks = by_name(doctor.run_checks(warehouse=str(tmp_path / "new.duckdb"), env={}))
    assert checks["keys"].status == "FAIL" and pseudonym.KEY_ENV in checks["keys"].found
    assert checks["warehouse"].status == "WARN" and "no file yet" in checks["warehouse"].found
    assert not (tmp_path / "new.duckdb").exists()  # the doctor creates nothing


def test_doctor_reports_a_bad_file_and_goes_on(tmp_path: Path) -> None:
    toml = write(tmp_path / "site.toml", "[limits]\nmax_file_bytes = -1\n")
    checks = doctor.run_checks(config_path=toml, env={pseudonym.KEY_ENV: KEY})
    assert checks[0] == doctor.Check(
        "config", "FAIL", f"{toml}: [limits] max_file_bytes: expected a positive whole number"
    )
    assert "trials" in by_name(checks)  # the other checks still ran
    assert doctor.exit_status(checks) == 1


def test_doctor_says_which_file_values_the_environment_overrides(tmp_path: Path) -> None:
    toml = write(tmp_path / "site.toml", '[hospital]\ntimezone = "Europe/Paris"\n')
    env = {pseudonym.KEY_ENV: KEY, "TRIALSCREEN_TIMEZONE": "Asia/Tokyo"}
    checks = by_name(doctor.run_checks(config_path=toml, env=env))
    assert checks["timezone"].found.startswith("Asia/Tokyo (environment)")
    assert checks["config"].found.endswith(
        "the environment overrides the file for TRIALSCREEN_TIMEZONE"
    )


def test_defaults_are_the_readers_defaults() -> None:
    from trialscreen.pipeline import DEFAULT_PUBLISH_LOCK_TIMEOUT

    defaults = {s.env: s.default for s in config.SETTINGS}
    assert defaults["TRIALSCREEN_PUBLISH_LOCK_TIMEOUT"] == DEFAULT_PUBLISH_LOCK_TIMEOUT
    assert defaults["TRIALSCREEN_TIMEZONE"] == settings.hospital_timezone()
    assert defaults["TRIALSCREEN_MAX_FILE_BYTES"] == str(limits.current({}).max_file_bytes)


def test_duckdb_memory_reaches_the_warehouse_and_dbt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DuckDB connection of a night is bounded by TRIALSCREEN_DUCKDB_MEMORY: the
    package's (Warehouse) and dbt's (profiles.yml settings)."""
    from trialscreen.warehouse import DEFAULT_DUCKDB_MEMORY, Warehouse

    assert config.BY_ENV["TRIALSCREEN_DUCKDB_MEMORY"].default == DEFAULT_DUCKDB_MEMORY
    monkeypatch.setenv("TRIALSCREEN_DUCKDB_MEMORY", "1GB")
    with Warehouse.connect(str(tmp_path / "w.duckdb")) as wh:
        assert wh.scalar("select current_setting('memory_limit')") == "953.6 MiB"
    profile = (REPO / "dbt_project" / "profiles.yml").read_text()
    assert "memory_limit: \"{{ env_var('TRIALSCREEN_DUCKDB_MEMORY', '4GB') }}\"" in profile
    monkeypatch.setenv("TRIALSCREEN_DUCKDB_MEMORY", "lots")
    with pytest.raises(ValueError, match="TRIALSCREEN_DUCKDB_MEMORY: 'lots' is not a size"):
        Warehouse.connect(str(tmp_path / "v.duckdb")).__enter__()


def test_defaults_of_the_gate_alerts_and_worklist() -> None:
    from trialscreen.notify import DEFAULT_TIMEOUT
    from trialscreen.validate.runner import DEFAULT_GATE_MEMORY_LIMIT

    defaults = {s.env: s.default for s in config.SETTINGS}
    assert defaults["TRIALSCREEN_GATE_MEMORY_LIMIT"] is None  # the gate's own default
    assert config.BY_ENV["TRIALSCREEN_GATE_MEMORY_LIMIT"].check is not None
    assert config.BY_ENV["TRIALSCREEN_GATE_MEMORY_LIMIT"].check(DEFAULT_GATE_MEMORY_LIMIT) is None
    assert float(defaults["TRIALSCREEN_ALERT_WEBHOOK_TIMEOUT"] or 0) == DEFAULT_TIMEOUT
    assert float(defaults["TRIALSCREEN_ALERT_SMTP_TIMEOUT"] or 0) == DEFAULT_TIMEOUT


def test_alert_and_worklist_settings(tmp_path: Path) -> None:
    file = config.load(
        write(
            tmp_path / "t.toml",
            '[alerts]\nsmtp_host = "smtp.example"\nsmtp_from = "ts@example"\n'
            'smtp_to = ["a@example", "b@example"]\nwebhook_timeout = 2.5\n'
            '[worklist]\ndecisions_store = "decisions.sqlite"\nopt_out_file = "none.csv"\n',
        )
    )
    assert file.values["TRIALSCREEN_ALERT_SMTP_TO"] == "a@example,b@example"
    assert file.values["TRIALSCREEN_ALERT_WEBHOOK_TIMEOUT"] == "2.5"
    assert file.values["TRIALSCREEN_DECISIONS_STORE"] == str(tmp_path / "decisions.sqlite")
    checks = by_name(doctor.run_checks(config_path=tmp_path / "t.toml", env={}))
    assert checks["alerts"] == doctor.Check(
        "alerts", "OK", "mail via smtp.example:587 to 2 recipient(s)"
    )
    assert checks["worklist"].status == "FAIL" and "does not exist" in checks["worklist"].found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[alerts]\nwebhook_url = "https://hooks.example/T0/s3cr3t-value"\n',
         "[alerts] webhook_url: a secret is never read from a file: set "
         "TRIALSCREEN_ALERT_WEBHOOK_URL"),
        ('[alerts]\nsmtp_password = "s3cr3t-value"\n',
         "[alerts] smtp_password: a secret is never read from a file: set "
         "TRIALSCREEN_ALERT_SMTP_PASSWORD"),
        ('[alerts]\nsmtp_to = [1]\n', "[alerts] smtp_to: expected a list of strings"),
        ('[alerts]\nsmtp_security = "tls"\n', "[alerts] smtp_security: expected starttls"),
        ('[alerts]\nsmtp_timeout = 900\n', "[alerts] smtp_timeout: expected seconds between"),
        ('[gate]\nmemory_limit = "lots"\n', "[gate] memory_limit: expected a size"),
        ('[worklist]\ndecisions_store = "postgresql://coord:s3cr3t-value@db/ts"\n',
         "[worklist] decisions_store: carries a password"),
    ],
)  # fmt: skip
def test_alert_and_worklist_errors(tmp_path: Path, text: str, expected: str) -> None:
    (line,) = errors_of(tmp_path, text)
    assert expected in line and "s3cr3t-value" not in line


def test_doctor_names_a_bad_environment_variable(tmp_path: Path) -> None:
    env = {pseudonym.KEY_ENV: KEY, "TRIALSCREEN_TIMEZONE": "Mars/Olympus"}
    checks = by_name(doctor.run_checks(warehouse=str(tmp_path / "x.duckdb"), env=env))
    assert checks["config"].status == "FAIL"
    assert "TRIALSCREEN_TIMEZONE: unknown time zone" in checks["config"].found
    assert checks["timezone"].status == "FAIL"


def test_doctor_cli_exit_status(
    duckdb_warehouse: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(pseudonym.KEY_ENV, KEY)
    assert cli.main(["doctor", "--warehouse", str(duckdb_warehouse)]) == 0
    assert "OK    keys" in capsys.readouterr().out
    monkeypatch.delenv(pseudonym.KEY_ENV)
    assert cli.main(["doctor", "--warehouse", str(duckdb_warehouse)]) == 1
    assert "FAIL  keys" in capsys.readouterr().out


@pytest.mark.postgres
def test_doctor_on_postgresql_checks_connection_and_roles(pg_database: str) -> None:
    import psycopg2

    from trialscreen.roles import ensure_roles

    passwords = {
        "TRIALSCREEN_LOADER_PASSWORD": "loader-test-pw",
        "TRIALSCREEN_TRANSFORMER_PASSWORD": "transformer-test-pw",
    }
    ensure_roles(pg_database, passwords)
    env = {pseudonym.KEY_ENV: KEY, "TRIALSCREEN_ADMIN_URL": pg_database, **passwords}
    checks = by_name(doctor.run_checks(warehouse=pg_database, env=env))
    assert "PostgreSQL" in checks["warehouse"].found
    # the test cluster's admin is a superuser: a nightly run should not connect as one
    assert checks["warehouse"].status == "WARN" and "superuser" in checks["warehouse"].found
    assert checks["roles"].status == "OK", checks["roles"].found
    assert "can log in: " in checks["roles"].found and "schema privileges as specified" in (
        checks["roles"].found
    )
    assert "trialscreen_analyst" in checks["roles"].found.split("NOLOGIN: ")[1]
    assert checks["keys"].status == "OK"

    # as the loader (what the compose deployment runs as): not a superuser
    loader = pg_database.replace("trialscreen_admin@", "trialscreen_loader:loader-test-pw@")
    as_loader = by_name(doctor.run_checks(warehouse=loader, env=env))
    assert as_loader["warehouse"].status == "OK", as_loader["warehouse"].found
    assert "connected as trialscreen_loader" in as_loader["warehouse"].found
    assert "loader-test-pw" not in doctor.render(list(as_loader.values()))

    # a hand-made grant that would show restricted (PHI) to analysts is a FAIL
    con = psycopg2.connect(pg_database)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute("grant usage on schema restricted to trialscreen_analyst")
    con.close()
    checks = by_name(doctor.run_checks(warehouse=pg_database, env=env))
    assert checks["roles"].status == "FAIL"
    assert "trialscreen_analyst can use restricted (it should not)" in checks["roles"].found
    ensure_roles(pg_database, passwords)  # converges it back
    checks = by_name(doctor.run_checks(warehouse=pg_database, env=env))
    assert checks["roles"].status == "OK"


@pytest.mark.postgres
def test_doctor_on_postgresql_without_roles_or_server(pg_database: str) -> None:
    env = {pseudonym.KEY_ENV: KEY}
    # a database of its own: roles are cluster-wide, so they may exist from another test;
    # the schemas of this database do not until `trialscreen roles` ran on it
    checks = by_name(doctor.run_checks(warehouse=pg_database, env=env))
    assert checks["roles"].status == "FAIL"
    assert "missing" in checks["roles"].found
    gone = re.sub(r":\d+/", ":1/", pg_database)  # nothing listens on port 1
    checks = by_name(doctor.run_checks(warehouse=gone, env=env))
    assert checks["warehouse"].status == "FAIL" and "cannot connect" in checks["warehouse"].found
    assert checks["roles"].status == "FAIL"
