"""One parse of the dbt project serves every night (docs/decisions.md "One dbt parse per
process", "Staging tests read the new loads"): the load id an incremental night continues from
is read when the staging tests compile, so two nights with different load ids share the parse
and each night's tests still read only its new loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from trialscreen import dbt_parse, transform

pytestmark = pytest.mark.slow  # dbt parses the project (about 10 s)

NODE = "stg_hl7__observations"


def _compiled_tests(artifacts: Path) -> dict[str, str]:
    """The compiled SQL of the data tests of NODE, by file name."""
    compiled = artifacts / "target" / "compiled" / "trialscreen" / "models" / "staging" / "hl7"
    return {path.name: path.read_text() for path in compiled.rglob("*.sql")}


def test_nights_with_other_load_ids_share_one_parse_and_filter_their_own_loads(
    tmp_path: Path,
) -> None:
    warehouse = str(tmp_path / "parse.duckdb")
    dbt_parse._PARSED.clear()
    nights = {"full": None, "after_7": 7, "after_12": 12}
    compiled: dict[str, dict[str, str]] = {}
    for night, after in nights.items():
        dbt_vars = {"screening_date": "2026-11-20", "run_id": night, "wap": True}
        if after is not None:
            dbt_vars["incremental_after_load_id"] = after
        transform.run_dbt(
            "compile",
            warehouse,
            args=["--select", f"{NODE},test_type:data"],
            dbt_vars=dbt_vars,
            artifacts_dir=tmp_path / night,
        )
        compiled[night] = _compiled_tests(tmp_path / night)
    assert len(dbt_parse._PARSED) == 1  # the three nights, one parse

    assert len(compiled["full"]) >= 3  # not_null and accepted_values tests of the model
    for name, sql in compiled["full"].items():
        assert "load_id >" not in sql, name  # a full build tests every row
    for name in compiled["full"]:
        assert "load_id > 7" in compiled["after_7"][name], name
        assert "load_id > 12" in compiled["after_12"][name], name
        assert "load_id > 7" not in compiled["after_12"][name], name


def test_the_parse_key_leaves_out_the_run_variables_only(tmp_path: Path) -> None:
    project = transform.default_project_dir()
    target = transform.dbt_target(str(tmp_path / "key.duckdb"))
    night = {"screening_date": "2026-11-20", "run_id": "a", "wap": True}

    def key(**changes: object) -> object:
        return dbt_parse._parse_key("build", project, target, {**night, **changes})

    assert key() == key(screening_date="2026-11-21", run_id="b", incremental_after_load_id=9)
    assert key() != key(wap=False)  # the schemas change: another parse


def test_the_run_variables_change_no_dependency(tmp_path: Path) -> None:
    """The parse leaves the run variables out, so a ref only an incremental night's branch
    would render must be declared whatever the variables (int_changed_patients' depends_on):
    parsed with and without them, every node has the same dependencies."""
    import json

    night = {"screening_date": "2026-11-21", "run_id": "n", "wap": True}
    depends: list[dict[str, list[str]]] = []
    for name, extra in (("without", {}), ("with", {"incremental_after_load_id": 5})):
        transform.run_dbt(
            "parse",
            str(tmp_path / "deps.duckdb"),
            dbt_vars={**night, **extra},
            artifacts_dir=tmp_path / name,
        )
        manifest = json.loads((tmp_path / name / "target" / "manifest.json").read_text())
        depends.append(
            {
                uid: sorted(node.get("depends_on", {}).get("nodes", []))
                for uid, node in manifest["nodes"].items()
            }
        )
    assert depends[0] == depends[1]
    assert (
        "model.trialscreen.stg_fhir__patients"
        in (depends[0]["model.trialscreen.int_changed_patients"])
    )


def test_a_parse_kept_on_disk_serves_the_next_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/decisions.md "A parse kept across processes": the first process parses and keeps
    the manifest in the cache folder; the next one (the in-process cache cleared) reads it
    instead of parsing and compiles the same SQL; a file that does not load is parsed again
    and replaced; a process building another warehouse reads it too."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    parsed: list[Path | None] = []
    keep = dbt_parse._keep_parse

    def keep_and_count(manifest: object, saved: Path | None) -> None:
        parsed.append(saved)  # called after a full parse only
        keep(manifest, saved)

    monkeypatch.setattr(dbt_parse, "_keep_parse", keep_and_count)
    night = {"screening_date": "2026-11-20", "run_id": "kept", "wap": True}
    compiled: dict[str, dict[str, str]] = {}
    for run in ("first", "second", "unreadable", "other_warehouse"):
        dbt_parse._PARSED.clear()  # what a new process starts with
        kept = list(cache.rglob("*.msgpack"))
        if run == "unreadable":
            kept[0].write_bytes(b"not a manifest")
        transform.run_dbt(
            "compile",
            str(tmp_path / ("other.duckdb" if run == "other_warehouse" else "kept.duckdb")),
            args=["--select", NODE],
            dbt_vars=night,
            artifacts_dir=tmp_path / run,
        )
        compiled[run] = _compiled_tests(tmp_path / run)
        assert len(parsed) == (1 if run in ("first", "second") else 2), run
    files = list(cache.rglob("*.msgpack"))
    assert files == [parsed[0]] == [parsed[1]]  # one key, one file, replaced in place
    assert compiled["first"] and compiled["first"] == compiled["second"]
    assert compiled["unreadable"] == compiled["first"]
    # the file's key leaves out the database's name (dbt-duckdb's is the file's): the parse
    # kept for kept.duckdb serves other.duckdb, its nodes renamed, and compiles what a parse
    # of other.duckdb compiles: the same SQL but for the database's name
    assert '"kept"."raw"' in compiled["first"][f"{NODE}.sql"]
    assert compiled["other_warehouse"] == {
        name: sql.replace('"kept".', '"other".') for name, sql in compiled["first"].items()
    }
