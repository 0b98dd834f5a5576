"""``trialscreen doctor``: is this installation ready for tonight's run? (docs/configuration.md)

Each check prints ``OK``, ``WARN`` or ``FAIL`` and what it found: the configuration file and
where each value came from, the hospital time zone, the warehouse connection, the PostgreSQL
roles and grants, the secrets the run needs (present or not, never their values), the Java
and Spark extra, the dbt project and manifest, the trial definitions and the folders. Exit
status 0 when nothing FAILs, 1 otherwise.

Nothing here writes: the DuckDB file is opened read-only (and not created), PostgreSQL is only
queried. Nothing printed carries a secret (URLs are redacted) or PHI (the pseudonym key is
checked against a few stored keys in memory; no MRN is printed).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from trialscreen import config

Status = Literal["OK", "WARN", "FAIL"]
KEY_SAMPLE = 5  # stored patient keys the pseudonym key is checked against
MIN_KEY_CHARS = 32  # `openssl rand -hex 32` gives 64
MIN_JAVA = 17  # pyspark 4 needs Java 17 or later
SPARK_PREFIX = "spark:///"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    found: str


@dataclass
class Context:
    """What the checks share: the settings in force and an open warehouse connection."""

    file: config.FileConfig
    resolved: dict[str, config.Resolved]
    env: Mapping[str, str]
    warehouse: str
    con: Any = None  # DB-API connection to the warehouse, when one could be opened
    engine: str = ""

    def value(self, env_name: str) -> str:
        return self.resolved[env_name].value or ""

    def source(self, env_name: str) -> str:
        return self.resolved[env_name].source


# --------------------------------------------------------------------------- helpers


def _redact(url: str) -> str:
    if url.startswith(SPARK_PREFIX):
        return url
    from trialscreen.warehouse import WarehouseUrl

    try:
        return WarehouseUrl.parse(url).redacted()
    except ValueError:
        return "(not a warehouse URL)"


def _error(exc: BaseException) -> str:
    from trialscreen.errors import summarize

    return summarize(exc)


def _pg_connect(url: str) -> Any:
    import psycopg2  # type: ignore[import-untyped]

    con = psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://", 1),
                           connect_timeout=10)  # fmt: skip
    con.autocommit = True
    return con


def _database(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    return (parts.hostname or "", parts.port or 5432, parts.path.lstrip("/"))


def _rows(con: Any, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    cur = con.cursor()
    try:
        cur.execute(sql, params or [])
        return list(cur.fetchall())
    finally:
        cur.close()


# --------------------------------------------------------------------------- checks


def check_config(ctx: Context) -> Check:
    counts = {"environment": 0, "file": 0, "default": 0}
    for item in ctx.resolved.values():
        counts[item.source] += 1
    wrong = config.problems(ctx.resolved.values())
    where = str(ctx.file.path) if ctx.file.path else "no file (environment and defaults)"
    found = (
        f"{where}: {counts['file']} settings from the file, {counts['environment']} from the "
        f"environment, {counts['default']} default or unset"
    )
    overridden = [
        name
        for name, item in ctx.resolved.items()
        if item.source == "environment" and ctx.file.value(item.setting) is not None
    ]
    if overridden:
        found += f"; the environment overrides the file for {', '.join(overridden)}"
    if wrong:
        return Check("config", "FAIL", found + "; " + "; ".join(wrong))
    return Check("config", "OK", found)


def check_timezone(ctx: Context) -> Check:
    from trialscreen.settings import SettingError, hospital_zone

    name = ctx.value("TRIALSCREEN_TIMEZONE")
    try:
        zone = hospital_zone(name)
    except SettingError as exc:
        return Check("timezone", "FAIL", str(exc))
    today = datetime.now(zone).date()
    source = ctx.source("TRIALSCREEN_TIMEZONE")
    return Check("timezone", "OK", f"{name} ({source}); today there is {today}")


def _duckdb_summary(con: Any) -> str:
    import duckdb

    schemas = [r[0] for r in _rows(con, "select schema_name from information_schema.schemata")]
    from trialscreen.roles import SCHEMAS

    present = [s for s in SCHEMAS if s in schemas]
    return f"DuckDB {duckdb.__version__}, {len(present)} of {len(SCHEMAS)} schemas"


def _last_runs(con: Any) -> str:
    from trialscreen.pipeline import RUNS_TABLE

    try:
        latest = _rows(
            con, f"select run_id, status from {RUNS_TABLE} order by started_at desc limit 1"
        )
        published = _rows(
            con,
            f"select run_id, screening_date from {RUNS_TABLE} where status = 'published' "
            "order by started_at desc limit 1",
        )
    except Exception:  # no runs table yet, or no right to read it
        return "no run recorded"
    if not latest:
        return "no run recorded"
    text = f"last run {latest[0][0]} {latest[0][1]}"
    if published:
        text += f"; last published {published[0][0]} (screening date {published[0][1]})"
    return text


def check_warehouse(ctx: Context) -> Check:
    url = ctx.warehouse
    shown = _redact(url)
    if url.startswith(SPARK_PREFIX):
        ctx.engine = "spark"
        folder = Path(url[len(SPARK_PREFIX) - 1 :])
        state = "exists" if folder.is_dir() else "not created yet (the first build creates it)"
        return Check("warehouse", "OK", f"{shown}: Spark catalog folder {state}")
    from trialscreen.warehouse import WarehouseUrl

    try:
        parsed = WarehouseUrl.parse(url)
    except ValueError as exc:
        return Check("warehouse", "FAIL", str(exc))
    ctx.engine = parsed.engine
    if parsed.engine == "duckdb":
        import duckdb

        from trialscreen.warehouse import quiet_duckdb

        assert parsed.path is not None
        if not parsed.path.is_file():
            folder = parsed.path.resolve().parent
            writable = os.access(folder if folder.is_dir() else folder.parent, os.W_OK)
            status: Status = "WARN" if writable else "FAIL"
            return Check(
                "warehouse",
                status,
                f"{shown}: no file yet (the first run creates it); its folder is "
                + ("writable" if writable else "not writable"),
            )
        try:
            ctx.con = quiet_duckdb(duckdb.connect(str(parsed.path), read_only=True))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                return Check("warehouse", "WARN", f"{shown}: open in another process (a run?)")
            return Check("warehouse", "FAIL", f"{shown}: {_error(exc)}")
        except duckdb.Error as exc:
            return Check("warehouse", "FAIL", f"{shown}: {_error(exc)}")
        return Check(
            "warehouse", "OK", f"{shown}: {_duckdb_summary(ctx.con)}; {_last_runs(ctx.con)}"
        )
    try:
        ctx.con = _pg_connect(parsed.url or "")
        version, user, superuser = _rows(
            ctx.con,
            "select current_setting('server_version'), current_user, "
            "(select rolsuper from pg_roles where rolname = current_user)",
        )[0]
    except Exception as exc:
        return Check("warehouse", "FAIL", f"{shown}: cannot connect: {_error(exc)}")
    found = f"{shown}: PostgreSQL {version}, connected as {user}; {_last_runs(ctx.con)}"
    if superuser:
        return Check(
            "warehouse",
            "WARN",
            found + "; this role is a superuser: the nightly run should connect as "
            "trialscreen_loader (docs/deployment.md)",
        )
    return Check("warehouse", "OK", found)


def check_transform_url(ctx: Context) -> Check:
    url = ctx.value("TRIALSCREEN_TRANSFORM_URL")
    if not url:
        return Check("transform", "OK", "no transformer URL: dbt and publish use the warehouse URL")
    if ctx.engine != "postgres":
        return Check(
            "transform",
            "WARN",
            f"{_redact(url)} is set but ignored: the warehouse is not PostgreSQL",
        )
    try:
        if _database(url) != _database(ctx.warehouse):
            return Check(
                "transform",
                "FAIL",
                f"{_redact(url)} is not the warehouse's database ({_redact(ctx.warehouse)}): "
                "the transformer must build where the loader lands",
            )
        con = _pg_connect(url)
        try:
            user = _rows(con, "select current_user")[0][0]
        finally:
            con.close()
    except Exception as exc:
        return Check("transform", "FAIL", f"{_redact(url)}: {_error(exc)}")
    return Check("transform", "OK", f"{_redact(url)}: connected as {user}")


def _public_usage(con: Any, schemas: list[str]) -> list[str]:
    rows = _rows(
        con,
        "select n.nspname from pg_namespace n, aclexplode(n.nspacl) a "
        "where n.nspname = any(%s) and a.grantee = 0 and a.privilege_type = 'USAGE'",
        [schemas],
    )
    return sorted(r[0] for r in rows)


def check_roles(ctx: Context) -> Check:
    """The four roles exist, none is a superuser, and their schema privileges are the table
    of docs/specification.md#phi-rules (``trialscreen.roles``): no more, no less."""
    if ctx.engine != "postgres":
        return Check(
            "roles",
            "OK",
            f"not applicable: a {ctx.engine or 'non-PostgreSQL'} warehouse has no roles",
        )
    if ctx.con is None:
        return Check("roles", "FAIL", "not checked: no connection to the warehouse")
    from trialscreen.roles import ROLES, SCHEMAS

    con = ctx.con
    found_roles = {
        r[0]: (r[1], r[2])
        for r in _rows(
            con,
            "select rolname, rolcanlogin, rolsuper from pg_roles where rolname = any(%s)",
            [[spec.name for spec in ROLES]],
        )
    }
    missing = [spec.name for spec in ROLES if spec.name not in found_roles]
    if missing:
        return Check(
            "roles", "FAIL", f"missing roles: {', '.join(missing)} (run `trialscreen roles`)"
        )
    schemas = [
        r[0]
        for r in _rows(
            con, "select nspname from pg_namespace where nspname = any(%s)", [list(SCHEMAS)]
        )
    ]
    problems: list[str] = []
    absent = [s for s in SCHEMAS if s not in schemas]
    if absent:
        problems.append(f"schemas missing: {', '.join(absent)}")
    for spec in ROLES:
        if found_roles[spec.name][1]:
            problems.append(f"{spec.name} is a superuser")
        for schema in schemas:
            usage, create = _rows(
                con,
                "select has_schema_privilege(%s, %s, 'USAGE'), "
                "has_schema_privilege(%s, %s, 'CREATE')",
                [spec.name, schema, spec.name, schema],
            )[0]
            want_usage = schema in spec.writes or schema in spec.reads
            want_create = schema in spec.writes
            if usage and not want_usage:
                problems.append(f"{spec.name} can use {schema} (it should not)")
            elif want_usage and not usage:
                problems.append(f"{spec.name} cannot use {schema}")
            if create and not want_create:
                problems.append(f"{spec.name} can create in {schema} (it should not)")
            elif want_create and not create:
                problems.append(f"{spec.name} cannot create in {schema}")
    public = _public_usage(con, schemas)
    if public:
        problems.append(f"PUBLIC can use {', '.join(public)}")
    login = [n for n, (can, _) in found_roles.items() if can]
    nologin = [spec.name for spec in ROLES if spec.name not in login]
    found = f"{len(ROLES)} roles; can log in: {', '.join(login) or 'none'}"
    if nologin:
        found += f"; NOLOGIN: {', '.join(nologin)}"
    if problems:
        return Check(
            "roles",
            "FAIL",
            found + "; " + "; ".join(problems) + " (`trialscreen roles` converges them)",
        )
    return Check("roles", "OK", found + "; schema privileges as specified")


