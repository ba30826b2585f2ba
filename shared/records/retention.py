"""Records of retention: the archive queue, the remove-after index, and removal in small batches.

Every request that finishes (the commit and claim scripts) and every revocation (the revoke script)
appends its member to the archive queue, a stream. The archiver (worker/archiver.py) reads the queue
oldest first, writes the records to the archive, and only once the archive confirmed them puts each
member in the retention index (a sorted set scored by the time its record may leave Redis) and
deletes the queue entries. Removal takes due members from that index in bounded batches, and deletes
them in slices of a short script that checks each is still due (a revocation takes its record out of
the index until the archive holds the revocation too): so nothing leaves Redis that the archive does
not hold, and a crash anywhere in between only repeats a step (archive writes are idempotent).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import redis
from cryptography import x509

from pcaq.pki.names import searchable_names
from pcaq.records import keys, scripts
from pcaq.records.requests import split_member

# Records one removal script takes: a small fraction of a millisecond of Redis's time per slice.
REMOVE_SLICE = 50


@dataclass(frozen=True)
class FinishedRecord:
    """One finished request as Redis holds it, for the archive."""

    ca_id: str
    serial_hex: str
    issued: bool
    certificate_der: bytes | None
    failure: str | None
    created_at: float
    finished_at: float
    revoked_at: float | None
    reason: str | None


@dataclass(frozen=True)
class QueuedBatch:
    """Entries read from the archive queue: their stream ids and the members they name (no repeats)."""

    entry_ids: list[bytes]
    members: list[str]


@dataclass(frozen=True)
class RetentionCounts:
    """What GET /metrics shows of retention and the archive."""

    retained: int  # records archived and still in Redis, waiting for their remove-after time
    backlog: int  # archive queue entries not yet confirmed by the archive
    archived: int  # records the archive confirmed (a revocation archives a record again)
    removed: int  # records removed from Redis by retention
    last_ok: float  # time of the archiver's last confirmed write (0: none)
    last_failure: float  # time of its last failed write (0: none)
    error: str  # the last failure's message


def _float(value: bytes | None) -> float | None:
    return float(value) if value else None


class RetentionRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    @functools.cached_property
    def _extend_own_lock(self):
        return self.r.register_script(scripts.EXTEND_OWN_LOCK)

    @functools.cached_property
    def _remove_records(self):
        return self.r.register_script(scripts.REMOVE_RECORDS)

    def try_archive_lock(self, owner: str, seconds: float) -> bool:
        """Take or keep the fleet-wide archiver lock for ``seconds`` (True while ``owner`` holds it)."""
        ms = max(1, int(seconds * 1000))
        if self.r.set(keys.ARCHIVE_LOCK, owner, nx=True, px=ms):
            return True
        return bool(self._extend_own_lock(keys=[keys.ARCHIVE_LOCK], args=[owner, ms]))

    def archive_queue(self, limit: int) -> QueuedBatch:
        """The oldest entries of the archive queue naming at most about ``limit`` members."""
        entries = self.r.xrange(keys.ARCHIVE_QUEUE, "-", "+", count=max(1, limit))
        ids, members, seen = [], [], set()
        for entry_id, fields in entries:
            if ids and len(members) >= limit:
                break
            ids.append(entry_id)
            for member in (fields.get(b"m") or b"").decode().split():
                if member not in seen:
                    seen.add(member)
                    members.append(member)
        return QueuedBatch(ids, members)

    def finished_records(self, members: Iterable[str]) -> list[FinishedRecord]:
        """The finished records of ``members`` (those gone or unfinished are left out)."""
        members = list(members)
        pipe = self.r.pipeline(transaction=False)
        for member in members:
            pipe.hmget(keys.certificate(member), ["s", "c", "e", "t", "d", "rv", "rr"])
        out = []
        for member, (s, c, e, t, d, rv, rr) in zip(members, pipe.execute() if members else [], strict=True):
            if s not in (b"I", b"F"):
                continue
            ca_id, serial_hex = split_member(member)
            out.append(
                FinishedRecord(
                    ca_id,
                    serial_hex,
                    s == b"I",
                    c,
                    e.decode() if e else None,
                    float(t or 0),
                    float(d or t or 0),
                    _float(rv),
                    rr.decode() if rr else None,
                )
            )
        return out

    def confirm_archived(self, batch: QueuedBatch, remove_after: dict[str, float], cpu: float = 0.0) -> None:
        """The archive holds the batch: index its records for removal and drop its queue entries, in
        one transaction (``cpu``: archiver seconds spent on it, for GET /metrics)."""
        pipe = self.r.pipeline(transaction=True)
        if remove_after:
            pipe.zadd(keys.RETENTION, remove_after)
        if batch.entry_ids:
            pipe.xdel(keys.ARCHIVE_QUEUE, *batch.entry_ids)
        pipe.hincrby(keys.METRICS_RECORDS, "archived", len(remove_after))
        pipe.hincrbyfloat(keys.METRICS_RECORDS, "cpu", round(cpu, 6))
        pipe.hset(keys.METRICS_RECORDS, "ok", f"{self.clock():.3f}")
        pipe.execute()

    def archive_answered(self) -> None:
        """Note that the archive answered a check (clears the alarm of GET /metrics as a write does)."""
        self.r.hset(keys.METRICS_RECORDS, "ok", f"{self.clock():.3f}")

    def archive_failed(self, message: str) -> None:
        """Note a failed archive write (GET /metrics raises its alarm from it)."""
        self.r.hset(keys.METRICS_RECORDS, mapping={"failed": f"{self.clock():.3f}", "error": message[:300]})

    def due_for_removal(self, now: float, limit: int) -> list[str]:
        """Up to ``limit`` members whose remove-after time has come, oldest first."""
        raw = self.r.zrangebyscore(keys.RETENTION, "-inf", now, start=0, num=max(1, limit))
        return [m.decode() for m in raw]

    def remove_records(self, members: list[str]) -> int:
        """Remove due records from Redis with their revocation entries and cached OCSP answers, a few
        at a time (Redis serves other clients between two slices); returns how many it removed. A
        member no longer due (revoked since, and not yet archived again) is left alone."""
        removed, now = 0, f"{self.clock():.3f}"
        for first in range(0, len(members), REMOVE_SLICE):
            part = members[first : first + REMOVE_SLICE]
            args: list = [now]
            for member, names in zip(part, self._indexed_names(part), strict=True):
                args += [member, len(names), *names]
            removed += int(
                self._remove_records(
                    keys=[
                        keys.RETENTION,
                        keys.CERT_PREFIX,
                        keys.REVOKED_PREFIX,
                        keys.OCSP_PREFIX,
                        keys.METRICS_RECORDS,
                        keys.INDEX_PREFIX,
                    ],
                    args=args,
                )
            )
        return removed

    def _indexed_names(self, members: list[str]) -> list[tuple[str, ...]]:
        """The names each member's certificate is indexed under for the console's search (none for a
        request without a certificate), read from the certificate as the commit did."""
        pipe = self.r.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.certificate(member), "c")
        found = []
        for der in pipe.execute():
            try:
                found.append(searchable_names(x509.load_der_x509_certificate(der)) if der else ())
            except ValueError:  # not a certificate: nothing was indexed for it
                found.append(())
        return found

    def queue_unarchived(self, cursor: int = 0, count: int = 1000) -> tuple[int, int]:
        """One SCAN step over certificate records (records finished before pcaq had an archive never
        entered its queue): queue the finished ones that are not in the retention index. Returns the
        next cursor (0: the walk is over) and how many it queued. Safe to repeat: archiving is idempotent."""
        cursor, names = self.r.scan(cursor, match=f"{keys.CERT_PREFIX}*", count=count)
        members = [name.decode()[len(keys.CERT_PREFIX) :] for name in names]
        pipe = self.r.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.certificate(member), "s")
            pipe.zscore(keys.RETENTION, member)
        replies = pipe.execute() if members else []
        due = [
            m for i, m in enumerate(members) if replies[2 * i] in (b"I", b"F") and replies[2 * i + 1] is None
        ]
        for first in range(0, len(due), 100):  # entries the size of a commit batch's
            self.r.xadd(keys.ARCHIVE_QUEUE, {"m": " ".join(due[first : first + 100])})
        return int(cursor), len(due)

    def retention_counts(self) -> RetentionCounts:
        """Counts and archiver health for GET /metrics."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zcard(keys.RETENTION)
        pipe.xlen(keys.ARCHIVE_QUEUE)
        pipe.hmget(keys.METRICS_RECORDS, ["archived", "removed", "ok", "failed", "error"])
        retained, backlog, (archived, removed, ok, failed, error) = pipe.execute()
        return RetentionCounts(
            int(retained),
            int(backlog),
            int(archived or 0),
            int(removed or 0),
            float(ok or 0),
            float(failed or 0),
            error.decode() if error else "",
        )

    def archiver_cpu_seconds(self) -> float:
        """CPU seconds the archiver has spent archiving (benchmarks compare it with the worker's)."""
        return float(self.r.hget(keys.METRICS_RECORDS, "cpu") or 0)
