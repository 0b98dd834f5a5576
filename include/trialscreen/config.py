"""The configuration file ``trialscreen.toml``: every setting the ``TRIALSCREEN_*`` environment
variables carry, except secrets (docs/configuration.md).

Which file: ``trialscreen --config PATH``, else ``$TRIALSCREEN_CONFIG``, else
``./trialscreen.toml`` when it exists; no file is fine (environment and defaults).
A value is taken from, in order: the environment variable, the file, the default. The file
never holds a secret (the pseudonym key, a password, a URL with a password in it): those are
refused with a message naming the variable to set instead.

The file is validated whole when it is read; every error names the file, the table and the
key (``trialscreen.toml: [warehouse] url: expected a string``) and never quotes a secret.

:func:`apply` writes the file's values into the process environment where the environment
does not already have them (``os.environ.setdefault``), so every reader of a
``TRIALSCREEN_*`` variable in the package, dbt's ``profiles.yml`` and child processes see
the same precedence without reading the file themselves.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from trialscreen.limits import DEFAULTS as LIMITS
from trialscreen.settings import DEFAULT_TIMEZONE, is_duckdb_size
from trialscreen.spark import DEFAULT_DRIVER_MEMORY

CONFIG_ENV = "TRIALSCREEN_CONFIG"
DEFAULT_FILE = "trialscreen.toml"
MAX_FILE_BYTES = 1 << 20  # a configuration is a few KiB; anything larger is the wrong file

Kind = Literal["string", "path", "url", "integer", "number", "addresses"]
Source = Literal["environment", "file", "default"]


class ConfigError(ValueError):
    """The configuration file cannot be used; one line per problem, each naming the field."""


# --------------------------------------------------------------------------- checks
# Each returns what is wrong with a value (no value quoted), or None.


def _check_timezone(value: str) -> str | None:
    from trialscreen.settings import SettingError, hospital_timezone

    try:
        hospital_timezone(value)
    except SettingError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _check_positive(value: str) -> str | None:
    raw = value.strip().replace("_", "")
    return None if raw.isdigit() and int(raw) > 0 else "expected a positive whole number"


_DURATION = re.compile(r"^\d+(ms|s|min|h)?$")  # PostgreSQL lock_timeout (trialscreen.pipeline)
_MEMORY = re.compile(r"^\d+([kmgtp]b?)?$", re.IGNORECASE)  # a Spark size: 512m, 2g, 2gb


def _check_duration(value: str) -> str | None:
    ok = _DURATION.match(value.strip())
    return None if ok else "expected a PostgreSQL duration such as 500ms, 60s or 5min"


def _check_memory(value: str) -> str | None:
    ok = _MEMORY.match(value.strip())
    return None if ok else "expected a JVM memory size such as 1g or 512m"


def _check_warehouse(value: str) -> str | None:
    if value.startswith("spark:///"):
        return None
    from trialscreen.warehouse import WarehouseUrl

    try:
        WarehouseUrl.parse(value)
    except ValueError:
        return "expected a DuckDB path, duckdb:///path, postgresql://... or spark:///dir"
    return None


def _check_postgres(value: str) -> str | None:
    if value.startswith(("postgresql://", "postgres://", "postgresql+psycopg2://")):
        return None
    return "expected a postgresql:// URL"


def _check_seconds(value: str) -> str | None:
    try:
        seconds = float(value)
    except ValueError:
        return "expected a number of seconds"
    return None if 0 < seconds <= 300 else "expected seconds between 0 and 300"


def _check_port(value: str) -> str | None:
    ok = value.isdigit() and 0 < int(value) < 65536
    return None if ok else "expected a port number (1-65535)"


def _check_smtp_security(value: str) -> str | None:
    known = value.lower() in {"starttls", "ssl", "none"}
    return None if known else "expected starttls, ssl or none"


def _check_size(value: str) -> str | None:
    return None if is_duckdb_size(value.strip()) else "expected a size such as 512MB or 1GB"


def _check_store(value: str) -> str | None:
    if "://" not in value or value.startswith(("postgresql://", "postgres://")):
        return None
    return "expected a SQLite file path or a postgresql:// URL"


def _check_cron(value: str) -> str | None:
    text = value.strip()
    if text.startswith("@") or len(text.split()) == 5:
        return None
    return "expected a cron expression of five fields ('0 2 * * *') or a preset ('@daily')"


def url_has_password(value: str) -> bool:
    """True when a URL carries a password (``scheme://user:password@host``)."""
    if "://" not in value:
        return False
    try:
        return bool(urlsplit(value).password)
    except ValueError:
        return False


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Setting:
    """One setting: its place in the file, its environment variable and its default."""

    section: str
    key: str
    env: str
    kind: Kind
    default: str | None
    help: str
    check: Callable[[str], str | None] | None = None

    @property
    def field(self) -> str:
        return f"[{self.section}] {self.key}"


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # where the data lives
    S("warehouse", "url", "TRIALSCREEN_WAREHOUSE_URL", "url", "trialscreen.duckdb",
      "the warehouse the nightly run lands in: a DuckDB file, duckdb:///path, "
      "postgresql://user@host:port/db or spark:///dir", _check_warehouse),
    S("warehouse", "transform_url", "TRIALSCREEN_TRANSFORM_URL", "url", None,
      "PostgreSQL: the transformer's URL on the same database (dbt, gate, publish, reports)",
      _check_postgres),
    S("warehouse", "admin_url", "TRIALSCREEN_ADMIN_URL", "url", None,
      "PostgreSQL: an administrator's URL for `trialscreen roles`", _check_postgres),
    S("warehouse", "duckdb_memory", "TRIALSCREEN_DUCKDB_MEMORY", "string", "4GB",
      "DuckDB: the memory the nightly build, publish and reports may use (DuckDB spills to "
      "disk beyond it; it bounds DuckDB's buffers, not Python's)", _check_size),
    S("warehouse", "dbt_threads", "TRIALSCREEN_DBT_THREADS", "integer", "1",
      "dbt threads on the duckdb target: models and tests run side by side when above 1",
      _check_positive),
    S("warehouse", "publish_lock_timeout", "TRIALSCREEN_PUBLISH_LOCK_TIMEOUT", "string", "60s",
      "PostgreSQL: how long publish waits for a table lock", _check_duration),
    # the hospital
    S("hospital", "timezone", "TRIALSCREEN_TIMEZONE", "string", DEFAULT_TIMEZONE,
      "IANA time zone: the screening date and every local date of the clinical windows",
      _check_timezone),
    # the nightly DAG
    S("schedule", "cron", "TRIALSCREEN_SCHEDULE", "string", "0 2 * * *",
      "when the nightly DAG runs (in the hospital time zone)", _check_cron),
    # files and folders
    S("paths", "home", "TRIALSCREEN_HOME", "path", None,
      "the installed repository the DAG reads (default: the DAG file's repository)"),
    S("paths", "drops_dir", "TRIALSCREEN_DROPS_DIR", "path", None,
      "where feed drops arrive (fhir/, hl7/, csv/); default <home>/drops"),
    S("paths", "reports_dir", "TRIALSCREEN_REPORTS_DIR", "path", None,
      "where the reports are written; default <home>/reports"),
    S("paths", "trials_dir", "TRIALSCREEN_TRIALS_DIR", "path", None,
      "the folder of trial definitions (<id>.yml); default include/trials"),
    S("paths", "expectations_dir", "TRIALSCREEN_EXPECTATIONS_DIR", "path", None,
      "the quality gate's expectation suites; default expectations/"),
    S("paths", "dbt_project_dir", "TRIALSCREEN_DBT_PROJECT_DIR", "path", None,
      "the dbt project; default the repository's dbt_project/"),
    S("paths", "dbt_manifest", "TRIALSCREEN_DBT_MANIFEST", "path", None,
      "the precompiled dbt manifest the DAG renders from; default dbt_project/target/"),
    # hostile input (trialscreen.limits)
    S("limits", "max_file_bytes", "TRIALSCREEN_MAX_FILE_BYTES", "integer",
      str(LIMITS.max_file_bytes),
      "the most bytes one feed file may hold once decompressed", _check_positive),
    S("limits", "max_expansion_ratio", "TRIALSCREEN_MAX_EXPANSION_RATIO", "integer",
      str(LIMITS.max_expansion_ratio),
      "the most a gzip may expand (output bytes per input byte)", _check_positive),
    S("limits", "ratio_floor_bytes", "TRIALSCREEN_RATIO_FLOOR_BYTES", "integer",
      str(LIMITS.ratio_floor_bytes),
      "output size from which the expansion ratio is checked", _check_positive),
    S("limits", "max_record_bytes", "TRIALSCREEN_MAX_RECORD_BYTES", "integer",
      str(LIMITS.max_record_bytes),
      "the most bytes one record (NDJSON line, HL7 message, CSV row) may hold",
      _check_positive),
    S("limits", "max_expanded_bytes", "TRIALSCREEN_MAX_EXPANDED_BYTES", "integer",
      str(LIMITS.max_expanded_bytes),
      "the most bytes a gzipped FHIR NDJSON or CSV file parsed in parts may expand to",
      _check_positive),
    # Spark (optional extra)
    S("spark", "threads", "TRIALSCREEN_SPARK_THREADS", "integer", "1",
      "dbt threads on the spark target", _check_positive),
    S("spark", "driver_memory", "TRIALSCREEN_SPARK_DRIVER_MEMORY", "string",
      DEFAULT_DRIVER_MEMORY,
      "the Spark driver's heap", _check_memory),
    # the quality gate (trialscreen.validate.runner, which holds the default: importing it
    # here would cost every command a second)
    S("gate", "memory_limit", "TRIALSCREEN_GATE_MEMORY_LIMIT", "string", None,
      "the DuckDB memory the quality gate may use (it spills to disk beyond it); default "
      "DEFAULT_GATE_MEMORY_LIMIT of trialscreen.validate.runner", _check_size),
    # ingest (trialscreen.ingest)
    S("ingest", "workers", "TRIALSCREEN_INGEST_WORKERS", "integer", None,
      "parse worker processes for a feed with 64 MiB or more of new files (0: parse in the "
      "ingest process); default one per CPU, at most 4"),
    S("ingest", "duckdb_memory", "TRIALSCREEN_INGEST_DUCKDB_MEMORY", "string", "128MB",
      "the DuckDB memory an ingest may use (it spills to disk beyond it)", _check_size),
    # the coordinators' worklist (trialscreen.worklist)
    S("worklist", "dir", "TRIALSCREEN_WORKLIST_DIR", "path", None,
      "where the worklist is written (0700); default worklist/ beside the reports folder"),
    S("worklist", "opt_out_file", "TRIALSCREEN_OPT_OUT_FILE", "path", None,
      "the research-contact opt-out list (must exist); default "
      "<worklist dir>/research_opt_outs.csv when present"),
    S("worklist", "decisions_store", "TRIALSCREEN_DECISIONS_STORE", "url", None,
      "the coordinators' decisions: a SQLite file (default <worklist dir>/decisions.sqlite) "
      "or the coordinator's postgresql:// URL", _check_store),
    S("worklist", "page_limit", "TRIALSCREEN_WORKLIST_PAGE_LIMIT", "integer", "500",
      "the patients each cohort lists on the worklist page, in work order (0: all); the "
      "export and the snapshot hold every patient"),
    S("worklist", "user", "TRIALSCREEN_USER", "string", None,
      "who records decisions and exports (default: the login name)"),
    # alerts (trialscreen.notify); the webhook URL and the SMTP password are secrets
    S("alerts", "webhook_timeout", "TRIALSCREEN_ALERT_WEBHOOK_TIMEOUT", "number", "10",
      "seconds the webhook may take", _check_seconds),
    S("alerts", "smtp_host", "TRIALSCREEN_ALERT_SMTP_HOST", "string", None,
      "the mail server alerts are sent through (unset: no mail)"),
    S("alerts", "smtp_port", "TRIALSCREEN_ALERT_SMTP_PORT", "integer", "587",
      "its port", _check_port),
    S("alerts", "smtp_security", "TRIALSCREEN_ALERT_SMTP_SECURITY", "string", None,
      "starttls, ssl or none; default ssl on port 465, else starttls", _check_smtp_security),
    S("alerts", "smtp_from", "TRIALSCREEN_ALERT_SMTP_FROM", "string", None,
      "the sender address"),
    S("alerts", "smtp_to", "TRIALSCREEN_ALERT_SMTP_TO", "addresses", None,
      "the recipients: a list of addresses, or one string separated by commas"),
    S("alerts", "smtp_user", "TRIALSCREEN_ALERT_SMTP_USER", "string", None,
      "the SMTP login, when the server needs one"),
    S("alerts", "smtp_timeout", "TRIALSCREEN_ALERT_SMTP_TIMEOUT", "number", "10",
      "seconds the mail server may take", _check_seconds),
)  # fmt: skip
del S

