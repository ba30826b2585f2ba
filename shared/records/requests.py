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
    """The answer to a submit: the serial that holds the request, whether it is new, and whether this
    submit should ask for a drain task (no drain was asked for in the last few milliseconds)."""

    serial_hex: str
    created: bool
    kicked: bool = False


class CaChanged(Exception):
    """The CA document changed after the caller read it; re-read it and submit again."""


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
        self,
        ca_id: str,
        account: str,
        serial_hex: str,
        request: bytes,
        token: str | None,
        ca_version: str | None = None,
        audit: dict[str, str] | None = None,
    ) -> Submission | None:
        """Record a PENDING certificate request and put it in the outbox, in one atomic step.

        With ``ca_version``, the submit happens only if the CA document still has that version
        (else :class:`CaChanged`), so checks made on a cached document stay exact. ``audit`` fields are
        appended to the CA's audit stream in the same step when the request is new. Returns None when
        the serial is taken (draw another), else the serial that holds the request: the new one, or
        with a token seen within the TTL, the one of the earlier request.
        """
        idem_key = keys.certificate_idempotency(account, ca_id, token) if token else ""
        member = member_of(ca_id, serial_hex)
        gate = keys.ca_gate(ca_id) if ca_version is not None else ""
        stream = keys.audit_stream(ca_id) if audit else ""
        result = self._submit(
            keys=[keys.certificate(member), keys.PENDING_CERTS, idem_key, keys.DRAIN_KICK, gate, stream],
            args=[
                serial_hex,
                request,
                f"{self.clock():.3f}",
                self.settings.idempotency_ttl,
                member,
                self.settings.drain_kick_ms,
                ca_version or "",
                self.settings.audit_stream_maxlen,
                *(item for pair in (audit or {}).items() for item in pair),
            ],
        )
        code, serial = result[0], result[1]
        if code == -1:
            return None
        if code == -2:
            raise CaChanged(ca_id)
        serial = serial.decode() if isinstance(serial, bytes) else serial
        return Submission(serial, created=code == 1, kicked=code == 1 and result[2] == 1)

    def get_certificate(self, ca_id: str, serial_hex: str) -> CertificateRecord | None:
        """The state of one certificate request, or None if there is none."""
        s, c, e, t = self.r.hmget(keys.certificate(member_of(ca_id, serial_hex)), ["s", "c", "e", "t"])
        if s is None:
            return None
        return CertificateRecord(_STATUS[s], c, e.decode() if e else None, float(t or 0))

    def claim(self, members: list[str], owner: str) -> list[tuple[str, bytes]]:
        """Lease the given requests to ``owner``; returns ``(member, request)`` for each one leased."""
        return self._run_claim(self._claim, owner, members) if members else []

    def claim_ready(self, owner: str, limit: int) -> list[tuple[str, bytes]]:
        """Lease up to ``limit`` requests that are ready now (oldest first) to ``owner``."""
        return self._run_claim(self._claim_ready, owner, [limit])

    def _run_claim(self, script, owner: str, extra: list) -> list[tuple[str, bytes]]:
        lease = [owner, f"{self.clock():.3f}", self.settings.lease_seconds, self.settings.max_attempts]
        out = script(keys=[keys.PENDING_CERTS, keys.CERT_PREFIX], args=[*lease, *extra])
        return [(out[i].decode(), out[i + 1]) for i in range(0, len(out), 2)]

    def clear_drain_kick(self) -> None:
        """Forget that a drain was asked for, so the next submit asks again (a draining worker that
        found nothing calls this, then looks once more: no request can fall between the two)."""
        self.r.delete(keys.DRAIN_KICK)

    def request_drain(self) -> bool:
        """Ask for a drain unless one was asked for within the kick window; True if this call asked."""
        return bool(self.r.set(keys.DRAIN_KICK, "1", nx=True, px=self.settings.drain_kick_ms))

    def ready_count(self) -> int:
        """How many unfinished requests a worker could take now."""
        return int(self.r.zcount(keys.PENDING_CERTS, "-inf", self.clock()))

    def commit(self, owner: str, results: list[tuple[str, bool, bytes]]) -> int:
        """Write results ``(member, issued, certificate DER or failure reason)``; returns how many took."""
        if not results:
            return 0
        args: list = [owner]
        for member, ok, payload in results:
            args += [member, "I" if ok else "F", payload]
        args.append(f"{self.clock():.3f}")
        return int(self._commit(keys=[keys.PENDING_CERTS, keys.CERT_PREFIX], args=args))

    def stale_ready_count(self, older_than: float) -> int:
        """How many requests have been ready since before ``older_than`` without a worker taking them."""
        return int(self.r.zcount(keys.PENDING_CERTS, "-inf", older_than))

    def pending_count(self) -> int:
        """How many certificate requests are not finished."""
        return int(self.r.zcard(keys.PENDING_CERTS))
