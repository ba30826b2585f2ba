"""The durable archive of finished certificate requests (PostgreSQL, or JSON-lines files).

Redis holds a hot window of records; everything that leaves it was written here first
(shared/records/retention.py, worker/archiver.py). GetCertificate and audit reports read here for
what Redis no longer holds.
"""

from __future__ import annotations

from pcaq.archive.base import Archive, ArchiveDown
from pcaq.archive.entries import ArchivedRecord
from pcaq.errors import Unavailable
from pcaq.platform.settings import Settings

__all__ = ["Archive", "ArchiveDown", "ArchivedRecord", "kept", "open_archive"]


def kept(archive: Archive, ca_id: str, serial_hex: str) -> ArchivedRecord | None:
    """The archived record of one certificate request (None if the archive has none); an archive
    that does not answer is a retryable :class:`Unavailable` for the caller."""
    try:
        return archive.get(ca_id, serial_hex)
    except ArchiveDown as exc:
        raise Unavailable("The certificate archive is not reachable; try again later.") from exc


def open_archive(settings: Settings) -> Archive:
    """The archive the settings name: PostgreSQL at ``PCAQ_ARCHIVE_URL``, else files in the data
    folder. Nothing is connected yet: the first call does it (and says ArchiveDown if it cannot)."""
    if settings.archive_url:
        from pcaq.archive.postgres import PostgresArchive  # psycopg only where PostgreSQL is used

        return PostgresArchive(settings.archive_url)
    from pcaq.archive.files import FileArchive

    return FileArchive(settings.archive_dir)
