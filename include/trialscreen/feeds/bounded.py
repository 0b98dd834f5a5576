"""Opening and reading one drop file without trusting it.

* ``open_regular`` opens with ``O_NOFOLLOW | O_NONBLOCK`` and checks the open descriptor is a
  regular file: a symlink is never followed and a FIFO never blocks, even if the file was
  swapped after the drop was listed (``ingest`` refuses them at discovery with ``lstat``).
* ``read_file`` returns the file's bytes, gunzipped for ``*.gz``, streaming: a gzip is
  decompressed in small steps and stopped as soon as its output passes the file limit or
  its expansion ratio passes the ratio limit (``trialscreen.limits``), so a gzip bomb costs
  a few MiB, never its expanded size.
* ``gunzip_stream`` yields a gzip's decompressed bytes piece by piece, for a FHIR NDJSON or
  CSV file parsed in parts (``ingest.parse``): the same checks, with the expanded-size limit in
  place of the file limit (what one parser holds is a part, not the file).

Every reason is PHI-free: sizes, limits and the names of the settings, never a file name
or a byte of content.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import BinaryIO

from trialscreen import limits as _limits

PARTIAL_LIMIT = 64 * 1024  # bytes kept of a refused file's (decompressed) head
_READ_STEP = 256 * 1024  # compressed bytes read at a time
_OUT_STEP = 1 << 20  # decompressed bytes produced per zlib call


class RefusedInput(Exception):
    """The file is not read; ``reason`` is PHI-free, ``partial`` its head when one was read."""

    def __init__(self, reason: str, partial: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial


class OverLimit(RefusedInput):
    """The file is larger (decompressed) than a limit allows."""


class BadGzip(RefusedInput):
    """A ``*.gz`` that is not gzip, or ends before its end-of-stream marker."""

    def __init__(self, reason: str, partial: bytes, truncated: bool) -> None:
        super().__init__(reason, partial)
        self.truncated = truncated


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading; refuse symlinks, FIFOs, devices and sockets."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RefusedInput("file is a symbolic link (not followed)") from None
        raise RefusedInput(f"file cannot be opened ({type(exc).__name__})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RefusedInput(f"not a regular file ({file_kind(mode)})")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def file_kind(mode: int) -> str:
    """What an ``lstat`` mode is, in words (for reasons)."""
    for test, kind in (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISREG, "regular file"),
    ):
        if test(mode):
            return kind
    return "unknown file type"


def read_file(path: Path, lim: _limits.Limits | None = None) -> bytes:
    """The file's bytes (gunzipped for ``*.gz``), or ``RefusedInput`` with the reason."""
    lim = lim or _limits.current()
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > lim.max_file_bytes:
            raise OverLimit(
                f"file is {size} bytes, over the file limit of {lim.max_file_bytes} bytes "
                f"({_limits.MAX_FILE_BYTES_ENV})"
            )
        if Path(path).name.lower().endswith(".gz"):
            return _gunzip(handle, size, lim)
        data = handle.read(lim.max_file_bytes + 1)
        if len(data) > lim.max_file_bytes:  # it grew while being read
            raise OverLimit(
                f"file grew past the file limit of {lim.max_file_bytes} bytes while read "
                f"({_limits.MAX_FILE_BYTES_ENV})"
            )
        return data


def gunzip_stream(path: Path, lim: _limits.Limits | None = None) -> Generator[bytes, None, None]:
    """A gzip's decompressed bytes in pieces of at most 1 MiB, never whole: stopped (``OverLimit``)
    as soon as the output passes ``TRIALSCREEN_MAX_EXPANDED_BYTES`` or the expansion ratio,
    ``BadGzip`` for a stream that is not gzip or ends early. The compressed size is not held
    to the file limit: the caller holds a part at a time (docs/decisions.md, "Large NDJSON
    and CSV files are parsed in parts")."""
    lim = lim or _limits.current()
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        yield from _gunzip_pieces(
            handle,
            size,
            lim,
            lim.max_expanded_bytes,
            f"the expanded-size limit of {lim.max_expanded_bytes} bytes",
            _limits.MAX_EXPANDED_BYTES_ENV,
        )


def head(path: Path, limit: int = PARTIAL_LIMIT) -> bytes:
    """The first ``limit`` bytes of a file as a parser reads them (gunzipped for ``*.gz``);
    what could be read when the file is refused or broken."""
    if not Path(path).name.lower().endswith(".gz"):
        try:
            with open_regular(path) as handle:
                return handle.read(limit)
        except RefusedInput:
            return b""
    out = bytearray()
    pieces = gunzip_stream(path)
    try:
        for piece in pieces:
            out += piece[: limit - len(out)]
            if len(out) >= limit:
                break
    except RefusedInput as exc:
        return bytes(exc.partial[:limit]) or bytes(out)
    finally:
        pieces.close()
    return bytes(out)


def _gunzip(handle: BinaryIO, size: int, lim: _limits.Limits) -> bytes:
    """The whole decompressed file, within the file limit and the expansion ratio."""
    return b"".join(
        _gunzip_pieces(
            handle,
            size,
            lim,
            lim.max_file_bytes,
            f"the file limit of {lim.max_file_bytes} bytes",
            _limits.MAX_FILE_BYTES_ENV,
        )
    )


def _gunzip_pieces(
    handle: BinaryIO, size: int, lim: _limits.Limits, max_bytes: int, bound: str, setting: str
) -> Iterator[bytes]:
    """Streamed ``gzip.decompress``: members in sequence, zero padding after a member
    skipped, CRC and length checked by zlib; stopped at the first limit passed (``bound``
    names ``max_bytes`` in the reason, ``setting`` the variable that sets it). An exception's
    ``partial`` is the output's first ``PARTIAL_LIMIT`` bytes."""
    first = bytearray()
    total = 0
    consumed = 0
    members = 0
    inflater: zlib._Decompress | None = None

    def account(piece: bytes) -> None:
        nonlocal total
        total += len(piece)
        if total > max_bytes:
            raise OverLimit(
                f"gzip expands past {bound} (over {total - len(piece)} bytes from the first "
                f"{consumed} of {size} compressed bytes; {setting})",
                bytes(first),
            )
        if total > lim.ratio_floor_bytes and total > lim.max_expansion_ratio * consumed:
            raise OverLimit(
                f"gzip expands more than {lim.max_expansion_ratio}x ({total} bytes from the "
                f"first {consumed} of {size} compressed bytes; "
                f"{_limits.MAX_EXPANSION_RATIO_ENV})",
                bytes(first),
            )
        if len(first) < PARTIAL_LIMIT:
            first.extend(piece[: PARTIAL_LIMIT - len(first)])

    while block := handle.read(_READ_STEP):
        consumed += len(block)
        data = block
        while True:
            if inflater is None:
                if members:
                    data = data.lstrip(b"\x00")
                if not data:
                    break
                inflater = zlib.decompressobj(wbits=31)
                members += 1
            try:
                piece = inflater.decompress(data, _OUT_STEP)
            except zlib.error:
                raise BadGzip("not a valid gzip file", bytes(first), truncated=False) from None
            account(piece)
            if piece:
                yield piece
            if inflater.eof:
                data, inflater = inflater.unused_data, None
                continue
            data = inflater.unconsumed_tail
            if not data and len(piece) < _OUT_STEP:
                break
    if inflater is not None:
        raise BadGzip("gzip stream is truncated", bytes(first), truncated=True)
