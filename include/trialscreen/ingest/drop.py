"""A drop's files: walked with ``lstat`` (nothing followed), hashed, refused entries named.

Drop hygiene (docs/decisions.md "Hostile input"): a name starting with "." (a file, or a
folder and all it holds) and a temporary name (a transfer still being written, an editor's
backup) are not part of the drop yet: skipped, neither registered nor counted.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from trialscreen.feeds import bounded

TEMPORARY_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".filepart", ".crdownload", "~")


@dataclass(frozen=True)
class Refused:
    """A drop entry that is not a regular file (symlink, FIFO, socket, device), or cannot be
    opened: never followed, never read. ``key`` stands for the content hash in the registry
    (``refused:`` + the sha256 of the reason, the relative path and, for a symlink, its target
    as a string), so the same entry is reported once, not every night."""

    path: Path
    reason: str
    key: str
    size: int = 0


def _skipped_name(name: str) -> bool:
    return name.startswith(".") or name.lower().endswith(TEMPORARY_SUFFIXES)


def _refused(path: Path, drop: Path, reason: str, target: str = "") -> Refused:
    rel = path.relative_to(drop).as_posix()
    key = hashlib.sha256(f"{reason}\0{rel}\0{target}".encode("utf-8", "replace")).hexdigest()
    return Refused(path, reason, f"refused:{key}")


def scan(drop: Path, feed: str) -> tuple[list[Path], list[Refused]]:
    """One feed folder of a drop, walked with ``lstat`` (nothing followed, nothing opened):
    its regular files and the entries it refuses, each in a stable order (relative paths).

    Symlinks (to a file or a folder, inside or outside the drop), FIFOs, sockets and devices
    are refused; so is a feed folder that is itself a symlink. Walking never follows a link,
    so every file returned lies inside the drop's feed folder.
    """
    folder = drop / feed
    try:
        mode = os.lstat(folder).st_mode
    except FileNotFoundError:
        return [], []
    if not stat.S_ISDIR(mode):
        kind = bounded.file_kind(mode)
        target = os.readlink(folder) if stat.S_ISLNK(mode) else ""
        reason = f"feed folder is a {kind}, not a folder (not followed)"
        return [], [_refused(folder, drop, reason, target)]
    files: list[Path] = []
    refused: list[Refused] = []
    pending = [folder]
    while pending:
        here = pending.pop()
        try:
            entries = list(os.scandir(here))
        except OSError as exc:
            reason = f"folder cannot be listed ({type(exc).__name__})"
            refused.append(_refused(here, drop, reason))
            continue
        for entry in entries:
            if _skipped_name(entry.name):
                continue
            path = Path(entry.path)
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                refused.append(_refused(path, drop, f"cannot be listed ({type(exc).__name__})"))
                continue
            if stat.S_ISDIR(mode):
                pending.append(path)
            elif stat.S_ISREG(mode):
                files.append(path)
            else:
                kind = bounded.file_kind(mode)
                target = os.readlink(path) if stat.S_ISLNK(mode) else ""
                reason = f"{kind} in the drop: refused (not followed, not read)"
                refused.append(_refused(path, drop, reason, target))
    return sorted(files), sorted(refused, key=lambda r: r.path)


def discover(drop: Path, feed: str) -> list[Path]:
    """Regular files of one feed in a drop, in a stable order (sorted relative paths)."""
    return scan(drop, feed)[0]


def content_hash(path: Path) -> str:
    """sha256 of the file's bytes; ``bounded.RefusedInput`` when it is not (or no longer) a
    regular file or cannot be opened: it is never followed and never blocks."""
    digest = hashlib.sha256()
    with bounded.open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries(drop: Path, feed: str) -> Iterator[tuple[Path, str, int, Refused | None]]:
    """Every entry of a feed folder with its registry key and size (refused ones included)."""
    files, refused = scan(drop, feed)
    for path in files:
        try:
            size = path.stat().st_size
            yield path, content_hash(path), size, None
        except bounded.RefusedInput as exc:
            gone = _refused(path, drop, exc.reason)
            yield path, gone.key, 0, gone
        except OSError as exc:  # vanished between listing and opening
            gone = _refused(path, drop, f"file cannot be read ({type(exc).__name__})")
            yield path, gone.key, 0, gone
    for entry in refused:
        yield entry.path, entry.key, entry.size, entry
