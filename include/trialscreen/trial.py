"""Trial definitions as data (docs/specification.md#trials-are-data).

A trial is a YAML file under ``include/trials/`` (``axiom.yml``). :func:`load_trial` validates
it into a :class:`TrialDefinition` (pydantic, ``extra="forbid"``) and raises
:class:`TrialDefinitionError` whose message names the file and the field path::

    axiom.yml: criteria[3].threshold: Input should be a valid number

:func:`trial_tables` flattens one or more definitions into long-format tables that the runner
writes into the warehouse schema ``config`` before dbt runs; every threshold the SQL applies
is read from these tables (dbt source ``config``), never written as a literal in a model.
A second trial is therefore one more YAML file, no SQL change.

Criterion rules (the ``rule`` key of each criterion):

========================== ==========================================================
``min_age``                age in whole years on the screening date >= ``threshold``
``diagnosis``              a condition of ``concepts`` (``text_concepts`` matched on
                           text): met with an ``advanced_concepts`` condition, review
                           without, not_met with none
``ici_refractory_progression``  prior ICI -> progression after first ICI start
``measurable_disease``     RECIST sizes from ``recist``
``performance_status``     ECOG <= ``ecog_max`` or Karnofsky/Lansky >= ``karnofsky_min``
``lab``                    latest ``analyte`` in the window ``operator`` ``threshold``
``lab_uln``                latest ``analyte`` <= ``uln_multiplier`` x ULN (``modifiers``
                           raise the multiplier for a coded condition)
``renal``                  creatinine <= ``uln_multiplier`` x ULN OR Cockcroft-Gault
                           (``cockcroft_gault`` block) >= its threshold
``hiv``                    no HIV, or ART + viral load < ``undetectable_below``
``review``                 always review; ``mentions`` concepts are named in the reason
========================== ==========================================================

Each rule is decided by the dbt model the registry names (``dbt_project.yml`` var
``criterion_rules``); adding a rule type is one model plus one registry entry
(docs/adding_a_rule.md), and ``tests/test_criterion_registry.py`` fails while a rule here has
no model.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import polars as pl
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

PACKAGE_DIR = Path(__file__).resolve().parent
TRIALS_DIR = Path(os.environ.get("TRIALSCREEN_TRIALS_DIR", PACKAGE_DIR.parent / "trials"))
SEEDS_DIR = PACKAGE_DIR.parents[1] / "dbt_project" / "seeds"

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63)]

# Used only when the dbt seeds are not next to the package (an installed wheel); the seeds
# (loinc_analytes.csv, condition_codes.csv) are the source of truth.
_FALLBACK_ANALYTES = frozenset(
    {
        "anc", "platelets", "hemoglobin", "bilirubin", "ast", "alt", "creatinine", "albumin",
        "sodium", "wbc", "weight", "height", "ecog", "karnofsky", "hiv_viral_load", "tumor_size",
        "disease_status",
    }
)  # fmt: skip
_FALLBACK_CONCEPTS = frozenset(
    {
        "sts", "asps", "metastasis", "liver_metastasis", "gilbert", "hiv", "dysphagia",
        "gastrostomy", "pregnancy", "progression",
    }
)  # fmt: skip


class TrialDefinitionError(ValueError):
    """A trial definition that cannot be used; the message names the file and field path."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- settings


class Cohort(_Model):
    id: Identifier
    title: str


class HeightRule(_Model):
    """Adults: latest height measured at age >= ``adult_age_years`` (any date); younger
    patients: latest height within ``child_window_days``."""

    adult_age_years: PositiveInt = 18
    child_window_days: PositiveInt = 365


class Windows(_Model):
    """Look-back windows in days, inclusive at both ends (docs/clinical-rules.md#windows)."""

    labs: PositiveInt = 28
    performance: PositiveInt = 28
    tumor: PositiveInt = 28
    hiv_viral_load: PositiveInt = 28
    weight: PositiveInt = 90
    height: HeightRule = HeightRule()


class CockcroftGault(_Model):
    weight_rule: Literal["actual", "ideal", "adjusted"] = "actual"
    adjusted_factor: PositiveFloat = 0.4
    bsa_formula: Literal["mosteller"] = "mosteller"
    compare: Literal["normalized", "absolute"] = "normalized"
    threshold: PositiveFloat


