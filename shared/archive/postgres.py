"""The PostgreSQL archive: one table, primary key (CA id, serial), written with idempotent upserts."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import psycopg
from psycopg.types.json import Jsonb

from pcaq.archive.base import ArchiveDown
from pcaq.archive.entries import ArchivedRecord, AuditRecord, stream_order

SCHEMA = """
CREATE TABLE IF NOT EXISTS pcaq_records (
    ca_id text NOT NULL,
    serial text NOT NULL,
    issued boolean NOT NULL,
    der bytea,
    failure text,
    created_at double precision NOT NULL,
    finished_at double precision NOT NULL,
    not_after double precision,
    revoked_at double precision,
    reason text,
    PRIMARY KEY (ca_id, serial)
);
CREATE TABLE IF NOT EXISTS pcaq_audit (
    ca_id text NOT NULL,
    ms bigint NOT NULL,
    seq bigint NOT NULL,
    fields jsonb NOT NULL,
    PRIMARY KEY (ca_id, ms, seq)
)
"""

# A record written again is the same row; the one change it may bring is a revocation.
UPSERT = """
INSERT INTO pcaq_records
    (ca_id, serial, issued, der, failure, created_at, finished_at, not_after, revoked_at, reason)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (ca_id, serial) DO UPDATE SET revoked_at = EXCLUDED.revoked_at, reason = EXCLUDED.reason
WHERE pcaq_records.revoked_at IS NULL AND EXCLUDED.revoked_at IS NOT NULL
"""

INSERT_AUDIT = """
INSERT INTO pcaq_audit (ca_id, ms, seq, fields) VALUES (%s, %s, %s, %s)
ON CONFLICT (ca_id, ms, seq) DO NOTHING
"""

_COLUMNS = "ca_id, serial, issued, der, failure, created_at, finished_at, not_after, revoked_at, reason"

# Errors that mean "PostgreSQL is not there or lost the connection" (retry later), not a bug.
_DOWN = (psycopg.OperationalError, psycopg.InterfaceError)


def _row(record: ArchivedRecord) -> tuple:
    return (
        record.ca_id,
        record.serial_hex,
        record.issued,
        record.certificate_der,
        record.failure,
        record.created_at,
        record.finished_at,
        record.not_after,
        record.revoked_at,
        record.reason,
    )


def _record(row: tuple) -> ArchivedRecord:
    ca_id, serial, issued, der, failure, created, finished, not_after, revoked, reason = row
    return ArchivedRecord(
        ca_id, serial, issued, bytes(der) if der is not None else None, failure, created, finished,
        not_after, revoked, reason,
    )  # fmt: skip


class PostgresArchive:
    """The archive in PostgreSQL. One connection, made on first use and again after it is lost; calls
    from several threads take turns on it."""

    def __init__(self, url: str, connect_timeout: int = 3):
        self._url = url
        self._timeout = connect_timeout
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, connect_timeout=self._timeout, autocommit=True)
            self._conn.execute(SCHEMA)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone either way
                pass

    def write(self, records: Sequence[ArchivedRecord]) -> None:
        """Upsert ``records`` in one transaction; returns once PostgreSQL committed it."""
        if not records:
            return
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(UPSERT, [_row(r) for r in records])
            except _DOWN as exc:
                self._drop()
                raise ArchiveDown(f"PostgreSQL archive: {exc}".strip()) from exc

    def get(self, ca_id: str, serial_hex: str) -> ArchivedRecord | None:
        """One record, or None."""
        with self._lock:
            try:
                row = (
                    self._connection()
                    .execute(
                        f"SELECT {_COLUMNS} FROM pcaq_records WHERE ca_id = %s AND serial = %s",
                        (ca_id, serial_hex),
                    )
                    .fetchone()
                )
            except _DOWN as exc:
                self._drop()
                raise ArchiveDown(f"PostgreSQL archive: {exc}".strip()) from exc
        return _record(row) if row else None

    def issued(self, ca_id: str, page: int = 2000) -> Iterator[ArchivedRecord]:
        """Every issued certificate of the CA, by serial, a page at a time (keyset paging: each page is
        one short query, so a long report never holds the connection between pages)."""
        after = ""
        while True:
            with self._lock:
                try:
                    rows = (
                        self._connection()
                        .execute(
                            f"SELECT {_COLUMNS} FROM pcaq_records WHERE ca_id = %s AND issued AND serial > %s"
                            " ORDER BY serial LIMIT %s",
                            (ca_id, after, page),
                        )
                        .fetchall()
                    )
                except _DOWN as exc:
                    self._drop()
                    raise ArchiveDown(f"PostgreSQL archive: {exc}".strip()) from exc
            yield from (_record(row) for row in rows)
            if len(rows) < page:
                return
            after = rows[-1][1]

    def write_audit(self, entries: Sequence[AuditRecord]) -> None:
        """Insert audit entries in one transaction (an entry already there is left as it is)."""
        if not entries:
            return
        rows = [(e.ca_id, *e.order, Jsonb(e.fields)) for e in entries]
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(INSERT_AUDIT, rows)
            except _DOWN as exc:
                self._drop()
                raise ArchiveDown(f"PostgreSQL archive: {exc}".strip()) from exc

    def audit(self, ca_id: str, before: str | None = None, count: int | None = None) -> list[AuditRecord]:
        """A CA's archived audit entries before ``before``, oldest first (the last ``count``)."""
        ms, seq = stream_order(before) if before else (2**62, 0)
        query = (
            "SELECT ms, seq, fields FROM pcaq_audit WHERE ca_id = %s AND (ms, seq) < (%s, %s)"
            " ORDER BY ms DESC, seq DESC" + (" LIMIT %s" if count is not None else "")
        )
        params = (ca_id, ms, seq, *((count,) if count is not None else ()))
        with self._lock:
            try:
                rows = self._connection().execute(query, params).fetchall()
            except _DOWN as exc:
                self._drop()
                raise ArchiveDown(f"PostgreSQL archive: {exc}".strip()) from exc
        return [AuditRecord(ca_id, f"{m}-{q}", dict(fields)) for m, q, fields in reversed(rows)]

    def check(self) -> None:
        """ArchiveDown unless PostgreSQL answers."""
        with self._lock:
            try:
                self._connection().execute("SELECT 1")
            except _DOWN as exc:
                self._drop()
                raise ArchiveDown(f"PostgreSQL archive: {exc}".strip()) from exc

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._drop()
