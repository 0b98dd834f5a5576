"""Exception texts fit for the run message, audit rows, the CLI and the report.

A database or dbt error text quotes what it failed on — PostgreSQL's ``DETAIL: Failing row
contains (...)``, DuckDB's ``Could not convert string '...'``, a dbt node message with the
database's text inside — so it may carry an MRN, a name, a birth date or free text from a
source record. docs/decisions.md ("Free text from source records"): database error texts are
summarized (error class and table), never copied.

:func:`summarize` keeps the text only of errors whose text trialscreen composes itself from
PHI-free parts (configuration errors, the quality gate's verdict, a failed dbt node's name);
any other exception becomes its class, the SQLSTATE and the tables or models it names.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

# schemas the project writes; a qualified name in one of them is an identifier, not data
_SCHEMAS = "raw|quarantine|config|staging|intermediate|marts|restricted|audit"
_QUALIFIED = re.compile(
    r"(?<![\w.])(?:" + _SCHEMAS + r")(?:_candidate)?\.[a-z_][a-z0-9_]*(?![\w.])"
)
# dbt node ids: model.trialscreen.stg_csv__patients, test.trialscreen.not_null_x.1a2b3c
_DBT_NODE = re.compile(r"(?:model|seed|test|snapshot|unit_test|source)\.[a-z_][a-z0-9_]*\.\S+")
# the kind of failure at the start of a dbt node message, with the node and its file when
# dbt names them ("Runtime Error in model x (models/.../x.sql)"); the rest is the database's
# text
_DBT_KIND = re.compile(
    r"^(?:(?:Database|Compilation|Runtime|Parsing|Dependency) Error"
    r"(?: in (?:model|seed|test|snapshot|unit_test) [a-z_][a-z0-9_]*"
    r"(?: \((?:models|seeds|tests|snapshots|macros)/[\w./-]+\.(?:sql|csv|yml)\))?)?"
    r"|Failure|Got \d+ results?, configured to (?:fail|warn) if [!=<>]+ ?\d+)"
)
# trialscreen errors whose texts are composed from configuration and identifiers only
_OWN_TEXTS = frozenset(
    {
        "trialscreen.pipeline.ValidationFailed",
        "trialscreen.pipeline.PublishLockTimeout",
        "trialscreen.warehouse.WarehouseBusy",
        "trialscreen.transform.DbtBuildError",
        "trialscreen.trial.TrialDefinitionError",
        "trialscreen.validate.suites.SuiteError",
        "trialscreen.pseudonym.MissingPseudonymKey",
    }
)
_PACKAGE = Path(__file__).resolve().parent
_MAX = 500


def _names(cls: type) -> set[str]:
    return {f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__}


def _raised_by_trialscreen(exc: BaseException) -> bool:
    """A builtin error raised by trialscreen's own code (argument and configuration checks,
    which name options and paths given by the operator)."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if not frames:
        return False
    try:
        return Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        return False


def keeps_text(exc: BaseException) -> bool:
    """True when ``str(exc)`` may be shown as it is."""
    if _names(type(exc)) & _OWN_TEXTS:
        return True
    builtin = type(exc).__module__ == "builtins"
    own = isinstance(exc, ValueError | LookupError | RuntimeError)
    return builtin and own and _raised_by_trialscreen(exc)


def where(exc: BaseException) -> list[str]:
    """The tables, columns, constraints and dbt nodes an error names (identifiers only)."""
    found: list[str] = []
    diag = getattr(exc, "diag", None)  # psycopg2 / psycopg: the server's structured fields
    if diag is not None:
        schema = getattr(diag, "schema_name", None)
        table = getattr(diag, "table_name", None)
        if table:
            found.append(f"{schema}.{table}" if schema else str(table))
        for label in ("column_name", "constraint_name"):
            value = getattr(diag, label, None)
            if value:
                found.append(f"{label.split('_')[0]} {value}")
    text = str(exc)
    found += _QUALIFIED.findall(text)
    found += _DBT_NODE.findall(text)
    return list(dict.fromkeys(found))


def summarize(exc: BaseException) -> str:
    """One PHI-free line: ``<class>[ (SQLSTATE x)][ in <table/model>, ...]``, or the error's
    own text when trialscreen composed it (see :func:`keeps_text`)."""
    name = type(exc).__name__
    if keeps_text(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return (f"{name}: {first}" if first else name)[:_MAX]
    code = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    text = name + (f" (SQLSTATE {code})" if code else "")
    places = where(exc)
    if places:
        text += " in " + ", ".join(places)
    return text[:_MAX]


# what a dbt failure's line says of the database's text: dbt prints nothing (``--log-level
# none``), so the text is only in the exception's ``failures``; the pipeline keeps it in
# ``restricted.build_errors`` (docs/decisions.md, "dbt's errors")
DBT_TEXT_WITHHELD = "the database's message is withheld: it may quote a record"


def dbt_text_kept(table: str) -> str:
    """Where a failed build's database texts were kept: ``restricted.build_errors``."""
    return f"the database's message is kept in {table}"


def dbt_node_summary(message: str) -> str:
    """The kind of a dbt node failure (``Database Error in model x (models/.../x.sql)``,
    ``Got 3 results, configured to fail if != 0``) without the database's text that follows
    it."""
    match = _DBT_KIND.match(message.strip())
    return match.group(0) if match else "error (text withheld: it may quote a record)"
