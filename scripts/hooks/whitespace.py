"""pre-commit hook: strip trailing whitespace and end every text file with exactly one newline.

    python scripts/hooks/whitespace.py FILE...

Rewrites the files that need it and exits 1 when it changed any (pre-commit then shows the
diff and the commit is retried), 0 otherwise. A Markdown hard line break (two trailing
spaces) is kept. Binary files are left alone (pre-commit passes only text files; a file that
is not UTF-8 is skipped here too).
"""

from __future__ import annotations

import sys
from pathlib import Path


def fixed(text: str, markdown: bool) -> str:
    """``text`` without trailing blanks on any line and with exactly one final newline
    (none for an empty file); CRLF files keep CRLF."""
    out = []
    for line in text.split("\n"):
        cr = "\r" if line.endswith("\r") else ""
        body = line[:-1] if cr else line
        stripped = body.rstrip(" \t")
        if markdown and body.endswith("  ") and stripped:
            stripped += "  "  # a Markdown hard line break
        out.append(stripped + cr)
    body = "\n".join(out).rstrip("\r\n")
    newline = "\r\n" if "\r\n" in text else "\n"
    return body + newline if body else ""


def main(argv: list[str]) -> int:
    changed = 0
    for name in argv:
        path = Path(name)
        try:
            text = path.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
            continue
        new = fixed(text, markdown=path.suffix.lower() in {".md", ".markdown"})
        if new != text:
            path.write_bytes(new.encode("utf-8"))
            print(f"fixed trailing whitespace / end of file: {name}")
            changed += 1
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
