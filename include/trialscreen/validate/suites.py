"""Quality-gate suites as data: ``expectations/<suite>.yml`` parsed and resolved for one run
(placeholders, ``foreach``, ``schema_map``); the format is in ``expectations/README.md``.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import yaml

EXPECTATIONS_DIR = Path(__file__).resolve().parents[3] / "expectations"
EXPECTATIONS_DIR_ENV = "TRIALSCREEN_EXPECTATIONS_DIR"
DEFAULT_SUITES = ("feeds", "marts")
SCHEMAS = ("raw", "quarantine", "config", "staging", "intermediate", "marts", "restricted", "audit")
PHI_COLUMNS = frozenset({"mrn", "family_name", "given_name", "birth_date", "raw_payload"})
MASK_VALUE = "present"
# a categorized column's value outside its known values (a sender's code or free text)
OTHER_VALUE = "(unlisted)"
# the loader's own columns of raw tables: written by trialscreen, not by a sender
_LOADER_COLUMNS = frozenset({"run_id", "load_id", "loaded_at"})

_DTYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "float": pl.Float64(),
    "int": pl.Int64(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    "bool": pl.Boolean(),
}
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:+-]{1,128}$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class SuiteError(ValueError):
    """A suite file is malformed; the message names the file and the field."""


# --------------------------------------------------------------------------------------------
# suites as data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expectation:
    type: str  # GX snake_case name, e.g. expect_column_values_to_be_between
    kwargs: dict[str, Any]
    blocking: bool
    description: str = ""

    @property
    def column(self) -> str | None:
        for key in ("column", "column_list", "column_set", "column_A"):
            value = self.kwargs.get(key)
            if value is not None:
                if key == "column_A":
                    return f"{value},{self.kwargs.get('column_B')}"
                return value if isinstance(value, str) else ",".join(map(str, value))
        return None


@dataclass(frozen=True)
class Asset:
    name: str  # stable name, e.g. marts.screening_results (independent of schema_map)
    columns: dict[str, str]  # column -> string|float|int|date|timestamp|bool
    expectations: list[Expectation]
    description: str = ""
    table: str | None = None  # schema.table actually read (schema_map applied)
    sql: str | None = None  # a check query (one row of counts)
    where: str | None = None
    masked: tuple[str, ...] = ()
    # column -> known values; anything else is read as OTHER_VALUE (never the value itself)
    categorized: dict[str, tuple[str, ...]] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    required: bool = False  # a missing table is a failure (else: an empty frame)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    settings: dict[str, Any]
    assets: list[Asset]


def expectations_dir() -> Path:
    override = os.environ.get(EXPECTATIONS_DIR_ENV)
    return Path(override).resolve() if override else EXPECTATIONS_DIR


def _substitute(value: Any, context: Mapping[str, Any], where: str) -> Any:
    """``${name}`` placeholders; a string that is only a placeholder keeps the value's type."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{(\w+)\}", value.strip())
        if whole and whole.group(1) in context:
            return context[whole.group(1)]
        try:
            return string.Template(value).substitute({k: str(v) for k, v in context.items()})
        except KeyError as exc:
            raise SuiteError(f"{where}: unknown placeholder ${{{exc.args[0]}}}") from None
        except ValueError as exc:
            raise SuiteError(f"{where}: bad placeholder ({exc})") from None
    if isinstance(value, list):
        return [_substitute(v, context, where) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, context, f"{where}.{k}") for k, v in value.items()}
    return value