BY_FIELD: dict[tuple[str, str], Setting] = {(s.section, s.key): s for s in SETTINGS}
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))

# Secrets: environment only. The file key an operator might try -> the variable to set.
SECRETS: dict[str, str] = {
    "TRIALSCREEN_PSEUDONYM_KEY": "the HMAC key of patient_key (docs/specification.md#patient-key)",
    "TRIALSCREEN_LOADER_PASSWORD": "trialscreen_loader's password (`trialscreen roles`)",
    "TRIALSCREEN_TRANSFORMER_PASSWORD": "trialscreen_transformer's password",
    "TRIALSCREEN_ANALYST_PASSWORD": "trialscreen_analyst's password (unset: NOLOGIN)",
    "TRIALSCREEN_COORDINATOR_PASSWORD": "trialscreen_coordinator's password (unset: NOLOGIN)",
    "TRIALSCREEN_ALERT_WEBHOOK_URL": "the alert webhook (its URL usually holds a token)",
    "TRIALSCREEN_ALERT_SMTP_PASSWORD": "the SMTP login's password",
}
# Variables that are not settings (docs/configuration.md#not-settings): derived from a URL for
# one dbt or GX call, read by docker compose only, or by the test suite only.
NOT_SETTINGS: dict[str, str] = {
    CONFIG_ENV: "the configuration file itself",
    "TRIALSCREEN_DBT_TARGET": "derived from the warehouse URL (trialscreen.transform)",
    "TRIALSCREEN_DUCKDB_PATH": "derived from the warehouse URL",
    "TRIALSCREEN_PG_HOST": "derived from the warehouse URL",
    "TRIALSCREEN_PG_PORT": "derived from the warehouse URL",
    "TRIALSCREEN_PG_USER": "derived from the warehouse URL",
    "TRIALSCREEN_PG_PASSWORD": "derived from the warehouse URL (a secret)",
    "TRIALSCREEN_PG_DBNAME": "derived from the warehouse URL",
    "TRIALSCREEN_SPARK_WAREHOUSE_DIR": "derived from a spark:/// warehouse URL",
    "TRIALSCREEN_GX_WAREHOUSE_URL": "set by the quality gate for one gate run",
    "TRIALSCREEN_DBT_PYTHON": "set by the DAG for its dbt wrapper (trialscreen/bin/dbt)",
    "TRIALSCREEN_BIND_ADDRESS": "docker compose interpolation",
    "TRIALSCREEN_IMAGE_TAG": "docker compose interpolation",
    "TRIALSCREEN_COMPOSE_BIN": "test suite only",
    "TRIALSCREEN_CSV_BENCH_ROWS": "test suite only",
}
_SECRET_KEYS: dict[str, str] = {
    "pseudonym_key": "TRIALSCREEN_PSEUDONYM_KEY",
    "key": "TRIALSCREEN_PSEUDONYM_KEY",
    "loader_password": "TRIALSCREEN_LOADER_PASSWORD",
    "transformer_password": "TRIALSCREEN_TRANSFORMER_PASSWORD",
    "analyst_password": "TRIALSCREEN_ANALYST_PASSWORD",
    "coordinator_password": "TRIALSCREEN_COORDINATOR_PASSWORD",
    "webhook_url": "TRIALSCREEN_ALERT_WEBHOOK_URL",
    "webhook": "TRIALSCREEN_ALERT_WEBHOOK_URL",
    "smtp_password": "TRIALSCREEN_ALERT_SMTP_PASSWORD",
}
_SECRET_WORDS = ("password", "passwd", "secret", "token", "key")


