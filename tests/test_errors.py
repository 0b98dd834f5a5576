"""Exception texts summarized for run messages, audit rows, the CLI and the report
(docs/decisions.md "Free text from source records")."""

from __future__ import annotations

import psycopg2.errors
import pytest

from trialscreen.errors import dbt_node_summary, keeps_text, summarize
from trialscreen.pipeline import ValidationFailed
from trialscreen.transform import DbtBuildError

ROW = "Failing row contains (MRNX000901, Quaresma, 1955-03-14)."


def test_a_database_error_keeps_its_class_and_tables_never_its_text() -> None:
    error = psycopg2.errors.NotNullViolation(
        f'null value in column "sex" of relation marts_candidate.screening_results\n{ROW}'
    )
    assert summarize(error) == "NotNullViolation in marts_candidate.screening_results"


def test_a_duckdb_error_keeps_its_class() -> None:
    import duckdb

    with pytest.raises(duckdb.Error) as caught:
        duckdb.connect().execute("select cast('Quaresma 1955-03-14' as date)")
    assert summarize(caught.value) == type(caught.value).__name__


def test_a_dbt_error_names_the_node_and_the_kind_of_failure_only() -> None:
    error = DbtBuildError(
        "build",
        [("model.trialscreen.stg_csv__patients", f"Database Error in model x | {ROW}")],
    )
    assert "Quaresma" not in str(error) and "1955" not in str(error)
    assert "model.trialscreen.stg_csv__patients: Database Error" in str(error)
    assert summarize(error).startswith("DbtBuildError: dbt build failed: 1 node(s) failed")
    assert dbt_node_summary("Got 3 results, configured to fail if != 0") == (
        "Got 3 results, configured to fail if != 0"
    )


def test_errors_trialscreen_composes_keep_their_text() -> None:
    assert keeps_text(ValidationFailed("quality gate failed, nothing published: x"))
    assert summarize(ValidationFailed("quality gate failed: x")) == (
        "ValidationFailed: quality gate failed: x"
    )


def test_a_value_error_from_a_library_is_summarized() -> None:
    with pytest.raises(ValueError) as caught:
        int("Quaresma")
    assert summarize(caught.value) == "ValueError"


def test_a_dbt_error_points_to_what_exists_not_to_a_log_file() -> None:
    """dbt runs without a log file and prints nothing: the message names the model and its
    file (dbt's own, PHI-free part of the text) and says the text is withheld, or, once the
    pipeline kept it, where (docs/decisions.md "dbt's errors")."""
    message = (
        "Runtime Error in model stg_csv__patients (models/staging/csv/stg_csv__patients.sql)"
        f" | Conversion Error: Could not convert string 'Quaresma' to DATE | {ROW}"
    )
    error = DbtBuildError("build", [("model.trialscreen.stg_csv__patients", message)])
    text = str(error)
    assert "Quaresma" not in text and "1955" not in text
    assert (
        "  model.trialscreen.stg_csv__patients: Runtime Error in model stg_csv__patients "
        "(models/staging/csv/stg_csv__patients.sql)"
    ) in text.splitlines()
    assert "the database's message is withheld" in text.splitlines()[0]
    assert "dbt log" not in text and "output" not in text
    kept = str(error.kept_in("restricted.build_errors")).splitlines()[0]
    assert "the database's message is kept in restricted.build_errors" in kept
    assert "stg_csv__patients" in kept and "Quaresma" not in kept
    assert dbt_node_summary(f"Binder Error: {ROW}") == (
        "error (text withheld: it may quote a record)"
    )
    aborted = str(DbtBuildError("build", []))
    assert "no node result and no error" in aborted and "dbt log" not in aborted
