"""parse_fhir_files (many small bundles decoded together) against parse_fhir_file (one at a
time): every ParsedFile must be identical, on the Synthea SMART bundles in tests/data and on broken
and tricky files built in tmp_path."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import orjson
import pytest

from trialscreen.feeds import ParsedFile, fhir
from trialscreen.feeds.fhir import batch as batch_module
from trialscreen.feeds.fhir import parse_fhir_file, parse_fhir_files

BUNDLES = "synthea-smart-r4-bundles"
ADAN = "Adan_Pulido_7694b55e-b670-44a5-b426-c56027e97986.json.gz"
USED = set(fhir.USED_TYPES)


def assert_same(batched: list[ParsedFile], single: list[ParsedFile]) -> None:
    assert len(batched) == len(single)
    for got, want in zip(batched, single, strict=True):
        where = want.source_file
        assert (got.feed, got.source_file) == (want.feed, want.source_file)
        assert list(got.tables) == list(want.tables), where
        for entity, frame in want.tables.items():
            assert got.tables[entity].schema == frame.schema, (where, entity)
            assert got.tables[entity].equals(frame), (where, entity)
        assert got.quarantined.schema == want.quarantined.schema, where
        assert got.quarantined.equals(want.quarantined), where
        assert got.records_in == want.records_in, where
        assert got.ignored == want.ignored, where


def _patient(pid: str, mrn: str) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": mrn}],
        "name": [{"family": "Doe", "given": ["Jo"]}],
        "gender": "female",
        "birthDate": "1970-05-06",
    }


def _obs(oid: str, subject: str | None, **fields: object) -> dict[str, object]:
    obs: dict[str, object] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "effectiveDateTime": "2026-10-01T08:00:00Z",
        "valueQuantity": {"value": 12.5, "unit": "g/dL"},
    }
    if subject is not None:
        obs["subject"] = {"reference": subject}
    obs.update(fields)
    return obs


def _med(rtype: str, mid: str, subject: str) -> dict[str, object]:
    return {
        "resourceType": rtype,
        "id": mid,
        "status": "active",
        "medicationCodeableConcept": {"coding": [{"system": fhir.RXNORM, "code": "1"}]},
        "subject": {"reference": subject},
        "authoredOn": "2026-01-01",
        "effectiveDateTime": "2026-01-01",
    }


def _bundle(*entries: tuple[str | None, object]) -> bytes:
    entry = [
        {"resource": res} if url is None else {"fullUrl": url, "resource": res}
        for url, res in entries
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entry})


def _write_tricky(folder: Path, adan: Path) -> list[Path]:
    """Broken and tricky files; names interleave with the Synthea bundle names."""
    files: dict[str, bytes] = {}
    raw = adan.read_bytes()
    files["A_truncated.json.gz"] = raw[: len(raw) // 2]
    files["B_not_json.json"] = b"<html>not json</html>"
    files["C_empty.json"] = b""
    files["D_no_resourcetype.json"] = b"[1, 2]"
    files["E_not_gzip.json.gz"] = b"\x00\x01 not gzip"
    files["F_obs_without_subject.json"] = _bundle(
        ("urn:uuid:p-f", _patient("pat-f", "MRN-F")),
        (None, _obs("obs-f1", "urn:uuid:p-f")),
        (None, _obs("obs-f2", None)),
    )
    files["G_obs_urn_in_bundle.json"] = _bundle(
        ("urn:uuid:p-g", _patient("pat-g", "MRN-G")),
        ("urn:uuid:o-g", _obs("obs-g", "urn:uuid:p-g")),
    )
    # Two bundles reuse one urn:uuid for different patients: each resolves in its own file.
    for name, pid in (("H_same_urn_1.json", "pat-h1"), ("I_same_urn_2.json", "pat-h2")):
        files[name] = _bundle(
            ("urn:uuid:shared", _patient(pid, "MRN-" + pid)),
            (None, _obs("obs-" + pid, "urn:uuid:shared")),
            (None, {"resourceType": "Condition", "id": "c-" + pid, "subject": {}}),
        )
    # Medications of several types in different group orders, bad records at every stage
    # (entry without resourceType, entry without resource, a field of the wrong JSON type,
    # an unparseable date), an unused type, and a Bundle reference to an undefined urn.
    files["J_mixed.json"] = _bundle(
        ("urn:uuid:p-j", _patient("pat-j", "MRN-J")),
        (None, _med("MedicationStatement", "ms1", "urn:uuid:p-j")),
        (None, {"id": "no-type"}),
        (None, _med("MedicationRequest", "mr1", "urn:uuid:p-j")),
        (None, _obs("obs-j1", "urn:uuid:p-j", status=["not", "a", "string"])),
        (None, _med("MedicationAdministration", "ma1", "urn:uuid:undefined")),
        (None, _obs("obs-j2", "Patient/pat-j", effectiveDateTime="not a date")),
        (None, {"resourceType": "Encounter", "id": "e1"}),
        (None, _med("MedicationStatement", "ms2", "Patient/pat-j")),
        (None, _obs("obs-j3", "urn:uuid:p-j")),
    )
    files["K_mixed_other_order.json"] = _bundle(
        (None, _med("MedicationRequest", "mr2", "urn:uuid:p-k")),
        (None, _med("MedicationAdministration", "ma2", "urn:uuid:p-k")),
        ("urn:uuid:p-k", _patient("pat-k", "MRN-K")),
        (None, _med("MedicationStatement", "ms3", "urn:uuid:p-k")),
        (None, _patient("pat-k2", "")),
    )
    files["L_single_resource.json"] = orjson.dumps(_obs("obs-l", "Patient/pat-l"))
    files["M_bundle_without_entries.json"] = orjson.dumps({"resourceType": "Bundle"})
    files["N_entry_not_a_list.json"] = orjson.dumps({"resourceType": "Bundle", "entry": {}})
    # More than one 2000-record chunk of a type in one bundle, with rejects in both chunks.
    big: list[tuple[str | None, object]] = [("urn:uuid:p-o", _patient("pat-o", "MRN-O"))]
    for i in range(2600):
        subject = None if i in (7, 2100) else "urn:uuid:p-o"
        extra = {"valueQuantity": "bad"} if i in (1500, 2500) else {}
        big.append((None, _obs(f"obs-o{i}", subject, **extra)))
    files["O_big.json.gz"] = gzip.compress(_bundle(*big))
    # NDJSON takes the one-file path between batches.
    files["P_Observation.ndjson"] = b"\n".join(
        [orjson.dumps(_obs("n1", "Patient/x")), b"{not json", orjson.dumps(_obs("n2", None))]
    )
    paths = []
    for name, data in files.items():
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def drop(external_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """The 18 Synthea bundles of tests/data (symlinked) plus the tricky files, in one folder."""
    source = external_dir / BUNDLES / "bundles"
    root = tmp_path_factory.mktemp("drop")
    folder = root / "fhir"
    folder.mkdir()
    for bundle in sorted(source.glob("*.json.gz")):
        (folder / bundle.name).symlink_to(bundle)
    _write_tricky(folder, source / ADAN)
    return sorted(folder.iterdir()), root


@pytest.fixture(scope="module")
def single(drop: tuple[list[Path], Path]) -> tuple[list[ParsedFile], float]:
    paths, root = drop
    start = time.perf_counter()
    return [parse_fhir_file(p, root) for p in paths], time.perf_counter() - start


@pytest.fixture(scope="module")
def batched(drop: tuple[list[Path], Path]) -> tuple[list[ParsedFile], float]:
    paths, root = drop
    start = time.perf_counter()
    return list(parse_fhir_files(paths, root)), time.perf_counter() - start


def test_batched_equals_one_file_at_a_time(
    drop: tuple[list[Path], Path],
    single: tuple[list[ParsedFile], float],
    batched: tuple[list[ParsedFile], float],
) -> None:
    paths, root = drop
    assert len(paths) == 18 + 16
    assert [r.source_file for r in batched[0]] == [p.relative_to(root).as_posix() for p in paths]
    assert_same(batched[0], single[0])


def test_batched_equals_with_tiny_batches(
    drop: tuple[list[Path], Path],
    single: tuple[list[ParsedFile], float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batch boundaries (by file count and by record count) change nothing."""
    paths, root = drop
    monkeypatch.setattr(fhir, "BATCH_FILES", 3)
    monkeypatch.setattr(fhir, "BATCH_RECORDS", 700)
    assert_same(list(parse_fhir_files(paths, root)), single[0])


