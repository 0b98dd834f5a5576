"""Trial definitions as data: AXIOM loads, malformed definitions fail naming the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from trialscreen.trial import (
    CONFIG_COLUMNS,
    TrialDefinitionError,
    definition_hash,
    load_trial,
    parse_trial,
    trial_tables,
)

REPO = Path(__file__).resolve().parents[1]
AXIOM = REPO / "include" / "trials" / "axiom.yml"
SECOND = REPO / "include" / "trials" / "examples" / "second_trial.yml"


def axiom_data() -> dict[str, Any]:
    return yaml.safe_load(AXIOM.read_text(encoding="utf-8"))


def criterion(data: dict[str, Any], criterion_id: str) -> tuple[int, dict[str, Any]]:
    for i, crit in enumerate(data["criteria"]):
        if crit["id"] == criterion_id:
            return i, crit
    raise KeyError(criterion_id)


def fails_with(data: dict[str, Any]) -> str:
    with pytest.raises(TrialDefinitionError) as info:
        parse_trial(data, source="axiom.yml")
    return str(info.value)


def test_axiom_loads_by_id_with_its_cohorts_and_criteria_in_order():
    trial = load_trial("axiom")
    assert trial.trial_id == "axiom" and trial.nct_id == "NCT05333458"
    assert [c.id for c in trial.cohorts] == ["safety_run_in", "asps"]
    ids = [c.id for c in trial.criteria]
    assert ids[:3] == ["age", "diagnosis_sts", "diagnosis_asps"]
    assert {"anc", "platelets", "hemoglobin", "bilirubin", "ast", "alt", "renal", "albumin",
            "sodium", "hiv", "performance_status", "measurable_disease"} <= set(ids)  # fmt: skip
    assert trial.cockcroft_gault is not None
    assert (trial.cockcroft_gault.compare, trial.cockcroft_gault.threshold) == ("normalized", 30)
    assert trial.cockcroft_gault.weight_rule == "actual"


def test_axiom_loads_by_path_identically():
    assert load_trial(AXIOM) == load_trial("axiom")


def test_missing_threshold_names_the_field():
    data = axiom_data()
    i, crit = criterion(data, "anc")
    del crit["threshold"]
    assert f"axiom.yml: criteria[{i}].threshold: Field required" in fails_with(data)


def test_non_numeric_threshold_names_the_field():
    data = axiom_data()
    i, crit = criterion(data, "platelets")
    crit["threshold"] = "a hundred"
    assert f"axiom.yml: criteria[{i}].threshold: Input should be a valid number" in fails_with(data)


def test_unknown_rule_names_the_field():
    data = axiom_data()
    i, crit = criterion(data, "albumin")
    crit["rule"] = "lab_minimum"
    message = fails_with(data)
    assert f"axiom.yml: criteria[{i}].rule:" in message and "lab_minimum" in message


def test_bad_cohort_reference_names_the_field():
    data = axiom_data()
    i, crit = criterion(data, "research_biopsy")
    crit["cohorts"] = ["aspss"]
    assert f"criteria[{i}].cohorts: unknown cohort 'aspss'" in fails_with(data)


def test_unknown_analyte_names_the_field():
    data = axiom_data()
    i, crit = criterion(data, "sodium")
    crit["analyte"] = "natrium"
    assert f"criteria[{i}].analyte: unknown analyte 'natrium'" in fails_with(data)


def test_unknown_modifier_condition_names_the_field():
    data = axiom_data()
    i, crit = criterion(data, "bilirubin")
    crit["modifiers"][0]["condition"] = "gilberts"
    assert f"criteria[{i}].modifiers[0].condition: unknown condition concept" in fails_with(data)


def test_unknown_key_is_rejected():
    data = axiom_data()
    data["cockcroft_gault"]["wieght_rule"] = "actual"
    assert "cockcroft_gault.wieght_rule: Extra inputs are not permitted" in fails_with(data)


def test_duplicate_criterion_id_is_rejected():
    data = axiom_data()
    data["criteria"].append(copy.deepcopy(data["criteria"][0]))
    assert "duplicate criterion id 'age'" in fails_with(data)


def test_renal_rule_requires_cockcroft_gault_settings():
    data = axiom_data()
    del data["cockcroft_gault"]
    assert "needs a cockcroft_gault block" in fails_with(data)


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text("trial_id: [unclosed", encoding="utf-8")
    with pytest.raises(TrialDefinitionError, match="broken.yml"):
        load_trial(path)


def test_unknown_trial_id_fails_clearly():
    with pytest.raises(TrialDefinitionError, match="no such trial"):
        load_trial("no_such_trial")


def test_hash_is_stable_across_formatting_and_key_order():
    trial = load_trial("axiom")
    reordered = dict(reversed(list(axiom_data().items())))
    assert definition_hash(parse_trial(reordered)) == definition_hash(trial)
    assert definition_hash(trial) == definition_hash(load_trial("axiom"))
    assert len(definition_hash(trial)) == 64


def test_hash_changes_when_a_threshold_changes():
    data = axiom_data()
    _, crit = criterion(data, "anc")
    crit["threshold"] = 1.5
    assert definition_hash(parse_trial(data)) != definition_hash(load_trial("axiom"))


def test_second_trial_is_data_only():
    second = load_trial(SECOND)
    assert [c.id for c in second.cohorts] == ["main"]
    assert second.cockcroft_gault is not None and second.cockcroft_gault.compare == "absolute"


def test_trial_tables_have_the_config_schema_and_one_row_per_cohort_criterion():
    axiom, second = load_trial("axiom"), load_trial(SECOND)
    tables = trial_tables([axiom, second])
    assert set(tables) == set(CONFIG_COLUMNS)
    for name, frame in tables.items():
        assert dict(frame.schema) == CONFIG_COLUMNS[name], name
    crit = tables["trial_criteria"]
    axiom_rows = crit.filter(crit["trial_id"] == "axiom")
    expected = sum(len(axiom.cohorts_of(c)) for c in axiom.criteria)
    assert axiom_rows.height == expected
    anc = crit.filter((crit["trial_id"] == "example_second") & (crit["criterion_id"] == "anc"))
    assert anc.select("threshold", "operator", "window_days").rows() == [(1.5, ">=", 14)]
    settings = tables["trial_settings"].filter(tables["trial_settings"]["trial_id"] == "axiom")
    assert settings.select("cg_compare", "cg_threshold", "weight_window_days").rows() == [
        ("normalized", 30.0, 90)
    ]
    modifiers = tables["trial_criterion_concepts"].filter(
        tables["trial_criterion_concepts"]["role"] == "modifier"
    )
    assert sorted(
        modifiers.select("criterion_id", "concept", "modifier_uln_multiplier").rows()
    ) == [
        ("alt", "liver_metastasis", 5.0),
        ("ast", "liver_metastasis", 5.0),
        ("bilirubin", "gilbert", 3.0),
    ]


def test_duplicate_trial_ids_are_rejected_in_tables():
    axiom = load_trial("axiom")
    with pytest.raises(TrialDefinitionError, match="duplicate trial_id"):
        trial_tables([axiom, axiom])
