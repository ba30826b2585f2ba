"""Records of certificate requests: submit, claim, commit and the outbox (invariants 1, 2 and 5)."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from shared.records import keys


@dataclass(frozen=True)
class CertificateRecord:
    """What GetCertificate needs of one certificate request."""

    status: str  # PENDING, ISSUED or FAILED
    certificate_der: bytes | None
    failure: str | None
    created_at: float


@dataclass(frozen=True)
class Submission:
    """The answer to a submit: the serial that holds the request, and whether it is new."""

    serial_hex: str
    created: bool


def member_of(ca_id: str, serial_hex: str) -> str:
    """The id of one certificate request inside the store (also what Celery messages carry)."""
    return f"{ca_id}:{serial_hex}"


def split_member(member: str) -> tuple[str, str]:
    """Inverse of :func:`member_of`."""
    ca_id, _, serial_hex = member.rpartition(":")
    return ca_id, serial_hex


_STATUS = {b"P": "PENDING", b"I": "ISSUED", b"F": "FAILED"}


class RequestRecords:
    """Mixin of :class:`shared.records.Store`."""

    r: redis.Redis

    def submit_certificate(
        self, ca_id: str, account: str, serial_hex: str, request: bytes, token: str | None
    ) -> Submission | None:
        """Record a PENDING certificate request and put it in the outbox, in one atomic step.

        Returns None when the serial is taken (draw another), else the serial that holds the request:
        the new one, or with a token seen within the TTL, the one of the earlier request.
        """
        idem_key = keys.certificate_idempotency(account, ca_id, token) if token else ""
        member = member_of(ca_id, serial_hex)
        code, serial = self._submit(
            keys=[keys.certificate(member), keys.PENDING_CERTS, idem_key],
            args=[serial_hex, request, f"{self.clock():.3f}", self.settings.idempotency_ttl, member],
        )
        if code == -1:
            return None
        return Submission(serial.decode() if isinstance(serial, bytes) else serial, created=code == 1)

    def get_certificate(self, ca_id: str, serial_hex: str) -> CertificateRecord | None:
        """The state of one certificate request, or None if there is none."""
        s, c, e, t = self.r.hmget(keys.certificate(member_of(ca_id, serial_hex)), ["s", "c", "e", "t"])
        if s is None:
            return None
        return CertificateRecord(_STATUS[s], c, e.decode() if e else None, float(t or 0))

    def claim(self, members: list[str], owner: str) -> list[tuple[str, bytes]]:
        """Lease the given requests to ``owner``; returns ``(member, request)`` for each one leased."""
        if not members:
            return []
        out = self._claim(
            keys=[keys.PENDING_CERTS, keys.CERT_PREFIX],
            args=[
                owner,
                f"{self.clock():.3f}",
                self.settings.lease_seconds,
                self.settings.max_attempts,
                *members,
            ],
        )
        return [(out[i].decode(), out[i + 1]) for i in range(0, len(out), 2)]

    def commit(self, owner: str, results: list[tuple[str, bool, bytes]]) -> int:
        """Write results ``(member, issued, certificate DER or failure reason)``; returns how many took."""
        if not results:
            return 0
        args: list = [owner]
        for member, ok, payload in results:
            args += [member, "I" if ok else "F", payload]
        args.append(f"{self.clock():.3f}")
        return int(self._commit(keys=[keys.PENDING_CERTS, keys.CERT_PREFIX], args=args))

    def stale_pending_certificates(
        self, older_than: float, now: float | None = None, limit: int = 10_000
    ) -> list[str]:
        """Requests in the outbox not enqueued or leased since ``older_than``; re-stamped to ``now``."""
        now = self.clock() if now is None else now
        members = [
            m.decode()
            for m in self.r.zrangebyscore(keys.PENDING_CERTS, "-inf", older_than, start=0, num=limit)
        ]
        if members:
            self.r.zadd(keys.PENDING_CERTS, dict.fromkeys(members, now), xx=True)
        return members

    def pending_count(self) -> int:
        """How many certificate requests are not finished."""
        return int(self.r.zcard(keys.PENDING_CERTS))