def _secret_key_message(key: str) -> str | None:
    """Why ``key`` may not be in the file, or None when it is no secret's name."""
    variable = _SECRET_KEYS.get(key)
    if variable is None and not any(w in key.lower() for w in _SECRET_WORDS):
        return None
    where = f"set {variable}" if variable else "set it"
    return f"a secret is never read from a file: {where} in the environment instead"


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class FileConfig:
    """The values a configuration file sets, by environment variable (as text)."""

    path: Path | None
    values: dict[str, str] = field(default_factory=dict)

    def value(self, setting: Setting) -> str | None:
        return self.values.get(setting.env)


NO_FILE = FileConfig(None)


def locate(cli_path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The configuration file in force: ``--config``, ``$TRIALSCREEN_CONFIG``, or
    ``./trialscreen.toml`` when present; None when there is none. A file named explicitly
    (option or variable) must exist."""
    env = os.environ if env is None else env
    for given, how in ((cli_path, "--config"), (env.get(CONFIG_ENV, "").strip(), CONFIG_ENV)):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"{how}: no such file: {path}")
            return path
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


# --------------------------------------------------------------------------- kinds
# How each kind of setting is read from the TOML file: the value types it accepts, the error
# when the value has another type, and what else its text needs (resolving a relative path
# against the file's folder, refusing a URL with a password in it).


def _not_a_path(text: str) -> bool:
    return False


def _a_path(text: str) -> bool:
    return True


def _a_database_file(text: str) -> bool:
    return "://" not in text  # a DuckDB file rather than a server URL


@dataclass(frozen=True)
class KindRule:
    """One kind of setting, as the TOML file may spell it."""

    types: tuple[type, ...]  # a bool is never accepted, though Python counts it an int
    expected: str  # the error for a value of another type
    list_expected: str | None = None  # a TOML list of such values also, joined with commas
    is_path: Callable[[str], bool] = _not_a_path  # relative paths are the file's folder's
    may_hold_password: bool = False  # refused when it carries a password


KINDS: dict[Kind, KindRule] = {
    "string": KindRule((str,), "expected a string"),
    "path": KindRule((str,), "expected a string", is_path=_a_path),
    "url": KindRule((str,), "expected a string", is_path=_a_database_file, may_hold_password=True),
    "integer": KindRule((int,), "expected an integer"),
    "number": KindRule((int, float), "expected a number"),
    "addresses": KindRule((str,), "expected a string", list_expected="expected a list of strings"),
}


def _has_type(rule: KindRule, value: object) -> bool:
    return isinstance(value, rule.types) and not isinstance(value, bool)


def _kind_error(rule: KindRule, value: object) -> str | None:
    if rule.list_expected is not None and isinstance(value, list):
        ok = all(_has_type(rule, v) for v in value)
        return None if ok else rule.list_expected
    return None if _has_type(rule, value) else rule.expected


def _text(value: object) -> str:
    """A TOML value as the environment variable would spell it (a list: comma-separated)."""
    if isinstance(value, list):
        return ",".join(str(v).strip() for v in value)
    return str(value).strip()


def parse(data: Mapping[str, object], source: str, base: Path | None = None) -> FileConfig:
    """Validate a parsed TOML document; relative paths are taken from ``base`` (the file's
    folder). Raises :class:`ConfigError` listing every problem."""
    errors: list[str] = []
    values: dict[str, str] = {}
    for section, table in data.items():
        if section not in SECTIONS:
            secret = _secret_key_message(section)
            inside = table if isinstance(table, dict) else {}
            secrets = [(k, _secret_key_message(k)) for k in inside if _secret_key_message(k)]
            if secrets:  # [pseudonym] key = ...: name the secret, not just the table
                errors += [f"{source}: [{section}] {k}: {why}" for k, why in secrets]
            else:
                why = secret or f"unknown table (known: {', '.join(SECTIONS)})"
                errors.append(f"{source}: [{section}]: {why}")
            continue
        if not isinstance(table, dict):
            errors.append(f"{source}: {section}: expected a table [{section}]")
            continue
        for key, value in table.items():
            where = f"{source}: [{section}] {key}"
            setting = BY_FIELD.get((section, key))
            if setting is None:
                secret = _secret_key_message(key)
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                errors.append(f"{where}: {secret or f'unknown setting (known: {known})'}")
                continue
            rule = KINDS[setting.kind]
            problem = _kind_error(rule, value)
            if problem is None:
                text = _text(value)
                if rule.may_hold_password and url_has_password(text):
                    problem = (
                        "carries a password; a secret is never read from a file: set "
                        f"{setting.env} in the environment, or keep the password in "
                        "PGPASSWORD / ~/.pgpass"
                    )
                elif not text:
                    problem = "empty (leave the key out for the default)"
                elif setting.check is not None:
                    problem = setting.check(text)
                if problem is None:
                    if base is not None and rule.is_path(text):
                        text = str((base / Path(text).expanduser()).resolve())
                    values[setting.env] = text
            if problem is not None:
                errors.append(f"{where}: {problem}")
    if errors:
        raise ConfigError("\n".join(errors))
    return FileConfig(None, values)


def load(path: str | Path) -> FileConfig:
    """Read and validate one configuration file."""
    path = Path(path)
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{name}: {size} bytes, not a configuration file")
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:  # its text names a line and column, not content
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    config = parse(data, name, base=path.resolve().parent)
    return FileConfig(path, config.values)


def load_located(
    cli_path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> FileConfig:
    """The file :func:`locate` finds, validated; :data:`NO_FILE` when there is none."""
    path = locate(cli_path, env)
    return NO_FILE if path is None else load(path)


# --------------------------------------------------------------------------- precedence


@dataclass(frozen=True)
class Resolved:
    setting: Setting
    value: str | None
    source: Source


def resolve(file: FileConfig = NO_FILE, env: Mapping[str, str] | None = None) -> list[Resolved]:
    """Every setting's value in force and where it came from: environment > file > default.
    An empty environment variable counts as unset."""
    env = os.environ if env is None else env
    out = []
    for setting in SETTINGS:
        from_env = env.get(setting.env, "").strip()
        from_file = file.value(setting)
        if from_env:
            out.append(Resolved(setting, from_env, "environment"))
        elif from_file is not None:
            out.append(Resolved(setting, from_file, "file"))
        else:
            out.append(Resolved(setting, setting.default, "default"))
    return out


def value(env_name: str, file: FileConfig = NO_FILE, env: Mapping[str, str] | None = None) -> str:
    """The value in force of one setting by its variable name ('' when it has no default)."""
    found = next(r for r in resolve(file, env) if r.setting.env == env_name)
    return found.value or ""


def problems(resolved: Iterable[Resolved]) -> list[str]:
    """What is wrong with the values in force, each naming the variable or the file's field
    it came from (the file's own values were checked when it was read)."""
    out = []
    for item in resolved:
        check = item.setting.check
        if item.source != "environment" or item.value is None or check is None:
            continue
        problem = check(item.value)
        if problem:
            out.append(f"{item.setting.env}: {problem}")
    return out


def apply(file: FileConfig, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Put the file's values into the environment where it has none (env > file > default);
    returns the variables set."""
    environ = os.environ if environ is None else environ
    applied = []
    for name, text in file.values.items():
        if not environ.get(name, "").strip():
            environ[name] = text
            applied.append(name)
    return applied


def setup(cli_path: str | Path | None = None) -> FileConfig:
    """At start of a command (and the DAG): locate, validate and apply the file, then check
    the values in force that came from the environment (each error names the variable)."""
    file = load_located(cli_path)
    wrong = problems(resolve(file))
    if wrong:
        raise ConfigError("\n".join(wrong))
    apply(file)
    return file
