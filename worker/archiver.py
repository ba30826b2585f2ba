"""The archiver and retention: one worker of the fleet at a time (under a lock) writes finished
records and the CAs' audit trails to the archive, then removes from Redis what has been archived and
whose time has come.

A record is put in the retention index only after the archive confirmed it
(shared/records/retention.py), so removal never takes what the archive lacks. When the archive is
down, issuance goes on: the queue grows in Redis, and ``/metrics`` and the log raise the alarm.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from cryptography import x509

from pcaq.archive import Archive, ArchiveDown, ArchivedRecord, open_archive
from pcaq.archive.entries import AuditRecord
from pcaq.platform.settings import Settings
from pcaq.records import STORE_DOWN, Store, member_of
from pcaq.records.retention import FinishedRecord
from pcaq.revocation.revoke import all_ca_ids

log = logging.getLogger("pcaq.archiver")

LOCK_SECONDS = 10.0  # a dead archiver's lock lapses this soon; a live one renews it every step (<= 1 s)
IDLE_SECONDS = 1.0  # the pause after a step that found less than a full batch
ALARM_LOG_SECONDS = 60.0  # while the archive is down, an ERROR line this often
CA_LIST_SECONDS = 60.0  # a new CA's audit trail is archived within this long


def _not_after(der: bytes | None) -> float | None:
    if not der:
        return None
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    except ValueError:
        return None  # not a certificate we can read: kept by the failed-request window below


def archived_of(record: FinishedRecord) -> ArchivedRecord:
    """The archive's form of a finished record (Not After read from the certificate)."""
    return ArchivedRecord(
        ca_id=record.ca_id,
        serial_hex=record.serial_hex,
        issued=record.issued,
        certificate_der=record.certificate_der,
        failure=record.failure,
        created_at=record.created_at,
        finished_at=record.finished_at,
        not_after=_not_after(record.certificate_der) if record.issued else None,
        revoked_at=record.revoked_at,
        reason=record.reason,
    )


def remove_after(record: ArchivedRecord, settings: Settings) -> float:
    """When the record may leave Redis: ``PCAQ_RETENTION_AFTER_EXPIRY`` after its Not After (a revoked
    certificate thus stays on the CRL until it expires), or ``PCAQ_FAILED_RETENTION`` after a failure."""
    if record.issued and record.not_after is not None:
        return record.not_after + settings.retention_after_expiry
    return record.finished_at + settings.failed_retention


def archive_step(store: Store, archive: Archive, settings: Settings) -> int:
    """Archive one batch of the queue; returns how many queued members it confirmed (ArchiveDown if
    the archive did not take it: the batch stays queued)."""
    started = time.thread_time()
    batch = store.archive_queue(settings.archive_batch)
    if not batch.entry_ids:
        return 0
    records = [archived_of(r) for r in store.finished_records(batch.members)]
    try:
        archive.write(records)
    except ArchiveDown as exc:
        store.archive_failed(str(exc))
        raise
    due = {member_of(r.ca_id, r.serial_hex): remove_after(r, settings) for r in records}
    store.confirm_archived(batch, due, time.thread_time() - started)
    return len(batch.members)


def audit_step(store: Store, archive: Archive, settings: Settings, ca_ids: list[str]) -> int:
    """Archive the CAs' new audit entries (a batch per CA), then drop from Redis those archived and
    older than ``PCAQ_RETENTION_AFTER_EXPIRY``; returns how many entries it archived (ArchiveDown if
    the archive did not take them: they stay in Redis, unarchived, and are tried again)."""
    archived = 0
    horizon = store.clock() - settings.retention_after_expiry
    for ca_id in ca_ids:
        entries = store.unarchived_audit(ca_id, settings.archive_batch)
        if entries:
            archive.write_audit([AuditRecord(ca_id, entry_id, fields) for entry_id, fields in entries])
            store.audit_archived(ca_id, entries[-1][0])
            archived += len(entries)
        store.trim_archived_audit(ca_id, horizon)
    return archived


def retention_step(store: Store, settings: Settings) -> int:
    """Remove one batch of records whose remove-after time has come; returns how many."""
    return store.remove_records(store.due_for_removal(store.clock(), settings.archive_batch))


class Archiver:
    """The archiver's thread: takes the fleet lock, then archives and removes while it holds it."""

    def __init__(self, store: Store, settings: Settings, archive: Archive | None = None):
        self.store, self.settings = store, settings
        self.archive = archive or open_archive(settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}:archiver"
        self.stop = threading.Event()
        self._alarm = False
        self._alarm_logged = float("-inf")  # monotonic time of the last ERROR line about the outage
        self._ca_ids: list[str] = []
        self._ca_ids_read = float("-inf")  # monotonic time the CA list was read

    def step(self) -> bool:
        """One round; True if there is more to do right away."""
        if not self.store.try_archive_lock(self.name, LOCK_SECONDS):
            return False
        busy = False
        try:
            done = archive_step(self.store, self.archive, self.settings)
            audited = audit_step(self.store, self.archive, self.settings, self._cas())
            busy = max(done, audited) >= self.settings.archive_batch
            done += audited
            if self._alarm and (done or self._answers()):
                log.warning("archive: reachable again; the records that waited are being archived")
                self._alarm = False
        except ArchiveDown as exc:
            # Removal goes on: what it removes was archived before the outage.
            self._outage(str(exc))
        removed = retention_step(self.store, self.settings)
        return busy or removed >= self.settings.archive_batch

    def _cas(self) -> list[str]:
        """The ids of every CA, read again every minute (CAs are few and change rarely)."""
        if time.monotonic() - self._ca_ids_read >= CA_LIST_SECONDS:
            self._ca_ids = all_ca_ids(self.store, self.settings)
            self._ca_ids_read = time.monotonic()
        return self._ca_ids

    def run(self) -> None:
        """Check the archive once, then loop until :attr:`stop` is set."""
        self.check_at_start()
        while not self.stop.is_set():
            more = False
            try:
                more = self.step()
            except STORE_DOWN:
                log.warning("archive: Redis is not reachable; will retry")
            except Exception:  # noqa: BLE001 - the loop must survive anything
                log.exception("archive: step failed; continuing")
            # A short pause even when busy, so that a long backlog does not keep Redis and this
            # process's CPU from the requests and the signing.
            self.stop.wait(0.005 if more else IDLE_SECONDS)
        self.archive.close()

    def check_at_start(self) -> bool:
        """Whether the archive answers. A wrong URL is an ERROR in the log and an alarm in /metrics from
        the start, not only at the first write."""
        try:
            return self._answers()
        except STORE_DOWN:
            return False  # the loop says so

    def _answers(self) -> bool:
        """Check the archive, noting the answer where /metrics reads it."""
        try:
            self.archive.check()
        except ArchiveDown as exc:
            self.store.archive_failed(str(exc))
            self._outage(str(exc))
            return False
        self.store.archive_answered()
        return True

    def _outage(self, message: str) -> None:
        """An ERROR line when the archive stops answering, and again every minute while it does not."""
        self._alarm = True
        if time.monotonic() - self._alarm_logged >= ALARM_LOG_SECONDS:
            self._alarm_logged = time.monotonic()
            log.error("archive: not reachable, records wait in Redis (%s): %s", self._backlog(), message)

    def _backlog(self) -> str:
        try:
            return f"{self.store.retention_counts().backlog} queue entries"
        except STORE_DOWN:
            return "Redis not reachable either"

    def start(self) -> threading.Thread:
        """Run in a daemon thread."""
        thread = threading.Thread(target=self.run, name="pcaq-archiver", daemon=True)
        thread.start()
        return thread