def _stored_keys_match(con: Any, key: str) -> tuple[int, int] | None:
    """(matching, checked) over a few rows of restricted.patient_keys; None when unreadable.
    The MRNs stay in this function."""
    from trialscreen.pipeline import KEYS_TABLE
    from trialscreen.pseudonym import patient_key

    try:
        rows = _rows(
            con,
            f"select mrn, patient_key from {KEYS_TABLE} order by patient_key limit {KEY_SAMPLE}",
        )
    except Exception:
        return None
    matching = sum(1 for mrn, stored in rows if patient_key(str(mrn), key) == stored)
    return matching, len(rows)


def check_keys(ctx: Context) -> Check:
    from trialscreen.pseudonym import KEY_ENV
    from trialscreen.roles import ROLES

    key = ctx.env.get(KEY_ENV, "")
    notes: list[str] = []
    status: Status = "OK"
    if not key:
        return Check(
            "keys", "FAIL", f"{KEY_ENV} is not set: every run needs it (`openssl rand -hex 32`)"
        )
    notes.append(f"{KEY_ENV} set ({len(key)} characters)")
    if len(key) < MIN_KEY_CHARS:
        status = "WARN"
        notes.append(f"shorter than {MIN_KEY_CHARS} characters")
    if ctx.con is not None:
        match = _stored_keys_match(ctx.con, key)
        if match is None:
            notes.append("not compared: no restricted.patient_keys, or this role cannot read it")
        elif match[1] == 0:
            notes.append("no patient keys stored yet")
        elif match[0] == match[1]:
            notes.append(f"matches the {match[1]} stored patient keys checked")
        else:
            status = "FAIL"
            notes.append(
                f"does NOT match {match[1] - match[0]} of {match[1]} stored patient keys: "
                "this is not the key the warehouse was keyed with (new patients would get "
                "keys that do not join to old ones; docs/deployment.md)"
            )
    if ctx.engine == "postgres":
        unset = [spec.password_env for spec in ROLES if not ctx.env.get(spec.password_env)]
        if ctx.value("TRIALSCREEN_ADMIN_URL"):
            needed = [v for v in unset if "LOADER" in v or "TRANSFORMER" in v]
            if needed:
                if status == "OK":
                    status = "WARN"
                notes.append(f"unset (the role becomes NOLOGIN): {', '.join(needed)}")
            elif unset:
                notes.append(f"unset, NOLOGIN: {', '.join(unset)}")
    return Check("keys", status, "; ".join(notes))


