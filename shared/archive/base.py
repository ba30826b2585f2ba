"""What an archive does, whatever holds it (PostgreSQL or files)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from pcaq.archive.entries import ArchivedRecord


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

    def check(self) -> None:
        """Raise ArchiveDown unless the archive answers now (``/readyz``)."""
        ...

    def close(self) -> None:
        """Let go of connections and files."""
        ...
