"""The columnar path (feeds/hl7v2/columnar.py) against the message walker (oru.py): every
HL7 file the tests know, a generated population with its deliberately bad records, and
messages built to sit on each edge of "regular", parsed both ways, batched and alone, must
give the same rows, quarantine, counts and ignored types. The walker is the reference: it
is what these fixtures were first checked against (tests/feeds/test_hl7v2.py)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from trialscreen.feeds import ParsedFile
from trialscreen.feeds.hl7v2 import columnar, parse_hl7_bytes, parse_hl7_files
from trialscreen.feeds.hl7v2.oru import _MessageParser
from trialscreen.feeds.hl7v2.rows import _FileBuilder
from trialscreen.synth import generate

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "hl7v2-oru-samples"

MSH = "MSH|^~\\&|LAB|HOSP|TS|HOSP|20261123203000||ORU^R01|{id}|P|2.5.1"
PID = "PID|1||MRN{n}^^^HOSP^MR||Smith^Lars||19980201|M"
OBR = "OBR|1|PL{n}|ORD{n}^LAB|PANEL^Lab panel^L|||20261123153000+0000"
OBX = "OBX|1|NM|718-7^Hemoglobin^LN||12.0|g/dL^g/dL^UCUM|12-16|N|||F|||20261123153000"

# one message per edge: (what it tries, the segments after MSH)
EDGES: list[tuple[str, list[str]]] = [
    ("plain", [PID, OBR, OBX]),
    ("no OBR: OBX-14 only", [PID, OBX]),
    ("OBR-7 when OBX-14 is empty", [PID, OBR, OBX.replace("|20261123153000", "|")]),
    ("no time at all", [PID, "OBR|1|PL1", OBX.replace("|20261123153000", "|")]),
    ("OBR before the PID does not carry", ["OBR|1|PL9|||||20200101", PID, OBX[:-15] + "|"]),
    ("second OBR", [PID, OBR, OBX, "OBR|2|PL2|||||20250101", OBX.replace("1|NM", "2|NM")]),
    ("two PIDs", [PID, OBX, PID.replace("MRN{n}", "MRN2{n}"), OBX]),
    ("OBX before PID", [OBX, PID, OBX]),
    ("no PID", [OBR, OBX]),
    ("PID without identifier", ["PID|1||^^^HOSP^MR||Doe^J", OBX]),
    ("PID-3 second repetition typed MR", ["PID|1||X1^^^A^PI~M9{n}^^^H^MR||Doe^J", OBX]),
    ("unreadable death time", [PID + "|||||||||||||||||||20261399", OBX]),
    ("readable death time", [PID + "|||||||||||||||||||20200101+0100", OBX]),
    ("no code", [PID, "OBX|1|NM|||5|mg"]),
    ("local code only", [PID, "OBX|1|NM|K^Potassium^L||4.1|mmol/L|||||F"]),
    ("escaped unit", [PID, "OBX|1|NM|777-3^Platelets^LN||254|10\\S\\9/L|||||F"]),
    ("escaped value", [PID, "OBX|1|ST|8-8^Note^LN||a\\T\\b||||||F"]),
    ("escaped range", [PID, "OBX|1|NM|1-1^X^LN||5|mg|\\H\\1-2|||F"]),
    ("escaped code text", [PID, "OBX|1|NM|1-1^X\\F\\Y^LN||5|mg||||F"]),
    ("escape in the PID", ["PID|1||MRN{n}^^^H^MR||O\\T\\Brien^J", OBX]),
    ("structured numeric", [PID, "OBX|1|SN|1-1^X^LN||<^20|mg|||||F"]),
    ("ratio", [PID, "OBX|1|SN|1-1^X^LN||^1^:^128|{ratio}|||||F"]),
    ("coded value", [PID, "OBX|1|CWE|1-1^X^LN||POS^Positive^L|||||F"]),
    ("coded value, alternate triplet", [PID, "OBX|1|CE|1-1^X^LN||^^^P^Pos^SCT|||||F"]),
    ("repeated value", [PID, "OBX|1|NM|1-1^X^LN||37.0~37.1|Cel|||||F"]),
    ("repeated text", [PID, "OBX|1|TX|1-1^X^LN||line one~line two||||||F"]),
    ("number with comparator in ST", [PID, "OBX|1|ST|1-1^X^LN||>= 10|mg|||||F"]),
    ("NM not a number", [PID, "OBX|1|NM|1-1^X^LN||Hello|mg|||||F"]),
    ("pending: empty value", [PID, "OBX|1|NM|1-1^X^LN|||mg|||||P"]),
    ("shifted fields", [PID, "OBX|1|NM|1-1^X^LN||||5.0|mg||F"]),
    ("empty value, range and flag", [PID, "OBX|1|NM|1-1^X^LN||||1-2|H||F"]),
    ("bad observation time", [PID, "OBX|1|NM|1-1^X^LN||5|mg|||||F|||2026-11-23"]),
    ("bad OBR-7", [PID, "OBR|1|PL1||||| notatime", OBX.replace("|20261123153000", "|")]),
    ("offset time", [PID, OBX + "-0500"]),
    ("seconds and fraction", [PID, OBX[:-14] + "20261123153001.1234+0100"]),
    ("lower-case value type", [PID, "OBX|1|nm|1-1^X^LN||5|mg|||||F"]),
    ("blank set id and status", [PID, "OBX|| NM |1-1^X^LN||5|mg|||||  "]),
    ("method and site", [PID, OBX + "|||M1^Method^SCT|||S1^Site^SCT"]),
    ("fields past OBX-21", [PID, OBX + "|||||||||a|b|c"]),
    ("unicode spaces", [PID, "OBX|1|NM|1-1^X^LN||\u00a05\u00a0|mg|||||\u2003F"]),
    ("flag repetitions", [PID, "OBX|1|NM|1-1^X^LN||5|mg||H~A^x|||F"]),
    ("NTE and ORC segments", ["ORC|RE|1", PID, "NTE|1||a \\T\\ b", OBR, OBX, "NTE|2||x"]),
    *(
        (f"observation time {t!r}", [PID, OBX[:-14] + t])
        for t in (
            "2026",
            "202611231530",
            "20260230",
            "20261123153060",
            "00001123",
            "00010101",
            "99991231235959",
            "20261123153000+1900",
            "20261123153000+0060",
            "20261123153000-1800",
            "\u0662\u0660\u0662\u0666\u0661\u0661\u0662\u0663",
            "20261123153000.12345678",
            "20261123153000.5-0330",
            "2026112315300",
            "x",
        )
    ),
    (
        "ORU without trigger",
        [PID, OBX],
    ),
    ("empty facility and time", [PID, OBX]),
    ("issued time with spaces and offset", [PID, OBX]),
    ("unreadable issued time", [PID, OBX]),
]
# whole files the walker reads (columnar.columnar_file): text only Python splits or trims
WALKED_FILES: list[tuple[str, list[str]]] = [
    ("run-on OBX", [PID, OBX + "| OBX|2|NM|777-3^PLT^LN||200|10*9/L|||||F"]),
    ("control character", [PID, "OBX|1|NM|1-1^X^LN||5\x1f|mg|||||F"]),
]
HEADERS = {  # messages whose header is the edge
    "ORU without trigger": "MSH|^~\\&|LAB||TS|HOSP|||ORU|{id}|P|2.5.1",
    "empty facility and time": "MSH|^~\\&|||TS|HOSP|||ORU^R01|{id}|P|2.5.1",
    "issued time with spaces and offset": (
        "MSH|^~\\&|LAB|HOSP|TS|HOSP| 20261123203000-0500 ||ORU^R01|{id}|P|2.5.1"
    ),
    "unreadable issued time": "MSH|^~\\&|LAB|HOSP|TS|HOSP|2026-11-23||ORU^R01|{id}|P|2.5.1",
}
OTHER_MESSAGES = [
    "MSH|^~\\&|ADT|HOSP|TS|HOSP|20261123||ADT^A01|A1|P|2.5\rPID|1||MRN1^^^H^MR",
    "MSH|^~\\&|ADT|HOSP|TS|HOSP|20261123||ADT^A40|A2|P|2.5\rEVN|A40|20261123\r"
    "PID|1||MRN1^^^H^MR\rMRG|MRN0^^^H^MR",
    "MSH|^~\\&#|LAB|HOSP|TS|HOSP|20261123||ORU^R01|N1|P|2.5\r" + PID.format(n=1) + "\r" + OBX,
    "MSH|~^\\&|LAB|HOSP|TS|HOSP|20261123||ORU^R01|N2|P|2.5\r" + PID.format(n=1) + "\r" + OBX,
    "MSH|^~\\&|LAB|HOSP|TS|HOSP|20261123||^|N3|P|2.5\r" + PID.format(n=1),
    "MSH*^~\\&*LAB*HOSP*TS*HOSP*20261123**ORU^R01*N4*P*2.5\rPID*1**MRN4^^^H^MR\r"
    "OBX*1*NM*1-1^X^LN**5*mg*****F",
]


def _message(k: int, what: str, segments: list[str]) -> str:
    header = HEADERS.get(what, MSH).format(id=f"M{k}")
    return "\r".join([header, *(s.replace("{n}", str(k)) for s in segments)])


def _edge_file() -> bytes:
    messages = [_message(k, what, segments) for k, (what, segments) in enumerate(EDGES)]
    return ("text before any header\r" + "\r".join(messages + OTHER_MESSAGES) + "\r").encode()


def _assert_same(ours: ParsedFile, reference: ParsedFile) -> None:
    assert (ours.source_file, ours.records_in, ours.ignored) == (
        reference.source_file, reference.records_in, reference.ignored,
    )  # fmt: skip
    assert_frame_equal(ours.quarantined, reference.quarantined)
    assert ours.tables.keys() == reference.tables.keys()
    for entity, frame in reference.tables.items():
        assert_frame_equal(ours.tables[entity], frame, check_exact=True)


def _walked(path: Path, root: Path) -> ParsedFile:
    return parse_hl7_bytes(path.read_bytes(), path.relative_to(root).as_posix(), columnar=False)


def _regular_share(paths: list[Path]) -> float:
    """Of the files' messages, the share parsed by the columnar path."""
    texts = [p.read_bytes().decode("utf-8", errors="replace") for p in paths]
    texts = [text for text in texts if columnar.columnar_file(text)]
    walker = _MessageParser(_FileBuilder(""), 1, [])
    split = columnar.split_files(texts, [str(k) for k in range(len(texts))], walker, 1 << 30)
    walked = sum(len(messages) for messages in split.others)
    regular = split.tables["patients"].height
    return regular / (regular + walked)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("hl7_population")
    generate(1000, 5, out, date(2026, 11, 24))  # 7 files, one deliberately bad record
    return sorted((out / "hl7").iterdir())


