"""Staging and intermediate/normalized models on a hand-written raw warehouse (conftest.py):
unit spellings and conversions, value issues, status and supersession rules, FHIR subject
resolution, code normalization, and the transform.py entry points."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from trialscreen.pseudonym import patient_key
from trialscreen.transform import DbtBuildError, dbt_target

from .conftest import TEST_KEY


def observation(db: duckdb.DuckDBPyConnection, observation_id: str) -> dict[str, Any]:
    cursor = db.execute(
        "select * from intermediate.int_observations where observation_id = ?", [observation_id]
    )
    names = [column[0] for column in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, f"{observation_id}: expected one row, got {len(rows)}"
    return dict(zip(names, rows[0], strict=True))


def observation_ids(db: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        row[0]
        for row in db.execute("select observation_id from intermediate.int_observations").fetchall()
    }


# ---------------------------------------------------------------- units


def test_creatinine_mg_dl_lowercase_spelling_maps_to_canonical(
    db: duckdb.DuckDBPyConnection,
) -> None:
    row = observation(db, "fhir:f-cr-mgdl")
    assert row["ucum_unit"] == "mg/dL"
    assert row["value_canonical"] == pytest.approx(1.1)
    assert row["canonical_unit"] == "mg/dL"
    assert row["ref_high_canonical"] == pytest.approx(1.2)
    assert row["value_issue"] is None


def test_creatinine_umol_per_l_converts_to_mg_dl_within_one_percent(
    db: duckdb.DuckDBPyConnection,
) -> None:
    row = observation(db, "fhir:f-cr-umol")
    assert row["analyte"] == "creatinine"
    assert row["value_canonical"] == pytest.approx(1.1, rel=0.01)
    assert row["ref_high_canonical"] == pytest.approx(1.2, rel=0.01)


def test_platelets_k_per_ul_and_cells_per_ul_convert_to_10_9_per_l(
    db: duckdb.DuckDBPyConnection,
) -> None:
    assert observation(db, "hl7:MSG1|1|PLT")["value_canonical"] == pytest.approx(45)
    per_ul = observation(db, "hl7:MSG1|2|26515-7")
    assert per_ul["ucum_unit"] == "/uL"
    assert per_ul["value_canonical"] == pytest.approx(210)


def test_fhir_ucum_code_is_preferred_over_the_human_unit(db: duckdb.DuckDBPyConnection) -> None:
    row = observation(db, "fhir:f-plt-code")
    assert row["ucum_unit"] == "10*3/uL"
    assert row["value_canonical"] == pytest.approx(300)


def test_hemoglobin_g_per_l_converts_to_g_dl(db: duckdb.DuckDBPyConnection) -> None:
    assert observation(db, "fhir:f-hgb-gl")["value_canonical"] == pytest.approx(12.5)


def test_ambiguous_g_per_l_resolves_by_analyte(db: duckdb.DuckDBPyConnection) -> None:
    hemoglobin = observation(db, "fhir:f-hgb-big-g")
    platelets = observation(db, "fhir:f-plt-big-g")
    assert (hemoglobin["ucum_unit"], hemoglobin["value_canonical"]) == ("g/L", pytest.approx(13.0))
    assert (platelets["ucum_unit"], platelets["value_canonical"]) == ("10*9/L", pytest.approx(250))


def test_weight_in_pounds_and_height_in_inches_convert(db: duckdb.DuckDBPyConnection) -> None:
    assert observation(db, "csv:wt-1")["value_canonical"] == pytest.approx(154 * 0.45359237)
    assert observation(db, "csv:ht-1")["value_canonical"] == pytest.approx(65 * 2.54)


def test_sodium_meq_per_l_equals_mmol_per_l(db: duckdb.DuckDBPyConnection) -> None:
    assert observation(db, "csv:na-1")["value_canonical"] == pytest.approx(140)


def test_iu_per_l_is_u_per_l(db: duckdb.DuckDBPyConnection) -> None:
    assert observation(db, "hl7:MSG6|1|1742-6")["value_canonical"] == pytest.approx(35)


def test_tumor_size_in_cm_converts_to_mm(db: duckdb.DuckDBPyConnection) -> None:
    row = observation(db, "fhir:f-tumor")
    assert row["value_canonical"] == pytest.approx(25)
    assert row["method_code"] == "CT"


def test_log10_viral_load_converts_to_copies_and_keeps_comparator(
    db: duckdb.DuckDBPyConnection,
) -> None:
    row = observation(db, "fhir:f-vl-log")
    assert row["analyte"] == "hiv_viral_load"
    assert row["value_canonical"] == pytest.approx(10**1.3)
    assert row["value_comparator"] == "<"


# ---------------------------------------------------------------- value issues


def test_unmapped_unit_is_kept_and_flagged(db: duckdb.DuckDBPyConnection) -> None:
    row = observation(db, "fhir:f-hgb-unmapped")
    assert row["value_issue"] == "unmapped_unit"
    assert row["value_canonical"] is None
    assert row["value_raw"] == pytest.approx(12.5)


def test_implausible_hemoglobin_is_kept_and_flagged(db: duckdb.DuckDBPyConnection) -> None:
    row = observation(db, "fhir:f-hgb-implausible")
    assert row["value_issue"] == "implausible"
    assert row["value_canonical"] is None


def test_coded_and_text_results(db: duckdb.DuckDBPyConnection) -> None:
    not_detected = observation(db, "fhir:f-vl-nd")
    assert (not_detected["value_issue"], not_detected["value_code"]) == (None, "260415000")
    assert not_detected["value_code_system"] == "snomed"
    assert observation(db, "fhir:f-vl-text")["value_issue"] == "non_numeric"


def test_performance_status_scales(db: duckdb.DuckDBPyConnection) -> None:
    ecog = observation(db, "fhir:f-ecog")
    assert (ecog["scale"], ecog["value_canonical"]) == ("ecog", 1)
    coded = observation(db, "fhir:f-ecog-coded")  # SNOMED 422894000 = ECOG 2
    assert (coded["scale"], coded["value_canonical"]) == ("ecog", 2)
    lansky = observation(db, "csv:ps-1")
    assert (lansky["analyte"], lansky["scale"], lansky["value_canonical"]) == (
        "lansky",
        "lansky",
        80,
    )


def test_unused_codes_are_dropped(db: duckdb.DuckDBPyConnection) -> None:
    assert "fhir:f-glucose" not in observation_ids(db)


# ---------------------------------------------------------------- statuses and versions


def test_corrected_hl7_result_supersedes_final(db: duckdb.DuckDBPyConnection) -> None:
    ids = observation_ids(db)
    assert "hl7:MSG1|3|2160-0" not in ids
    corrected = observation(db, "hl7:MSG2|1|2160-0")
    assert (corrected["status"], corrected["value_canonical"]) == ("corrected", pytest.approx(1.4))


def test_preliminary_result_is_ignored(db: duckdb.DuckDBPyConnection) -> None:
    ids = observation_ids(db)
    assert "fhir:f-anc-prelim" not in ids
    assert "hl7:MSG3|1|751-8" not in ids
    # the later-issued preliminary does not supersede the final of the same order
    assert observation(db, "hl7:MSG4|1|751-8")["status"] == "final"


def test_cancelled_result_is_excluded(db: duckdb.DuckDBPyConnection) -> None:
    ids = observation_ids(db)
    assert "fhir:f-anc-cancelled" not in ids
    assert "hl7:MSG5|1|1975-2" not in ids


def test_redelivered_fhir_resource_latest_version_wins(db: duckdb.DuckDBPyConnection) -> None:
    assert observation(db, "fhir:f-anc-v")["value_canonical"] == pytest.approx(6.0)


def test_csv_result_without_status_counts_as_final(db: duckdb.DuckDBPyConnection) -> None:
    assert observation(db, "csv:na-1")["status"] == "final"


def test_observation_ids_are_unique(db: duckdb.DuckDBPyConnection) -> None:
    total, distinct = db.execute(
        "select count(*), count(distinct observation_id) from intermediate.int_observations"
    ).fetchone()
    assert total == distinct


# ---------------------------------------------------------------- patients and dates


def test_fhir_subject_resolves_to_mrn_through_patients(db: duckdb.DuckDBPyConnection) -> None:
    staged = db.execute(
        "select distinct patient_mrn from staging.stg_fhir__observations"
    ).fetchall()
    assert staged == [("MRN001",)]
    assert observation(db, "fhir:f-cr-mgdl")["patient_mrn"] == "MRN001"


def test_patients_one_row_per_mrn_with_pseudonym_key(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute(
        "select patient_mrn, patient_key, family_name, sex"
        " from intermediate.int_patients order by 1"
    ).fetchall()
    assert [row[0] for row in rows] == ["MRN001", "MRN002", "MRN003"]
    assert all(row[1] == patient_key(row[0], TEST_KEY) for row in rows)
    assert rows[0][2] == "Newname"  # the later-loaded FHIR version wins
    assert [row[3] for row in rows] == ["female", "male", "female"]


def test_effective_date_is_the_local_date(db: duckdb.DuckDBPyConnection) -> None:
    row = observation(db, "fhir:f-late-evening")  # 2026-11-01 23:30 UTC, timezone UTC
    assert str(row["effective_date"]) == "2026-11-01"


# ---------------------------------------------------------------- conditions and medications


def test_icd10_codes_are_normalized_without_the_dot(db: duckdb.DuckDBPyConnection) -> None:
    rows = dict(db.execute("select evidence_id, code from intermediate.int_conditions").fetchall())
    assert rows["cond-1"] == "C787"
    assert rows["cc-1"] == "C499"
    assert rows["cond-2"] == "9581/3"
    assert rows["cc-2"] is None


def test_condition_counting_rules(db: duckdb.DuckDBPyConnection) -> None:
    rows = {
        row[0]: row[1:]
        for row in db.execute(
            "select evidence_id, code_system, is_counting, patient_mrn"
            " from intermediate.int_conditions"
        ).fetchall()
    }
    assert rows["cond-1"] == ("icd10cm", True, "MRN001")
    assert rows["cond-2"] == ("icdo3", True, "MRN001")  # no status = counts
    assert rows["cc-1"][1] is False  # refuted
    assert rows["cc-2"][:2] == ("text", False)  # resolved


def test_medications_normalized_with_drug_text(db: duckdb.DuckDBPyConnection) -> None:
    rows = {
        row[0]: row[1:]
        for row in db.execute(
            "select evidence_id, resource_type, code_system, code, drug_text, status, patient_mrn "
            "from intermediate.int_medications"
        ).fetchall()
    }
    assert rows["med-1"] == (
        "MedicationStatement",
        "rxnorm",
        "1547545",
        "keytruda pembrolizumab 100 mg",
        "completed",
        "MRN001",
    )
    assert rows["m-1"][:4] == ("MedicationRequest", "atc", "J05AR20", "biktarvy")
    assert rows["m-1"][4] == "active"


def test_seeds_land_in_reference_schema(db: duckdb.DuckDBPyConnection) -> None:
    count = db.execute(
        "select count(*) from reference.loinc_analytes where analyte = 'anc'"
    ).fetchone()
    assert count == (3,)  # 751-8 automated, 753-4 manual, 26499-4 method unspecified


# ---------------------------------------------------------------- transform.py


@pytest.mark.parametrize(
    ("url", "target", "key", "value"),
    [
        ("warehouse.duckdb", "duckdb", "TRIALSCREEN_DUCKDB_PATH", "warehouse.duckdb"),
        ("duckdb:////tmp/w.duckdb", "duckdb", "TRIALSCREEN_DUCKDB_PATH", "/tmp/w.duckdb"),
        (
            "postgresql://ts:s%40cret@db:5433/screening",
            "postgres",
            "TRIALSCREEN_PG_PASSWORD",
            "s@cret",
        ),
        ("postgresql://ts@db/screening", "postgres", "TRIALSCREEN_PG_PORT", "5432"),
    ],
)
def test_warehouse_url_selects_the_dbt_target(url: str, target: str, key: str, value: str) -> None:
    resolved = dbt_target(url)
    assert resolved.target == target
    assert resolved.env[key].endswith(value)


def test_unsupported_warehouse_url_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        dbt_target("mysql://db/x")


def test_build_error_names_the_failed_nodes() -> None:
    error = DbtBuildError("build", [("model.trialscreen.int_observations", "Binder Error: x")])
    assert "model.trialscreen.int_observations" in str(error)
    assert "1 node(s) failed" in str(error)


# ---------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_same_models_build_on_postgresql(db: duckdb.DuckDBPyConnection, tmp_path: Any) -> None:
    """The raw fixture rows copied to a disposable PostgreSQL cluster build with the same
    models (cross-database SQL) and give the same canonical values."""
    psycopg2 = pytest.importorskip("psycopg2")
    from trialscreen import schema
    from trialscreen.transform import seed_and_build

    from ..pg import start_cluster
    from .conftest import BUILD_EXCLUDE, BUILD_SELECT, SCREENING_DATE, _sql_type

    pg_types = {"double": "double precision"}
    try:
        cluster = start_cluster()
    except (FileNotFoundError, OSError) as error:  # no server binaries on this machine
        pytest.skip(f"PostgreSQL not available: {error}")
    try:
        admin = psycopg2.connect(cluster.url)
        admin.autocommit = True
        admin.cursor().execute("create database trialscreen_dbt")
        admin.close()
        url = cluster.url_for("trialscreen_dbt")
        with psycopg2.connect(url) as pg, pg.cursor() as cur:
            cur.execute("create schema raw; create schema restricted")
            for feed in schema.FEEDS:
                for entity in schema.RAW_TABLES:
                    columns = {**schema.TABLE_COLUMNS[entity], **schema.LOAD_COLUMNS}
                    table = schema.raw_table(feed, entity)
                    ddl = ", ".join(
                        f"{name} {pg_types.get(_sql_type(dtype), _sql_type(dtype))}"
                        for name, dtype in columns.items()
                    )
                    cur.execute(f"create table raw.{table} ({ddl})")
                    rows = db.execute(f"select {', '.join(columns)} from raw.{table}").fetchall()
                    if rows:
                        placeholders = ", ".join(["%s"] * len(columns))
                        cur.executemany(f"insert into raw.{table} values ({placeholders})", rows)
            cur.execute("create table restricted.patient_keys (mrn varchar, patient_key varchar)")
            keys = db.execute("select mrn, patient_key from restricted.patient_keys").fetchall()
            cur.executemany("insert into restricted.patient_keys values (%s, %s)", keys)
        seed_and_build(
            url,
            SCREENING_DATE,
            "run-pg",
            select=BUILD_SELECT,
            exclude=BUILD_EXCLUDE,
            artifacts_dir=tmp_path,
        )
        query = (
            "select observation_id, value_canonical, value_issue"
            " from intermediate.int_observations order by observation_id"
        )
        with psycopg2.connect(url) as pg, pg.cursor() as cur:
            cur.execute(query)
            on_postgres = cur.fetchall()
        on_duckdb = db.execute(query).fetchall()
        assert [row[0] for row in on_postgres] == [row[0] for row in on_duckdb]
        for (oid, pg_value, pg_issue), (_, duck_value, duck_issue) in zip(
            on_postgres, on_duckdb, strict=True
        ):
            assert pg_issue == duck_issue, oid
            assert (pg_value is None) == (duck_value is None), oid
            if pg_value is not None:
                assert float(pg_value) == pytest.approx(duck_value), oid
    finally:
        cluster.stop()