def _java_version(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major  # "1.8" is Java 8


def check_spark(ctx: Context) -> Check:
    used = ctx.warehouse.startswith(SPARK_PREFIX)
    missing = [m for m in ("pyspark", "dbt.adapters.spark") if importlib.util.find_spec(m) is None]
    java_home = ctx.env.get("JAVA_HOME", "")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    version = _java_version(java) if java else None
    if missing:
        found = f"the spark extra is not installed (missing {', '.join(missing)})"
        if used:
            return Check("spark", "FAIL", found + ": `uv sync --extra spark`")
        return Check("spark", "OK", found + "; needed only for spark:/// warehouses")
    version_of = importlib.metadata.version
    found = f"pyspark {version_of('pyspark')}, dbt-spark {version_of('dbt-spark')}"
    if version is None:
        found += "; no Java found (JAVA_HOME or java on PATH)"
    else:
        found += f"; Java {version}"
    ok = version is not None and version >= MIN_JAVA
    if ok:
        return Check("spark", "OK", found)
    found += f" (Spark needs Java {MIN_JAVA} or later)"
    return Check("spark", "FAIL" if used else "WARN", found)


def check_dbt(ctx: Context) -> Check:
    from trialscreen.transform import default_project_dir

    given = ctx.value("TRIALSCREEN_DBT_PROJECT_DIR")
    project = Path(given) if given else default_project_dir()
    if not (project / "dbt_project.yml").is_file():
        return Check("dbt", "FAIL", f"no dbt_project.yml in {project}")
    manifest_given = ctx.value("TRIALSCREEN_DBT_MANIFEST")
    manifest = Path(manifest_given) if manifest_given else project / "target" / "manifest.json"
    if not manifest.is_file():
        return Check(
            "dbt",
            "WARN",
            f"project {project}; no manifest at {manifest}: the DAG needs one "
            "(`trialscreen manifest`)",
        )
    return Check("dbt", "OK", f"project {project}; manifest {manifest}")


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    title: str
    nct_id: str | None
    cohorts: tuple[str, ...]


def trials_dir(
    env: Mapping[str, str] | None = None, file: config.FileConfig = config.NO_FILE
) -> Path:
    """The trial definitions' folder in force (``[paths] trials_dir``)."""
    from trialscreen.trial import PACKAGE_DIR

    given = config.value("TRIALSCREEN_TRIALS_DIR", file, env)
    return Path(given) if given else PACKAGE_DIR.parent / "trials"


def trial_summaries(folder: Path) -> tuple[list[TrialSummary], list[str]]:
    """Every ``*.yml`` of the folder, validated: (the valid ones, one error text per invalid
    file naming the file and the field)."""
    from trialscreen.trial import TrialDefinitionError, load_trial

    summaries: list[TrialSummary] = []
    errors: list[str] = []
    for path in sorted(folder.glob("*.yml")) if folder.is_dir() else []:
        try:
            trial = load_trial(path)
        except TrialDefinitionError as exc:
            errors.append(str(exc))
            continue
        summaries.append(
            TrialSummary(
                trial.trial_id, trial.title, trial.nct_id, tuple(c.id for c in trial.cohorts)
            )
        )
    return summaries, errors


def check_trials(ctx: Context) -> Check:
    folder = trials_dir(ctx.env, ctx.file)
    summaries, errors = trial_summaries(folder)
    if errors:
        return Check("trials", "FAIL", f"{folder}: " + "; ".join(e.splitlines()[0] for e in errors))
    if not summaries:
        return Check("trials", "FAIL", f"{folder}: no trial definitions (*.yml)")
    ids = ", ".join(s.trial_id for s in summaries)
    return Check("trials", "OK", f"{folder}: {len(summaries)} valid ({ids})")


def check_folders(ctx: Context) -> Check:
    notes: list[str] = []
    status: Status = "OK"
    for env_name, label, need_write in (
        ("TRIALSCREEN_DROPS_DIR", "drops", False),
        ("TRIALSCREEN_REPORTS_DIR", "reports", True),
    ):
        given = ctx.value(env_name)
        if not given:
            notes.append(f"{label}: default (beside the warehouse or the repository)")
            continue
        path = Path(given)
        if not path.is_dir():
            status = "WARN"
            notes.append(f"{label}: {path} does not exist")
        elif need_write and not os.access(path, os.W_OK):
            status = "WARN"
            notes.append(f"{label}: {path} is not writable")
        else:
            notes.append(f"{label}: {path}")
    return Check("folders", status, "; ".join(notes))


def check_worklist(ctx: Context) -> Check:
    """The opt-out list, when one is named, exists: the worklist is not written without it."""
    opt_out = ctx.value("TRIALSCREEN_OPT_OUT_FILE")
    store = ctx.value("TRIALSCREEN_DECISIONS_STORE")
    folder = ctx.value("TRIALSCREEN_WORKLIST_DIR")
    notes = [f"folder: {folder or 'default (beside the reports folder)'}"]
    notes.append(f"decisions: {_redact(store) if '://' in store else store or 'default SQLite'}")
    if opt_out and not Path(opt_out).is_file():
        notes.append(f"opt-out list {opt_out} does not exist: no worklist is written without it")
        return Check("worklist", "FAIL", "; ".join(notes))
    notes.append(f"opt-out list: {opt_out or 'default (<worklist dir>/research_opt_outs.csv)'}")
    return Check("worklist", "OK", "; ".join(notes))


def check_alerts(ctx: Context) -> Check:
    """Where a failed night is announced (nothing is sent)."""
    destinations = []
    if ctx.env.get("TRIALSCREEN_ALERT_WEBHOOK_URL", "").strip():
        destinations.append("webhook (URL set in the environment)")
    host = ctx.value("TRIALSCREEN_ALERT_SMTP_HOST")
    if host:
        sender = ctx.value("TRIALSCREEN_ALERT_SMTP_FROM")
        to = [a for a in ctx.value("TRIALSCREEN_ALERT_SMTP_TO").split(",") if a.strip()]
        if not sender or not to:
            return Check(
                "alerts",
                "FAIL",
                f"mail via {host}: TRIALSCREEN_ALERT_SMTP_FROM and TRIALSCREEN_ALERT_SMTP_TO "
                "are needed with TRIALSCREEN_ALERT_SMTP_HOST",
            )
        port = ctx.value("TRIALSCREEN_ALERT_SMTP_PORT")
        destinations.append(f"mail via {host}:{port} to {len(to)} recipient(s)")
    if not destinations:
        return Check("alerts", "WARN", "no destination: a failed night shows only in Airflow")
    return Check("alerts", "OK", "; ".join(destinations))


CHECKS: tuple[Callable[[Context], Check], ...] = (
    check_config,
    check_timezone,
    check_warehouse,
    check_transform_url,
    check_roles,
    check_keys,
    check_spark,
    check_dbt,
    check_trials,
    check_folders,
    check_worklist,
    check_alerts,
)


def run_checks(
    config_path: str | Path | None = None,
    warehouse: str | None = None,
    env: Mapping[str, str] | None = None,
) -> list[Check]:
    """Every check, in order; a check that raises becomes a FAIL naming its error class."""
    env = os.environ if env is None else env
    try:
        file = config.load_located(config_path, env)
    except config.ConfigError as exc:
        first = [Check("config", "FAIL", line) for line in str(exc).splitlines()]
        file = config.NO_FILE
    else:
        first = []
    resolved = {r.setting.env: r for r in config.resolve(file, env)}
    ctx = Context(
        file=file,
        resolved=resolved,
        env=env,
        warehouse=warehouse or resolved["TRIALSCREEN_WAREHOUSE_URL"].value or "trialscreen.duckdb",
    )
    results = list(first)
    try:
        for check in CHECKS:
            if first and check is check_config:
                continue
            try:
                results.append(check(ctx))
            except Exception as exc:  # a broken check is a finding, not a crash
                name = check.__name__.removeprefix("check_")
                results.append(Check(name, "FAIL", f"the check failed: {_error(exc)}"))
    finally:
        if ctx.con is not None:
            ctx.con.close()
    return results


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{c.status:<4}  {c.name:<{width}}  {c.found}" for c in checks]
    counts = {s: sum(1 for c in checks if c.status == s) for s in ("OK", "WARN", "FAIL")}
    lines.append(f"doctor: {counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL")
    return "\n".join(lines)


def exit_status(checks: list[Check]) -> int:
    return 1 if any(c.status == "FAIL" for c in checks) else 0