class Recist(_Model):
    """RECIST 1.1 minimum sizes in mm."""

    ct_mr_caliper_mm: PositiveFloat = 10
    chest_xray_mm: PositiveFloat = 20
    nodal_short_axis_mm: PositiveFloat = 15


# --------------------------------------------------------------------------- criteria


class _Criterion(_Model):
    id: Identifier
    label: str | None = None  # short name used in reasons ("ANC"); defaults to the id
    cohorts: list[Identifier] | Literal["all"] = "all"
    description: str | None = None


class _AnalyteCriterion(_Criterion):
    analyte: Identifier

    @field_validator("analyte")
    @classmethod
    def _known_analyte(cls, value: str, info: ValidationInfo) -> str:
        known = (info.context or {}).get("analytes", _FALLBACK_ANALYTES)
        if value not in known:
            raise ValueError(f"unknown analyte '{value}' (known: {', '.join(sorted(known))})")
        return value


def _check_concepts(values: list[str], info: ValidationInfo) -> list[str]:
    known = (info.context or {}).get("concepts", _FALLBACK_CONCEPTS)
    for value in values:
        if value not in known:
            raise ValueError(
                f"unknown condition concept '{value}' (known: {', '.join(sorted(known))})"
            )
    return values


class MinAge(_Criterion):
    rule: Literal["min_age"]
    threshold: float


class Diagnosis(_Criterion):
    rule: Literal["diagnosis"]
    concepts: list[Identifier] = Field(min_length=1)
    text_concepts: list[Identifier] = []  # matched on code text/display (flagged text-matched)
    advanced_concepts: list[Identifier] = ["metastasis"]

    _v = field_validator("concepts", "text_concepts", "advanced_concepts")(_check_concepts)


class IciRefractoryProgression(_Criterion):
    rule: Literal["ici_refractory_progression"]


class MeasurableDisease(_Criterion):
    rule: Literal["measurable_disease"]


class PerformanceStatus(_Criterion):
    rule: Literal["performance_status"]
    ecog_max: int = Field(ge=0, le=5)
    karnofsky_min: int = Field(ge=0, le=100)
    lansky_under_age: PositiveInt = 16


class Lab(_AnalyteCriterion):
    rule: Literal["lab"]
    operator: Literal[">=", ">", "<=", "<"]
    threshold: float
    unit: str


class UlnModifier(_Model):
    condition: Identifier
    uln_multiplier: PositiveFloat

    _v = field_validator("condition")(lambda v, info: _check_concepts([v], info)[0])


class LabUln(_AnalyteCriterion):
    rule: Literal["lab_uln"]
    uln_multiplier: PositiveFloat
    modifiers: list[UlnModifier] = []


class Renal(_AnalyteCriterion):
    rule: Literal["renal"]
    analyte: Identifier = "creatinine"
    uln_multiplier: PositiveFloat


class Hiv(_Criterion):
    rule: Literal["hiv"]
    undetectable_below: PositiveFloat = 50  # copies/mL


class Review(_Criterion):
    rule: Literal["review"]
    mentions: list[Identifier] = []

    _v = field_validator("mentions")(_check_concepts)


Criterion = Annotated[
    MinAge
    | Diagnosis
    | IciRefractoryProgression
    | MeasurableDisease
    | PerformanceStatus
    | Lab
    | LabUln
    | Renal
    | Hiv
    | Review,
    Field(discriminator="rule"),
]

RULES = (
    "min_age", "diagnosis", "ici_refractory_progression", "measurable_disease",
    "performance_status", "lab", "lab_uln", "renal", "hiv", "review",
)  # fmt: skip


