"""Generation in parts (pool, resume, cache key) and the nightly increment drop."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from trialscreen.synth import cache_key, generate, is_complete
from trialscreen.synth.generate import WORK_DIR, chunk_size, fingerprint
from trialscreen.synth.increment import increment, new_results
from trialscreen.synth.model import pin_zone
from trialscreen.synth.population import build_patient
from trialscreen.synth.shard import write_part

SCREENING = date(2026, 11, 15)
PATIENTS = 760  # 4 parts of 250, the last one short


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parts") / "one"
    generate(PATIENTS, 3, out, SCREENING)
    return out


def test_two_workers_write_the_same_bytes_as_one(one_worker: Path, tmp_path: Path) -> None:
    assert chunk_size(PATIENTS) == 250
    two = tmp_path / "two"
    generate(PATIENTS, 3, two, SCREENING, workers=2)
    assert _digest(two) == _digest(one_worker)
    assert not list((two / WORK_DIR).glob("part-*"))  # parts are removed once joined


def test_an_interrupted_run_resumes_from_its_finished_parts(
    one_worker: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    key = cache_key(PATIENTS, 3, SCREENING)
    out.mkdir()
    (out / WORK_DIR).mkdir()
    (out / WORK_DIR / "key.json").write_text(json.dumps({**key, "complete": False}))
    # what a stopped run leaves: two finished parts and a half-written one
    write_part(str(out), str(out / WORK_DIR), 3, SCREENING.isoformat(), PATIENTS, 250, 1)
    write_part(str(out), str(out / WORK_DIR), 3, SCREENING.isoformat(), PATIENTS, 250, 3)
    (out / WORK_DIR / "part-00002.999.tmp" / "fhir").mkdir(parents=True)
    seen: list[int] = []
    generate(PATIENTS, 3, out, SCREENING, progress=seen.append)
    assert seen[0] == 500  # parts 1 and 3 were counted as done, not drawn again
    assert _digest(out) == _digest(one_worker)
    assert is_complete(out, key)


def test_the_cache_key_names_the_code_the_size_and_the_time_zone(
    one_worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = cache_key(PATIENTS, 3, SCREENING)
    assert key["fingerprint"] == fingerprint() and len(key["fingerprint"]) == 64
    assert is_complete(one_worker, key)
    assert not is_complete(one_worker, cache_key(PATIENTS + 1, 3, SCREENING))
    assert not is_complete(one_worker, {**key, "fingerprint": "0" * 64})  # other code
    monkeypatch.setenv("TRIALSCREEN_TIMEZONE", "America/New_York")
    assert not is_complete(one_worker, cache_key(PATIENTS, 3, SCREENING))


@pytest.fixture(scope="module")
def nightly(one_worker: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("increment") / "night2"
    increment(one_worker, out, share=0.1)
    return out


def test_the_increment_holds_new_results_of_the_chosen_patients_only(
    one_worker: Path, nightly: Path
) -> None:
    meta = json.loads((nightly / "expected" / "increment.json").read_text())
    day = SCREENING + timedelta(days=1)
    assert meta["day"] == day.isoformat() and meta["patients"] == 76
    assert sum(meta["results_per_feed"].values()) >= 3 * 76
    assert all(meta["results_per_feed"][feed] > 0 for feed in ("fhir", "hl7", "csv"))
    mrns = {r["mrn"] for r in _rows(nightly / "expected" / "candidates.csv")}
    assert len(mrns) == 76 and not any(m.startswith("ZZTEST") for m in mrns)
    labs = _rows(nightly / "csv" / "lab_results.csv")
    assert labs and {r["mrn"] for r in labs} <= mrns
    assert all(r["collected_at"].startswith(day.isoformat()) for r in labs)
    ids = {r["result_id"] for r in _rows(one_worker / "csv" / "lab_results.csv")}
    assert not ids & {r["result_id"] for r in labs}  # new records, not re-sent ones
    # the lab system's message numbers go on after the base drop's
    base_msgs = sum(
        n
        for name, n in json.loads((one_worker / "expected" / "manifest.json").read_text())[
            "files"
        ].items()
        if name.startswith("hl7/")
    )
    first = next(iter(sorted((nightly / "hl7").iterdir()))).read_bytes()
    assert f"MSG{base_msgs + 1:09d}".encode() in first


def test_the_increment_parses_without_quarantine(nightly: Path) -> None:
    from trialscreen.feeds.csv import parse_csv_file
    from trialscreen.feeds.fhir import parse_fhir_file
    from trialscreen.feeds.hl7v2 import parse_hl7_file

    files = json.loads((nightly / "expected" / "increment.json").read_text())["files"]
    for rel, records in files.items():
        parse = {"fhir": parse_fhir_file, "csv": parse_csv_file, "hl7": parse_hl7_file}[
            rel.split("/", 1)[0]
        ]
        parsed = parse(nightly / rel, nightly)
        assert parsed.quarantined.height == 0, rel
        if not rel.startswith("hl7/"):
            assert parsed.records_in == records, rel


def test_the_increment_oracle_decides_on_the_new_results(nightly: Path) -> None:
    """The chosen patients' expected labs on the next day are the new results (latest in the
    window) wherever the base record has nothing on or after that day."""
    day = SCREENING + timedelta(days=1)
    values = {r["mrn"]: r for r in _rows(nightly / "expected" / "values.csv")}
    checked = 0
    with pin_zone():
        for mrn, row in values.items():
            index = int(mrn[3:]) - 1
            base = build_patient(3, index, SCREENING)
            if any(o.effective.date() >= day for o in base.obs):
                continue
            new = {o.loinc: o for o in new_results(3, index, SCREENING, day)}
            hemoglobin = new["718-7"]  # every increment has a blood count, in g/dL
            assert float(row["hemoglobin"]) == pytest.approx(float(hemoglobin.value or "nan"))
            checked += 1
    assert checked >= 60


def test_the_increment_is_reproducible(one_worker: Path, nightly: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    increment(one_worker, again, share=0.1)
    assert _digest(again) == _digest(nightly)
    with pytest.raises(ValueError, match="must come after"):
        increment(one_worker, tmp_path / "x", day=SCREENING)


def test_bench_caches_the_population_and_its_next_night(tmp_path: Path) -> None:
    from trialscreen.bench import SCREENING_DATE, increment_drop

    drop, generated, day = increment_drop(tmp_path, 300, 5)
    assert generated and day == SCREENING_DATE + timedelta(days=1)
    assert drop == tmp_path / "pop_300_5_night2"
    assert is_complete(tmp_path / "pop_300_5", cache_key(300, 5, SCREENING_DATE))
    again, generated, _ = increment_drop(tmp_path, 300, 5)
    assert again == drop and not generated
    meta = drop / "expected" / "increment.json"
    meta.write_text(meta.read_text().replace('"share": 0.02', '"share": 0.5'))
    assert increment_drop(tmp_path, 300, 5)[1]  # a drop that does not match is written again
