"""The file archive: append-only, rotated, gzip-compressed JSON lines in ``<data dir>/archive``:
``records-*.jsonl.gz`` for finished requests, ``audit-*.jsonl.gz`` for audit-trail entries.

Each write appends one gzip member (one batch of lines) to the current file and fsyncs it, so a batch
is either whole on disk or, cut by a crash, an unreadable tail that readers stop at and the writer
leaves behind (it starts a new file when the current one does not read to its end). A file is
rotated when it reaches :data:`ROTATE_BYTES`. Readers fold repeated writes of a record into one
(:func:`pcaq.archive.entries.newer`), which is what makes writing a batch again harmless.

Lookups read the files (newest first for one record): this archive suits small installations and
development; a fleet sets ``PCAQ_ARCHIVE_URL``.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from pcaq.archive.base import ArchiveDown
from pcaq.archive.entries import (
    ArchivedRecord,
    AuditRecord,
    audit_from_line,
    audit_to_line,
    from_line,
    newer,
    stream_order,
    to_line,
)

ROTATE_BYTES = 64 * 1024 * 1024
RECORDS, AUDIT = "records", "audit"  # the two kinds of file: finished requests, audit-trail entries


def _lines(path: Path) -> Iterator[bytes]:
    """The complete lines of one file, stopping at a tail cut by a crash."""
    try:
        with gzip.open(path, "rb") as stream:
            yield from stream
    except (EOFError, OSError, zlib.error):
        return  # a batch cut short: it was never confirmed, so its records are written again elsewhere


def _whole(path: Path) -> bool:
    """Whether a file reads to its end (no batch cut short in it)."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 20):
                pass
        return True
    except (EOFError, OSError, zlib.error):
        return False


class FileArchive:
    """The archive as files in ``folder``."""

    def __init__(self, folder: Path, rotate_bytes: int = ROTATE_BYTES):
        self.folder = Path(folder)
        self.rotate_bytes = rotate_bytes
        self._current: dict[str, Path] = {}  # kind -> the file appended to
        self._lock = threading.Lock()

    def files(self, kind: str = RECORDS) -> list[Path]:
        """The archive's files of one kind, oldest first (their names sort by creation)."""
        return sorted(self.folder.glob(f"{kind}-*.jsonl.gz")) if self.folder.is_dir() else []

    def _new_file(self, kind: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        n = len(self.files(kind))
        return self.folder / f"{kind}-{stamp}-{n:06d}.jsonl.gz"

    def _target(self, kind: str) -> Path:
        current = self._current.get(kind)
        if current is None:
            existing = self.files(kind)
            # Appending after a cut batch would hide every later batch from readers: start anew.
            current = existing[-1] if existing and _whole(existing[-1]) else self._new_file(kind)
        elif current.exists() and current.stat().st_size >= self.rotate_bytes:
            current = self._new_file(kind)
        self._current[kind] = current
        return current

    def write(self, records: Sequence[ArchivedRecord]) -> None:
        """Append ``records`` as one compressed batch and fsync it."""
        self._append(RECORDS, [to_line(r) for r in records])

    def write_audit(self, entries: Sequence[AuditRecord]) -> None:
        """Append audit entries as one compressed batch and fsync it."""
        self._append(AUDIT, [audit_to_line(e) for e in entries])

    def _append(self, kind: str, lines: list[str]) -> None:
        if not lines:
            return
        data = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self._target(kind)
                with open(path, "ab") as out:
                    # A second archiver (a lock that lapsed) must not interleave its bytes with ours.
                    fcntl.flock(out, fcntl.LOCK_EX)
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                dir_fd = os.open(self.folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)  # the file's name is durable too, not only its bytes
                finally:
                    os.close(dir_fd)
            except OSError as exc:
                self._current.pop(kind, None)  # look again next time (the cut tail rule above)
                raise ArchiveDown(f"file archive {self.folder}: {exc}") from exc

    def _records(self, paths: list[Path]) -> Iterator[ArchivedRecord]:
        for path in paths:
            for line in _lines(path):
                if line.strip():
                    yield from_line(line)

    def get(self, ca_id: str, serial_hex: str) -> ArchivedRecord | None:
        """One record (read from the files, newest first)."""
        needle = f'"serial":"{serial_hex}"'.encode()
        for path in reversed(self.files()):
            found = None
            for line in _lines(path):
                if needle in line:  # a cheap test before the JSON decode
                    record = from_line(line)
                    if record.key == (ca_id, serial_hex):
                        found = record if found is None else newer(found, record)
            if found is not None:
                return found
        return None

    def issued(self, ca_id: str) -> Iterator[ArchivedRecord]:
        """Every issued certificate of the CA the files hold, each once."""
        held: dict[str, ArchivedRecord] = {}
        for record in self._records(self.files()):
            if record.ca_id == ca_id and record.issued:
                old = held.get(record.serial_hex)
                held[record.serial_hex] = record if old is None else newer(old, record)
        yield from held.values()

    def audit(self, ca_id: str, before: str | None = None, count: int | None = None) -> list[AuditRecord]:
        """A CA's archived audit entries before ``before``, oldest first (the last ``count``)."""
        limit = stream_order(before) if before else None
        held: dict[str, AuditRecord] = {}
        needle = f'"ca":"{ca_id}"'.encode()
        for path in self.files(AUDIT):
            for line in _lines(path):
                if needle in line:
                    entry = audit_from_line(line)
                    if entry.ca_id == ca_id and (limit is None or entry.order < limit):
                        held[entry.entry_id] = entry  # written twice: one entry
        ordered = sorted(held.values(), key=lambda e: e.order)
        return ordered[-count:] if count is not None else ordered

    def check(self) -> None:
        """ArchiveDown unless the folder can be written."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArchiveDown(f"file archive {self.folder}: {exc}") from exc
        if not os.access(self.folder, os.W_OK):
            raise ArchiveDown(f"file archive {self.folder}: not writable")

    def close(self) -> None:
        """Nothing is held open between calls."""
