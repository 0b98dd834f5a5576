"""The rule registry (dbt_project.yml var ``criterion_rules``; docs/adding_a_rule.md): every
rule type of the trial model has a criterion model, every registered model exists and returns
the columns the marts union reads. Cheap: reads files, builds nothing."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml

from trialscreen import trial

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "dbt_project" / "models" / "intermediate" / "clinical"
# the contract of a criterion model (docs/adding_a_rule.md#contract)
CONTRACT = (
    "trial_id", "criterion_id", "patient_mrn", "status", "value_numeric", "value_unit",
    "threshold", "comparator", "uln", "uln_source", "evidence_source", "evidence_id",
    "evidence_at", "evidence_date", "valid_until", "missing_item", "reason", "reason_detail",
)  # fmt: skip


def _registry() -> dict[str, str]:
    project = yaml.safe_load((REPO / "dbt_project" / "dbt_project.yml").read_text())
    return dict(project["vars"]["criterion_rules"])


def _rule_types() -> set[str]:
    """The ``rule`` literals of the discriminated union trial.Criterion."""
    union = typing.get_args(trial.Criterion)[0]
    rules = set()
    for model in typing.get_args(union):
        (literal,) = typing.get_args(model.model_fields["rule"].annotation)
        rules.add(literal)
    return rules


def test_every_rule_type_of_the_trial_model_has_a_registered_model():
    registry = _registry()
    missing = _rule_types() - set(registry)
    assert not missing, f"rule types without a criterion model in criterion_rules: {missing}"
    assert set(registry) == _rule_types() == set(trial.RULES)


def test_every_registered_model_exists_and_returns_the_contract_columns():
    for rule, model in _registry().items():
        path = MODELS / f"{model}.sql"
        assert path.is_file(), f"{rule}: {model}.sql not found"
        sql = path.read_text()
        final = sql[sql.rindex("\nselect") :]
        for column in CONTRACT:
            assert re.search(rf"(\bas {column}\b|^\s+{column},?$|\.{column},?$)", final, re.M), (
                f"{model}: no column {column}"
            )


def test_every_criterion_model_is_registered():
    registered = set(_registry().values())
    on_disk = {p.stem for p in MODELS.glob("int_criteria__*.sql")}
    assert on_disk == registered, on_disk ^ registered
