"""What an archive does, whatever holds it (PostgreSQL or files)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from pcaq.archive.entries import ArchivedRecord, AuditRecord


class ArchiveDown(Exception):
    """The archive could not be reached or did not confirm a write; the caller retries later."""


class Archive(Protocol):
    """A durable, append-mostly store of finished certificate requests."""

    def write(self, records: Sequence[ArchivedRecord]) -> None:
        """Store ``records`` durably before returning (ArchiveDown if it cannot). Idempotent: a record
        written twice is one record; a second write may only add a revocation."""
        ...

    def get(self, ca_id: str, serial_hex: str) -> ArchivedRecord | None:
        """One record, or None if the archive does not hold it."""
        ...

    def issued(self, ca_id: str) -> Iterator[ArchivedRecord]:
        """Every issued certificate of a CA the archive holds, each once."""
        ...

    def write_audit(self, entries: Sequence[AuditRecord]) -> None:
        """Store audit-trail entries durably before returning (ArchiveDown if it cannot). Idempotent: an
        entry written twice is one entry."""
        ...

    def audit(self, ca_id: str, before: str | None = None, count: int | None = None) -> list[AuditRecord]:
        """A CA's archived audit entries older than the stream id ``before`` (all when None), oldest
        first; only the last ``count`` of them when given."""
        ...

    def check(self) -> None:
        """Raise ArchiveDown unless the archive answers now (``/readyz``)."""
        ...

    def close(self) -> None:
        """Let go of connections and files."""
        ...