class TrialDefinition(_Model):
    trial_id: Identifier
    title: str
    nct_id: str | None = Field(default=None, pattern=r"^NCT\d{8}$")
    cohorts: list[Cohort] = Field(min_length=1)
    windows: Windows = Windows()
    cockcroft_gault: CockcroftGault | None = None
    recist: Recist = Recist()
    criteria: list[Criterion] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> TrialDefinition:
        cohort_ids = [c.id for c in self.cohorts]
        if len(set(cohort_ids)) != len(cohort_ids):
            raise ValueError("cohorts: duplicate cohort id")
        seen: set[str] = set()
        for i, crit in enumerate(self.criteria):
            if crit.id in seen:
                raise ValueError(f"criteria[{i}].id: duplicate criterion id '{crit.id}'")
            seen.add(crit.id)
            if crit.cohorts != "all":
                for cohort in crit.cohorts:
                    if cohort not in cohort_ids:
                        raise ValueError(
                            f"criteria[{i}].cohorts: unknown cohort '{cohort}' "
                            f"(defined: {', '.join(cohort_ids)})"
                        )
            if isinstance(crit, Renal) and self.cockcroft_gault is None:
                raise ValueError(
                    f"criteria[{i}]: rule 'renal' needs a cockcroft_gault block at the top level"
                )
        for cohort in cohort_ids:
            if not any(cohort in self.cohorts_of(c) for c in self.criteria):
                raise ValueError(f"cohorts: cohort '{cohort}' has no criteria")
        return self

    def cohorts_of(self, criterion: _Criterion) -> list[str]:
        if criterion.cohorts == "all":
            return [c.id for c in self.cohorts]
        return list(criterion.cohorts)


# --------------------------------------------------------------------------- loading


def _seed_values(name: str, column: str) -> frozenset[str] | None:
    path = SEEDS_DIR / f"{name}.csv"
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8") as handle:
        values = {row[column] for row in csv.DictReader(handle) if row.get(column)}
    return frozenset(values) or None


def validation_context() -> dict[str, frozenset[str]]:
    """Known analytes and condition concepts: the dbt seeds when present, else built in."""
    analytes = _seed_values("loinc_analytes", "analyte") or _FALLBACK_ANALYTES
    concepts = _seed_values("condition_codes", "concept") or _FALLBACK_CONCEPTS
    return {"analytes": analytes, "concepts": concepts}


def _loc(loc: tuple[int | str, ...], error_type: str) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in RULES and parts and parts[-1].startswith("["):
            continue  # discriminated-union tag, not a field
        else:
            parts.append(("." if parts else "") + item)
    if error_type in {"union_tag_invalid", "union_tag_not_found"}:
        parts.append(".rule")
    return "".join(parts)


