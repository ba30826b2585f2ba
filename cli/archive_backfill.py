"""``pcaq archive-backfill``: queue for the archive the certificate records Redis held before pcaq had
one (records finished since are queued by the step that finishes them). A worker's archiver then
writes them and retention removes them in time, as any other (docs/retention.md)."""

from __future__ import annotations

import argparse

from pcaq.records import Store


def add_parser(commands, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``pcaq archive-backfill``; the caller sets its function (it resolves the Redis)."""
    return commands.add_parser(
        "archive-backfill",
        parents=parents,
        help="queue for the archive the finished records Redis held before the archive existed",
        description="Walk Redis's certificate records (SCAN, in small steps) and queue every finished one "
        "that is not archived yet; the workers archive them, then retention removes them when due. Safe "
        "to run again.",
    )


def run(store: Store) -> int:
    """Walk every certificate record once; prints how many were queued."""
    cursor, queued = store.queue_unarchived(0)
    while cursor:
        cursor, more = store.queue_unarchived(cursor)
        queued += more
    print(f"pcaq: {queued} finished record(s) queued for the archive")
    return 0
