"""``pcaq archive-backfill``: queue for the archive the certificate records Redis held before pcaq had
one (records finished since are queued by the step that finishes them). A worker's archiver then
writes them and retention removes them in time, as any other (docs/retention.md)."""

from __future__ import annotations

from pcaq.records import Store


def run(store: Store) -> int:
    """Walk every certificate record once; prints how many were queued."""
    cursor, queued = store.queue_unarchived(0)
    while cursor:
        cursor, more = store.queue_unarchived(cursor)
        queued += more
    print(f"pcaq: {queued} finished record(s) queued for the archive")
    return 0