def _format(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        path = _loc(tuple(err["loc"]), err["type"])
        msg = err["msg"].removeprefix("Value error, ")
        # model-level checks already name their field path in the message
        lines.append(f"{source}: {path}: {msg}" if path else f"{source}: {msg}")
    if len(lines) > MAX_ERROR_LINES:  # the wrong file altogether: say so, do not list it all
        more = len(lines) - MAX_ERROR_LINES
        lines = [*lines[:MAX_ERROR_LINES], f"{source}: ... and {more} more errors"]
    return "\n".join(lines)


def parse_trial(data: Any, source: str = "<trial>") -> TrialDefinition:
    try:
        return TrialDefinition.model_validate(data, context=validation_context())
    except ValidationError as exc:
        raise TrialDefinitionError(_format(source, exc)) from None


_TRIAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_TRIAL_FILE_BYTES = 1 << 20  # a definition is a few KiB; anything larger is the wrong file
MAX_ERROR_LINES = 20


def trial_ids() -> list[str]:
    """The ids ``--trial`` accepts by name: the ``*.yml`` files of the trials folder."""
    if not TRIALS_DIR.is_dir():
        return []
    return sorted(p.stem for p in TRIALS_DIR.glob("*.yml") if _TRIAL_ID.match(p.stem))


def load_trial(path_or_id: str | Path) -> TrialDefinition:
    """Load a definition from a YAML path, or by id from ``include/trials/<id>.yml``.

    Errors name the file, a line and column or a field path, never the file's text: a wrong
    file passed by mistake (a feed extract) must not be echoed to a terminal or a log."""
    path = Path(path_or_id)
    if not path.is_file():
        text = str(path_or_id)
        candidate = TRIALS_DIR / f"{text}.yml"
        if not _TRIAL_ID.match(text) or not candidate.is_file():
            known = ", ".join(trial_ids()) or "none"
            raise TrialDefinitionError(
                f"{text[:80]}: no such trial file or id in {TRIALS_DIR} (trial ids: {known})"
            )
        path = candidate
    try:
        if path.stat().st_size > MAX_TRIAL_FILE_BYTES:
            raise TrialDefinitionError(
                f"{path.name}: {path.stat().st_size} bytes, not a trial definition "
                f"(at most {MAX_TRIAL_FILE_BYTES} bytes)"
            )
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise TrialDefinitionError(f"{path.name}: not UTF-8 (byte {exc.start})") from None
    except yaml.YAMLError as exc:  # its text quotes the offending line: position only
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise TrialDefinitionError(
            f"{path.name}: not valid YAML ({type(exc).__name__}{where})"
        ) from None
    if not isinstance(data, dict):
        raise TrialDefinitionError(f"{path.name}: expected a mapping at the top level")
    return parse_trial(data, source=path.name)


def definition_hash(trial: TrialDefinition) -> str:
    """sha256 of the canonical JSON of the validated definition (defaults filled in), so
    formatting, key order and comments in the YAML do not change it."""
    canonical = json.dumps(trial.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- config tables

CONFIG_COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "trials": {
        "trial_id": pl.String(),
        "title": pl.String(),
        "nct_id": pl.String(),
        "definition_hash": pl.String(),
    },
    "trial_cohorts": {
        "trial_id": pl.String(),
        "cohort_id": pl.String(),
        "cohort_ordinal": pl.Int64(),
        "title": pl.String(),
    },
    # one row per (trial, cohort, criterion)
    "trial_criteria": {
        "trial_id": pl.String(),
        "cohort_id": pl.String(),
        "criterion_id": pl.String(),
        "ordinal": pl.Int64(),
        "label": pl.String(),
        "rule": pl.String(),
        "analyte": pl.String(),
        "operator": pl.String(),  # >=, >, <=, < (lab); <= for lab_uln/renal
        "threshold": pl.Float64(),  # lab/min_age threshold; hiv: undetectable below
        "unit": pl.String(),
        "uln_multiplier": pl.Float64(),
        "ecog_max": pl.Float64(),
        "karnofsky_min": pl.Float64(),
        "lansky_under_age": pl.Float64(),
        "window_days": pl.Int64(),
    },
    # concepts a criterion refers to, role: diagnosis, diagnosis_text, advanced, modifier, mention
    "trial_criterion_concepts": {
        "trial_id": pl.String(),
        "criterion_id": pl.String(),
        "role": pl.String(),
        "concept": pl.String(),
        "modifier_uln_multiplier": pl.Float64(),
    },
    # one row per trial
    "trial_settings": {
        "trial_id": pl.String(),
        "labs_window_days": pl.Int64(),
        "performance_window_days": pl.Int64(),
        "tumor_window_days": pl.Int64(),
        "hiv_viral_load_window_days": pl.Int64(),
        "weight_window_days": pl.Int64(),
        "height_adult_age_years": pl.Int64(),
        "height_child_window_days": pl.Int64(),
        "cg_weight_rule": pl.String(),
        "cg_adjusted_factor": pl.Float64(),
        "cg_bsa_formula": pl.String(),
        "cg_compare": pl.String(),
        "cg_threshold": pl.Float64(),
        "recist_ct_mr_caliper_mm": pl.Float64(),
        "recist_chest_xray_mm": pl.Float64(),
        "recist_nodal_short_axis_mm": pl.Float64(),
    },
}


def _window(trial: TrialDefinition, crit: _Criterion) -> int | None:
    w = trial.windows
    if isinstance(crit, Lab | LabUln | Renal):
        return w.hiv_viral_load if crit.analyte == "hiv_viral_load" else w.labs
    if isinstance(crit, PerformanceStatus):
        return w.performance
    if isinstance(crit, MeasurableDisease):
        return w.tumor
    if isinstance(crit, Hiv):
        return w.hiv_viral_load
    return None


def _criterion_rows(trial: TrialDefinition) -> Iterable[dict[str, Any]]:
    for ordinal, crit in enumerate(trial.criteria, start=1):
        base: dict[str, Any] = {
            "trial_id": trial.trial_id,
            "criterion_id": crit.id,
            "ordinal": ordinal,
            "label": crit.label or crit.id,
            "rule": crit.rule,
            "analyte": getattr(crit, "analyte", None),
            "operator": None,
            "threshold": None,
            "unit": None,
            "uln_multiplier": getattr(crit, "uln_multiplier", None),
            "ecog_max": None,
            "karnofsky_min": None,
            "lansky_under_age": None,
            "window_days": _window(trial, crit),
        }
        if isinstance(crit, Lab):
            base.update(operator=crit.operator, threshold=crit.threshold, unit=crit.unit)
        elif isinstance(crit, LabUln | Renal):
            base.update(operator="<=")
        elif isinstance(crit, MinAge):
            base.update(operator=">=", threshold=crit.threshold, unit="years")
        elif isinstance(crit, Hiv):
            base.update(operator="<", threshold=crit.undetectable_below, unit="{copies}/mL")
        elif isinstance(crit, PerformanceStatus):
            base.update(
                ecog_max=crit.ecog_max,
                karnofsky_min=crit.karnofsky_min,
                lansky_under_age=crit.lansky_under_age,
            )
        for cohort in trial.cohorts_of(crit):
            yield {**base, "cohort_id": cohort}


def _concept_rows(trial: TrialDefinition) -> Iterable[dict[str, Any]]:
    def row(crit: _Criterion, role: str, concept: str, mult: float | None = None) -> dict[str, Any]:
        return {
            "trial_id": trial.trial_id,
            "criterion_id": crit.id,
            "role": role,
            "concept": concept,
            "modifier_uln_multiplier": mult,
        }

    for crit in trial.criteria:
        if isinstance(crit, Diagnosis):
            yield from (row(crit, "diagnosis", c) for c in crit.concepts)
            yield from (row(crit, "diagnosis_text", c) for c in crit.text_concepts)
            yield from (row(crit, "advanced", c) for c in crit.advanced_concepts)
        elif isinstance(crit, LabUln):
            yield from (
                row(crit, "modifier", m.condition, m.uln_multiplier) for m in crit.modifiers
            )
        elif isinstance(crit, Review):
            yield from (row(crit, "mention", c) for c in crit.mentions)


def _settings_row(trial: TrialDefinition) -> dict[str, Any]:
    w, cg, r = trial.windows, trial.cockcroft_gault, trial.recist
    return {
        "trial_id": trial.trial_id,
        "labs_window_days": w.labs,
        "performance_window_days": w.performance,
        "tumor_window_days": w.tumor,
        "hiv_viral_load_window_days": w.hiv_viral_load,
        "weight_window_days": w.weight,
        "height_adult_age_years": w.height.adult_age_years,
        "height_child_window_days": w.height.child_window_days,
        "cg_weight_rule": cg.weight_rule if cg else None,
        "cg_adjusted_factor": cg.adjusted_factor if cg else None,
        "cg_bsa_formula": cg.bsa_formula if cg else None,
        "cg_compare": cg.compare if cg else None,
        "cg_threshold": cg.threshold if cg else None,
        "recist_ct_mr_caliper_mm": r.ct_mr_caliper_mm,
        "recist_chest_xray_mm": r.chest_xray_mm,
        "recist_nodal_short_axis_mm": r.nodal_short_axis_mm,
    }


def trial_tables(trials: list[TrialDefinition]) -> dict[str, pl.DataFrame]:
    """The ``config.*`` tables for these trials (names and dtypes in :data:`CONFIG_COLUMNS`)."""
    ids = [t.trial_id for t in trials]
    if len(set(ids)) != len(ids):
        raise TrialDefinitionError(f"duplicate trial_id among {ids}")
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIG_COLUMNS}
    for trial in trials:
        rows["trials"].append(
            {
                "trial_id": trial.trial_id,
                "title": trial.title,
                "nct_id": trial.nct_id,
                "definition_hash": definition_hash(trial),
            }
        )
        rows["trial_cohorts"].extend(
            {"trial_id": trial.trial_id, "cohort_id": c.id, "cohort_ordinal": i, "title": c.title}
            for i, c in enumerate(trial.cohorts, start=1)
        )
        rows["trial_criteria"].extend(_criterion_rows(trial))
        rows["trial_criterion_concepts"].extend(_concept_rows(trial))
        rows["trial_settings"].append(_settings_row(trial))
    return {
        name: pl.DataFrame(rows[name], schema=schema, orient="row")
        if rows[name]
        else pl.DataFrame(schema=schema)
        for name, schema in CONFIG_COLUMNS.items()
    }


def write_trial_tables_duckdb(
    con: Any, tables: dict[str, pl.DataFrame], schema: str = "config"
) -> None:
    """Replace ``config.*`` in a DuckDB connection (tests, the embedded warehouse)."""
    con.execute(f"create schema if not exists {schema}")
    for name, frame in tables.items():
        arrow = frame.to_arrow()  # noqa: F841 - referenced by name in the SQL below
        con.execute(f"create or replace table {schema}.{name} as select * from arrow")
