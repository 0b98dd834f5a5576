"""Check that the repository's documentation links resolve.

    python scripts/hooks/doc_links.py [FILE...]

Without arguments it checks every tracked file (``git ls-files``); as a pre-commit hook it
gets the changed files. Two kinds of reference are checked:

- in Markdown files, every relative link or image (``[text](path#anchor)``, ``[id]: path``,
  ``<img src=...>``, ``<a href=...>``): the target file or folder exists, and the anchor is a
  heading of the target (GitHub's slugs) or an explicit ``<a id=...>``/``name=`` in it;
- in any other text file (code comments, YAML, SQL), each mention of ``docs/<name>.md`` with
  an optional ``#anchor``, resolved from the repository root: so a comment that points at the
  specification points at a section that exists.

Links with a scheme (``https:``, ``mailto:``) and text inside code blocks or code spans are
not checked. Exits 1 and prints ``file:line: message`` for each broken reference.
"""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = {".md", ".markdown"}
TEXT = {".py", ".sql", ".yml", ".yaml", ".toml", ".cfg", ".txt", ".sh", ".j2", ".html"}
TEXT_NAMES = {"Makefile", "Dockerfile", "run"}

INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
DOC_MENTION = re.compile(r"(?<![\w/.-])(docs/[\w./-]+?\.md)(#[\w-]+)?")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXPLICIT = re.compile(r"<a\b[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading)  # inline HTML
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of a Markdown text outside fenced code, code spans blanked."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        mark = FENCE.match(line)
        if mark:
            if fence is None:
                fence = mark.group(1)
            elif mark.group(1) == fence:
                fence = None
            continue
        if fence is None:
            lines.append((number, CODE_SPAN.sub("``", line)))
    return lines


@cache
def anchors(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8")
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(text):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found.update(EXPLICIT.findall(text))
    return frozenset(found)


def check_target(source: Path, target: str, base: Path) -> str | None:
    """Why ``target`` (a relative link, maybe with ``#anchor``) does not resolve, or None."""
    if SCHEME.match(target) or target.startswith("//"):
        return None
    path_part, _, anchor = target.partition("#")
    path_part = path_part.split("?", 1)[0]
    if path_part.startswith("/"):
        resolved = ROOT / path_part.lstrip("/")
    elif path_part:
        resolved = (base / path_part).resolve()
    else:
        resolved = source
    if not resolved.exists():
        return f"broken link {target!r}: {_show(resolved)} does not exist"
    markdown = resolved.is_file() and resolved.suffix.lower() in MARKDOWN
    if anchor and markdown and not {anchor, anchor.lower()} & anchors(resolved):
        return f"broken link {target!r}: no heading or anchor #{anchor} in {_show(resolved)}"
    return None


def _show(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def check_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return []
    problems: list[str] = []
    where = _show(path)
    if path.suffix.lower() in MARKDOWN:
        for number, line in prose_lines(text):
            targets = INLINE.findall(line) + HTML.findall(line)
            ref = REFDEF.match(line)
            if ref:
                targets.append(ref.group(1))
            for target in targets:
                problem = check_target(path, target, path.parent)
                if problem:
                    problems.append(f"{where}:{number}: {problem}")
    elif path.suffix.lower() in TEXT or path.name in TEXT_NAMES:
        for number, line in enumerate(text.splitlines(), start=1):
            for doc, anchor in DOC_MENTION.findall(line):
                problem = check_target(path, doc + anchor, ROOT)
                if problem:
                    problems.append(f"{where}:{number}: {problem}")
    return problems


def tracked_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / name for name in out.split("\0") if name]


def main(argv: list[str]) -> int:
    files = [Path(a).resolve() for a in argv] if argv else tracked_files()
    problems = [p for f in files if f.is_file() for p in check_file(f)]
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} broken documentation reference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
