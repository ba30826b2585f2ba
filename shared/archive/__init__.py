"""The durable archive of finished certificate requests (PostgreSQL, or JSON-lines files).

Redis holds a hot window of records; everything that leaves it was written here first
(shared/records/retention.py, worker/archiver.py). GetCertificate and audit reports read here for
what Redis no longer holds.
"""

from __future__ import annotations

from pcaq.archive.base import Archive, ArchiveDown
from pcaq.archive.entries import ArchivedRecord
from pcaq.platform.settings import Settings

__all__ = ["Archive", "ArchiveDown", "ArchivedRecord", "open_archive"]


def open_archive(settings: Settings) -> Archive:
    """The archive the settings name: PostgreSQL at ``PCAQ_ARCHIVE_URL``, else files in the data
    folder. Nothing is connected yet: the first call does it (and says ArchiveDown if it cannot)."""
    if settings.archive_url:
        from pcaq.archive.postgres import PostgresArchive  # psycopg only where PostgreSQL is used

        return PostgresArchive(settings.archive_url)
    from pcaq.archive.files import FileArchive

    return FileArchive(settings.archive_dir)
