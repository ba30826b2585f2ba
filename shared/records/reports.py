"""Records of audit reports: one hash per report, a per-CA gate for the report interval, the list of
reports not yet written, and the walk over a CA's certificate records that a report lists."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import redis

from pcaq.records import keys
from pcaq.records.requests import split_member


@dataclass(frozen=True)
class AuditReportRecord:
    """One audit report as DescribeCertificateAuthorityAuditReport shows it."""

    status: str  # CREATING, SUCCESS, FAILED
    bucket: str
    key: str
    response_format: str  # JSON or CSV
    created_at: float


@dataclass(frozen=True)
class IssuedRecord:
    """One issued certificate of a CA, as a report lists it."""

    serial_hex: str
    certificate_der: bytes
    issued_at: float
    revoked_at: float | None
    reason: str | None


def _pending_member(ca_id: str, report_id: str) -> str:
    return f"{ca_id}/{report_id}"


class ReportRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def start_audit_report(
        self,
        ca_id: str,
        report_id: str,
        bucket: str,
        key: str,
        response_format: str,
        now: float,
        interval: int,
        audit: Mapping[str, str] | None = None,
    ) -> bool:
        """Record a new report in CREATING unless the CA made one within ``interval`` seconds; the
        ``audit`` entry is appended in the same transaction as the record."""
        gate = keys.audit_report_gate(ca_id)
        # The gate is taken in the same transaction as the record: taken alone first, a failure in
        # between would refuse the next request for the interval with no report made.
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(gate)
                if pipe.exists(gate):
                    return False
                pipe.multi()
                pipe.set(gate, report_id, ex=max(1, interval))
                pipe.hset(
                    keys.audit_report(ca_id, report_id),
                    mapping={
                        "status": "CREATING",
                        "bucket": bucket,
                        "key": key,
                        "format": response_format,
                        "t": now,
                    },
                )
                pipe.zadd(keys.REPORTS_PENDING, {_pending_member(ca_id, report_id): now})
                self._append_audit(pipe, ca_id, audit)
                pipe.execute()
                return True
            except redis.WatchError:  # another request took the gate meanwhile
                return False

    def get_audit_report(self, ca_id: str, report_id: str) -> AuditReportRecord | None:
        """The report's record, or None."""
        status, bucket, key, fmt, t = self.r.hmget(
            keys.audit_report(ca_id, report_id), ["status", "bucket", "key", "format", "t"]
        )
        if status is None:
            return None
        return AuditReportRecord(status.decode(), bucket.decode(), key.decode(), fmt.decode(), float(t))

    def finish_audit_report(self, ca_id: str, report_id: str, status: str) -> bool:
        """CREATING -> ``status`` (SUCCESS or FAILED); False if the report was already finished."""
        key = keys.audit_report(ca_id, report_id)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.hget(key, "status") != b"CREATING":
                    pipe.unwatch()
                    self.r.zrem(keys.REPORTS_PENDING, _pending_member(ca_id, report_id))
                    return False
                pipe.multi()
                pipe.hset(key, "status", status)
                pipe.zrem(keys.REPORTS_PENDING, _pending_member(ca_id, report_id))
                pipe.execute()
                return True
            except redis.WatchError:
                return False

    def stale_audit_reports(self, older_than: float, limit: int = 100) -> list[tuple[str, str, float]]:
        """Reports still being written that were asked for before ``older_than``: (CA id, id, time)."""
        raw = self.r.zrangebyscore(
            keys.REPORTS_PENDING, "-inf", older_than, start=0, num=limit, withscores=True
        )
        out = []
        for member, score in raw:
            ca_id, _, report_id = member.decode().partition("/")
            out.append((ca_id, report_id, float(score)))
        return out

    def issued_certificates(self, ca_id: str, batch: int = 500) -> Iterator[IssuedRecord]:
        """Every ISSUED certificate record of the CA, in no particular order (SCAN: no snapshot, but a
        certificate issued before the walk started is always seen)."""
        pattern = f"{keys.CERT_PREFIX}{ca_id}:*"
        seen: set[bytes] = set()  # SCAN may return a key twice (while Redis resizes its table)
        fresh = (k for k in self.r.scan_iter(match=pattern, count=1000) if not (k in seen or seen.add(k)))
        for chunk in _chunks(fresh, batch):
            pipe = self.r.pipeline(transaction=False)
            for key in chunk:
                pipe.hmget(key, ["s", "c", "d", "t", "rv", "rr"])
            for key, (s, c, d, t, rv, rr) in zip(chunk, pipe.execute(), strict=True):
                if s != b"I" or c is None:
                    continue
                _, serial_hex = split_member(key.decode()[len(keys.CERT_PREFIX) :])
                yield IssuedRecord(
                    serial_hex,
                    c,
                    float(d or t or 0),
                    float(rv) if rv else None,
                    rr.decode() if rr else None,
                )


def _chunks(items: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