def test_the_edges_parse_the_same_both_ways(tmp_path: Path) -> None:
    edge = tmp_path / "edges.hl7"
    edge.write_bytes(_edge_file())
    reference = _walked(edge, tmp_path)
    _assert_same(parse_hl7_bytes(edge.read_bytes(), "edges.hl7"), reference)
    # the edges are on both sides: some messages regular, the others walked
    share = _regular_share([edge])
    assert 0 < share < 1, share
    # and so are the lines of each edge case: every OBX and PID landed or quarantined
    assert reference.records_in == reference.rows_out + reference.quarantined.height


@pytest.mark.parametrize("what", [what for what, _ in EDGES])
def test_each_edge_alone_parses_the_same(what: str, tmp_path: Path) -> None:
    segments = dict(EDGES)[what]
    path = tmp_path / "one.hl7"
    path.write_bytes(_message(1, what, segments).encode())
    _assert_same(parse_hl7_bytes(path.read_bytes(), "one.hl7"), _walked(path, tmp_path))


@pytest.mark.parametrize("what", [what for what, _ in WALKED_FILES])
def test_a_file_only_the_walker_can_read_is_walked_whole(what: str, tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    text = _message(1, "plain", EDGES[0][1]) + "\r" + _message(2, what, dict(WALKED_FILES)[what])
    path.write_bytes(text.encode())
    assert not columnar.columnar_file(text)
    _assert_same(parse_hl7_bytes(path.read_bytes(), "one.hl7"), _walked(path, tmp_path))


def test_the_external_samples_parse_the_same_batched_and_walked() -> None:
    paths = sorted(p for p in SAMPLES.rglob("*") if p.is_file() and p.suffix in (".hl7", ".txt"))
    assert len(paths) > 40
    for ours, path in zip(parse_hl7_files(paths, SAMPLES), paths, strict=True):
        _assert_same(ours, _walked(path, SAMPLES))
    assert _regular_share(paths) > 0.2  # real messages take the columnar path too


def test_a_generated_population_parses_the_same_batched_and_walked(
    population: list[Path],
) -> None:
    root = population[0].parent.parent
    results = list(parse_hl7_files(population, root))
    assert len(results) == len(population)
    for ours, path in zip(results, population, strict=True):
        _assert_same(ours, _walked(path, root))
    # the deliberately bad records are walked (and quarantined); the rest is columnar
    assert sum(r.quarantined.height for r in results) > 0
    assert _regular_share(population) > 0.9


def test_a_batch_that_fails_yields_the_files_before_the_failure(
    population: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parser bug inside a batch: the files before the failing one are yielded, then the
    failure is raised at its file (the ingest quarantines that file alone)."""
    import trialscreen.feeds.hl7v2 as hl7v2

    failing = population[2]
    original = hl7v2.columnar_file  # called for each file of the batch

    def check(text: str) -> bool:
        if text == failing.read_bytes().decode("utf-8", errors="replace"):
            raise ValueError("injected")
        return original(text)

    monkeypatch.setattr(hl7v2, "columnar_file", check)
    results = parse_hl7_files(population[:5], failing.parent.parent)
    assert [next(results).source_file for _ in range(2)] == [
        f"hl7/{p.name}" for p in population[:2]
    ]
    with pytest.raises(ValueError, match="injected"):
        next(results)


def test_a_unit_checked_together_still_contains_a_nul(tmp_path: Path) -> None:
    """The ingest checks a unit's rows for values no engine can keep once, together
    (ingest.parse._clean); a NUL in one file's result still quarantines that record alone."""
    from trialscreen.ingest.parse import parse_unit

    (tmp_path / "a.hl7").write_bytes(_message(1, "plain", [PID, OBR, OBX]).encode())
    nul = "OBX|1|ST|8-8^Note^LN||a\x00b||||||F"
    (tmp_path / "b.hl7").write_bytes(_message(2, "plain", [PID, OBR, nul, OBX]).encode())
    clean, dirty = (parsed for parsed, _ in parse_unit("hl7", sorted(tmp_path.iterdir()), tmp_path))
    assert (clean.tables["observations"].height, clean.quarantined.height) == (1, 0)
    assert (dirty.tables["observations"].height, dirty.quarantined.height) == (1, 1)
    assert dirty.quarantined.get_column("error").to_list() == [
        "observations record: field value_text contains a NUL byte"
    ]
    assert dirty.records_in == 3  # PID and two OBX: one landed patient, one OBX each way