def _parse_asset(raw: Mapping[str, Any], where: str) -> Asset:
    unknown = set(raw) - {
        "name", "description", "table", "sql", "where", "columns", "masked", "categorized",
        "requires", "required", "expectations",
    }  # fmt: skip
    if unknown:
        raise SuiteError(f"{where}: unknown field(s) {sorted(unknown)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SuiteError(f"{where}.name: required")
    where = f"{where} ({name})"
    if bool(raw.get("table")) == bool(raw.get("sql")):
        raise SuiteError(f"{where}: exactly one of 'table' or 'sql' is required")
    table = raw.get("table")
    if table is not None and not _NAME.match(str(table)):
        raise SuiteError(f"{where}.table: '{table}' is not schema.table")
    columns = raw.get("columns") or {}
    if not isinstance(columns, dict) or not columns:
        raise SuiteError(f"{where}.columns: a mapping column -> type is required")
    for col, kind in columns.items():
        if kind not in _DTYPES:
            raise SuiteError(f"{where}.columns.{col}: type '{kind}' not in {sorted(_DTYPES)}")
        if col in PHI_COLUMNS:
            raise SuiteError(f"{where}.columns.{col}: PHI columns are never validated")
    masked = tuple(raw.get("masked") or ())
    for col in masked:
        if col not in columns:
            raise SuiteError(f"{where}.masked: '{col}' is not in columns")
    categorized = _parse_categorized(raw.get("categorized"), columns, masked, where)
    if name.startswith("raw."):  # sender-controlled text: masked or categorized only
        exposed = [
            c
            for c, kind in columns.items()
            if kind == "string"
            and c not in _LOADER_COLUMNS
            and c not in masked
            and c not in categorized
        ]
        if exposed:
            raise SuiteError(
                f"{where}.columns: {exposed} of a raw table must be listed under 'masked' or "
                "'categorized' (sender text never reaches Great Expectations as it is)"
            )
    expectations = []
    for i, exp in enumerate(raw.get("expectations") or []):
        ewhere = f"{where}.expectations[{i}]"
        if not isinstance(exp, dict) or not str(exp.get("type", "")).startswith("expect_"):
            raise SuiteError(f"{ewhere}.type: an expect_* name is required")
        if not isinstance(exp.get("blocking"), bool):
            raise SuiteError(f"{ewhere}.blocking: true or false is required")
        extra = set(exp) - {"type", "kwargs", "blocking", "description"}
        if extra:
            raise SuiteError(f"{ewhere}: unknown field(s) {sorted(extra)}")
        expectations.append(
            Expectation(
                type=exp["type"],
                kwargs=dict(exp.get("kwargs") or {}),
                blocking=exp["blocking"],
                description=str(exp.get("description") or ""),
            )
        )
    for req in raw.get("requires") or ():
        if not _NAME.match(str(req)):
            raise SuiteError(f"{where}.requires: '{req}' is not schema.table")
    return Asset(
        name=name,
        description=str(raw.get("description") or ""),
        table=table,
        sql=raw.get("sql"),
        where=raw.get("where"),
        columns=dict(columns),
        masked=masked,
        categorized=categorized,
        requires=tuple(raw.get("requires") or ()),
        required=bool(raw.get("required", False)),
        expectations=expectations,
    )


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _parse_categorized(
    raw: Any, columns: Mapping[str, str], masked: Sequence[str], where: str
) -> dict[str, tuple[str, ...]]:
    """``categorized: {status: [final, amended, ...]}``: read the column as itself when it is
    one of the known values, else as ``(unlisted)`` (so Data Docs, which print unexpected values,
    show ``(unlisted)`` and a count, never what a sender wrote)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}.categorized: a mapping column -> known values is required")
    out: dict[str, tuple[str, ...]] = {}
    for col, values in raw.items():
        if col not in columns or col in masked:
            raise SuiteError(f"{where}.categorized: '{col}' is not an unmasked listed column")
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise SuiteError(f"{where}.categorized.{col}: a list of known values is required")
        if OTHER_VALUE in values:
            raise SuiteError(f"{where}.categorized.{col}: '{OTHER_VALUE}' is the reserved category")
        out[col] = tuple(values)
    return out


def load_suite(
    name: str,
    run_id: str,
    screening_date: date,
    schema_map: Mapping[str, str] | None = None,
    settings: Mapping[str, Any] | None = None,
    directory: Path | None = None,
) -> Suite:
    """Read ``<directory>/<name>.yml`` and resolve its placeholders for one run."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run_id: '{run_id}' has characters outside [A-Za-z0-9_.:+-]")
    path = (directory or expectations_dir()) / f"{name}.yml"
    if not path.is_file():
        raise SuiteError(f"suite '{name}': {path} not found")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or data.get("suite") != name:
        raise SuiteError(f"{path.name}.suite: must be '{name}'")
    merged_settings = {**(data.get("settings") or {}), **(settings or {})}
    mapping = dict(schema_map or {})
    for key in mapping:
        if key not in SCHEMAS or not _NAME.match(mapping[key]):
            raise ValueError(f"schema_map: '{key}' -> '{mapping[key]}' is not a schema mapping")
    context: dict[str, Any] = {
        **merged_settings,
        **{s: mapping.get(s, s) for s in SCHEMAS},
        **{f"published_{s}": s for s in SCHEMAS},
        "run_id": run_id,
        "screening_date": screening_date.isoformat(),
    }
    foreach = data.get("foreach") or {}
    if len(foreach) > 1:
        raise SuiteError(f"{path.name}.foreach: one variable at most")
    bindings: list[dict[str, Any]] = (
        [{var: v} for var, values in foreach.items() for v in values] if foreach else [{}]
    )
    assets: list[Asset] = []
    for i, raw in enumerate(data.get("assets") or []):
        templated = "${" + next(iter(foreach), "\0") + "}" in json.dumps(raw)
        for binding in bindings if templated else [{}]:
            resolved = _substitute(raw, {**context, **binding}, f"{path.name}.assets[{i}]")
            assets.append(_parse_asset(resolved, f"{path.name}.assets[{i}]"))
    names = [a.name for a in assets]
    if len(set(names)) != len(names):
        raise SuiteError(f"{path.name}.assets: duplicate names")
    return Suite(
        name=name,
        description=str(data.get("description") or ""),
        settings=merged_settings,
        assets=assets,
    )
