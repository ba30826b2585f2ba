"""Records of the audit trail: one Redis stream per CA, appended to, trimmed approximately.

Entries about a change are appended by the transaction or script that makes it (certificate requests:
submit, claim, commit in ``shared/records/scripts.py``; CA documents, revocations, permissions,
policies and audit reports: their records), in the same step as the change they record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import redis

from pcaq.records import keys

WORKER = "pcaq-worker"  # who, for what the worker does on its own
CERTIFICATE_ISSUED = "CertificateIssued"  # the event of a certificate committed ISSUED
CERTIFICATE_FAILED = "CertificateRequestFailed"  # the event of a request committed or given up FAILED


class AuditRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def append_audit(self, entries: Iterable[tuple[str, dict[str, str]]]) -> None:
        """Append ``(ca_id, fields)`` entries, all in one round trip (XADD with approximate MAXLEN)."""
        pipe = self.r.pipeline(transaction=False)
        count = 0
        for ca_id, fields in entries:
            pipe.xadd(
                keys.audit_stream(ca_id), fields, maxlen=self.settings.audit_stream_maxlen, approximate=True
            )
            count += 1
        if count:
            pipe.execute()

    def _append_audit(self, pipe, ca_id: str, audit: Mapping[str, str] | None) -> None:
        """Queue the XADD of one entry (if any) on ``pipe``, a transaction that makes the change."""
        if audit:
            stream = keys.audit_stream(ca_id)
            pipe.xadd(stream, dict(audit), maxlen=self.settings.audit_stream_maxlen, approximate=True)

    def unarchived_audit(self, ca_id: str, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` of the CA's audit entries the archive does not hold yet, oldest first."""
        cursor = self.r.hget(keys.AUDIT_ARCHIVED, ca_id)
        start = f"({cursor.decode()}" if cursor else "-"  # exclusive: after the last one archived
        raw = self.r.xrange(keys.audit_stream(ca_id), start, "+", count=max(1, count))
        return [
            (entry_id.decode(), {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()})
            for entry_id, fields in raw
        ]

    def audit_archived(self, ca_id: str, last_id: str) -> None:
        """The archive holds the CA's entries up to ``last_id``."""
        self.r.hset(keys.AUDIT_ARCHIVED, ca_id, last_id)

    def trim_archived_audit(self, ca_id: str, horizon: float) -> int:
        """Drop from Redis the CA's entries both archived and written before ``horizon`` (seconds);
        how many went. Readers find them in the archive (pcaq.ca.audit_trail)."""
        cursor = self.r.hget(keys.AUDIT_ARCHIVED, ca_id)
        if not cursor:
            return 0
        ms, _, seq = cursor.decode().partition("-")
        after_archived = (int(ms), int(seq or 0) + 1)
        threshold = min(after_archived, (int(horizon * 1000), 0))
        stream = keys.audit_stream(ca_id)
        return int(self.r.xtrim(stream, minid=f"{threshold[0]}-{threshold[1]}", approximate=False))

    def read_audit(self, ca_id: str, count: int | None = None) -> list[tuple[str, dict[str, str]]]:
        """The CA's audit entries, oldest first (the last ``count`` ones when given): ``(id, fields)``."""
        key = keys.audit_stream(ca_id)
        if count is None:
            raw = self.r.xrange(key)
        else:
            raw = list(reversed(self.r.xrevrange(key, count=count)))
        return [
            (entry_id.decode(), {k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()})
            for entry_id, fields in raw
        ]