def test_decode_and_map_boundaries_change_nothing(
    drop: tuple[list[Path], Path],
    single: tuple[list[ParsedFile], float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records decoded a few at a time and mapped in batches that close mid-file (O_big has
    2,596 observations and rejects found by decoding and by mapping): the same rows, in the
    same order, and the same rejects in position order, one file at a time and batched."""
    paths, root = drop
    monkeypatch.setattr(batch_module, "CHUNK_RECORDS", 97)
    monkeypatch.setattr(batch_module, "MAP_RECORDS", 500)
    assert_same([parse_fhir_file(p, root) for p in paths], single[0])
    assert_same(list(parse_fhir_files(paths, root)), single[0])


def test_tricky_files_give_the_expected_answers(batched: tuple[list[ParsedFile], float]) -> None:
    """Spot checks that the equivalence is not between two equally wrong answers."""
    by_name = {Path(r.source_file).name: r for r in batched[0]}
    for name in ("H_same_urn_1.json", "I_same_urn_2.json"):
        pid = "pat-h1" if name.startswith("H") else "pat-h2"
        obs = by_name[name].tables["observations"]
        assert obs.get_column("patient_ref").to_list() == [pid]
        assert obs.get_column("source_file").to_list() == [f"fhir/{name}"]
        assert by_name[name].quarantined.get_column("error").to_list() == [
            "condition has no subject reference"
        ]
    g = by_name["G_obs_urn_in_bundle.json"].tables["observations"]
    assert g.get_column("patient_ref").to_list() == ["pat-g"]
    f = by_name["F_obs_without_subject.json"]
    assert f.quarantined.select("source_position", "error").rows() == [
        (3, "observation has no subject reference")
    ]
    assert by_name["A_truncated.json.gz"].quarantined.item(0, "error") == (
        "gzip stream is truncated"
    )
    assert by_name["B_not_json.json"].quarantined.item(0, "scope") == "file"
    j = by_name["J_mixed.json"]
    assert j.tables["medications"].get_column("record_id").to_list() == [
        "ma1",  # groups run last-in first-out: MedicationAdministration was created last
        "mr1",
        "ms1",
        "ms2",
    ]
    assert j.tables["medications"].get_column("patient_ref").to_list() == [
        "undefined",
        "pat-j",
        "pat-j",
        "pat-j",
    ]
    assert j.ignored == {"Encounter": 1}
    assert j.quarantined.get_column("source_position").to_list() == [3, 5, 7]
    big = by_name["O_big.json.gz"]
    assert big.tables["observations"].height == 2596
    # a file's rejects in position order, whichever chunk or stage found them
    assert big.quarantined.get_column("source_position").to_list() == [9, 1502, 2102, 2502]
    assert by_name["P_Observation.ndjson"].quarantined.height == 2
    for result in batched[0]:
        assert result.records_in == result.rows_out + result.quarantined.height


def test_results_stream_per_batch(
    drop: tuple[list[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch is yielded before later files are read."""
    paths, root = drop
    monkeypatch.setattr(fhir, "BATCH_FILES", 2)
    late = root / "fhir" / "written-later.json"
    results = parse_fhir_files([*paths[:2], late], root)
    first = next(results)
    assert first.source_file == paths[0].relative_to(root).as_posix()
    assert next(results).source_file == paths[1].relative_to(root).as_posix()
    # written only now: the parser reads it after yielding the first batch
    late.write_bytes(b'{"resourceType":"Patient","id":"late"}')
    try:
        third = next(results)
    finally:
        late.unlink()
    assert third.records_in == 1  # read: one record (the file could not be opened earlier)
    assert third.quarantined.get_column("scope").to_list() in ([], ["record"])


@pytest.mark.slow  # a measurement on a large generated input
def test_throughput_print(
    external_dir: Path,
    tmp_path: Path,
    single: tuple[list[ParsedFile], float],
    batched: tuple[list[ParsedFile], float],
) -> None:
    """Records/s one file at a time vs batched: the Synthea bundles, and small Synthea-style
    bundles (a Patient and its first 23 used resources, as the generated drops write)."""
    records = sum(r.records_in for r in single[0])
    lines = [
        f"FHIR Synthea bundles ({len(single[0])} files, {records} records): "
        f"one at a time {records / single[1]:.0f} rec/s, batched {records / batched[1]:.0f} "
        f"rec/s ({single[1] / batched[1]:.1f}x)"
    ]
    folder = tmp_path / "small"
    folder.mkdir()
    n = 0
    for bundle in sorted((external_dir / BUNDLES / "bundles").glob("*.json.gz")):
        entries = orjson.loads(gzip.decompress(bundle.read_bytes()))["entry"]
        used = [e for e in entries if e["resource"]["resourceType"] in USED]
        for k in range(0, min(len(used), 24 * 2), 24):  # two small bundles per patient
            doc = {"resourceType": "Bundle", "type": "transaction", "entry": used[k : k + 24]}
            (folder / f"{n:05d}.json").write_bytes(orjson.dumps(doc))
            n += 1
    paths = sorted(folder.iterdir())
    start = time.perf_counter()
    one = [parse_fhir_file(p, tmp_path) for p in paths]
    t_one = time.perf_counter() - start
    start = time.perf_counter()
    many = list(parse_fhir_files(paths, tmp_path))
    t_many = time.perf_counter() - start
    assert_same(many, one)
    records = sum(r.records_in for r in one)
    lines.append(
        f"FHIR small bundles ({len(paths)} files, {records} records): one at a time "
        f"{records / t_one:.0f} rec/s, batched {records / t_many:.0f} rec/s "
        f"({t_one / t_many:.1f}x)"
    )
    print("\n" + "\n".join(lines))
