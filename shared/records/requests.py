"""Records of certificate requests: submit, claim, commit and the outbox (invariants 1, 2 and 5).

A claim or a commit can also be *sent* ahead (:meth:`RequestRecords.send_claim_ready`,
:meth:`RequestRecords.send_commit`): Redis runs the script while the caller signs, and the caller reads
the reply when it needs it (:class:`Sent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import redis

from pcaq.records import keys
from pcaq.records.held import HeldConnection
from pcaq.records.replicas import ReplicaWait, WaitingPipeline
from pcaq.records.sent import Done, Sent


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


class Result(NamedTuple):
    """One signing outcome for :meth:`RequestRecords.commit` (a plain ``(member, issued, payload)``
    triple will do where no metrics reason or audit entry is wanted)."""

    member: str
    issued: bool
    payload: bytes  # the certificate (DER) or the failure message
    reason: str = ""  # the failure's reason class, counted by GET /metrics ('' when issued)
    audit: Mapping[str, str] | None = None  # the audit entry's fields, appended only if the result takes
    # For the console's per-CA indexes (shared/records/certificate_index.py), when issued: the lower-cased
    # common names and subject alternative names, and the certificate's Not After (epoch seconds).
    names: tuple[str, ...] = ()
    not_after: float | None = None


class Claimed(list):
    """What a claim leased: ``(member, request)`` pairs, as a list. ``abandoned`` holds the
    ``(member, API request id)`` pairs the same step gave up after their last attempt (FAILED).
    ``helper`` is the token of the helper drain a drain's full claim asked for (the caller sends
    that drain message), or None. ``urgent`` holds the urgent jobs a drain's claim took (encoded, see
    shared/revocation/urgent.py): the caller must serve them."""

    def __init__(
        self,
        leased: list[tuple[str, bytes]],
        abandoned: list[tuple[str, str]],
        helper: str | None = None,
        urgent: list[bytes] | None = None,
    ):
        super().__init__(leased)
        self.abandoned = abandoned
        self.helper = helper
        self.urgent = urgent or []


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

# A running drain claims at least this often (a full batch of the slowest keys signs well within it);
# when its mark lapses, submitters ask for a drain again (a drain that died is replaced this soon).
DRAINING_MS = 2000
# A helper drain asked for but not started within this long (its message is lost, or waits behind a
# busy process) no longer keeps a full claim from asking for another.
HELPER_MS = 10_000


class RequestRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis
    held: HeldConnection  # IssueCertificate's and GetCertificate's one call each go through it
    replica_wait: ReplicaWait | None  # commits are confirmed by replicas when set (records/replicas.py)

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
        result = self.held.script(
            self._submit,
            keys=[
                keys.certificate(member),
                keys.PENDING_CERTS,
                idem_key,
                keys.DRAIN_KICK,
                gate,
                stream,
                keys.DRAINING,
                keys.certificate_index(ca_id, "pending"),
            ],
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
        s, c, e, t = self.held.command(
            "HMGET", keys.certificate(member_of(ca_id, serial_hex)), "s", "c", "e", "t"
        )
        if s is None:
            return None
        return CertificateRecord(_STATUS[s], c, e.decode() if e else None, float(t or 0))

    def claim_ready(self, owner: str, limit: int, helper: str = "") -> Claimed:
        """A drain's claim: lease up to ``limit`` requests that are ready now (oldest first) to
        ``owner``. It keeps the draining mark alive when it leases something; when it is full it may ask
        for a helper drain named ``helper`` (see ``Claimed.helper``; an empty token never asks)."""
        call_keys, args = self._claim_call(owner, self._drain_args(limit, helper))
        return _claimed(self._claim_ready(keys=call_keys, args=args), helper)

    def send_claim_ready(
        self, owner: str, limit: int, helper: str = "", take_urgent: int = 0
    ) -> Sent[Claimed]:
        """:meth:`claim_ready`, sent now, its batch read by ``result()`` (see :class:`Sent`). It also
        takes up to ``take_urgent`` urgent jobs (``Claimed.urgent``), which the caller must serve: a
        caller that does not serve them takes none."""
        call_keys, args = self._claim_call(owner, self._drain_args(limit, helper, take_urgent))
        return Sent(self.r, self._claim_ready, call_keys, args, lambda reply: _claimed(reply, helper))

    def _drain_args(self, limit: int, helper: str, take_urgent: int = 0) -> list:
        return [limit, DRAINING_MS, helper, HELPER_MS, take_urgent]

    def _claim_call(self, owner: str, extra: list) -> tuple[list, list]:
        lease = [owner, f"{self.clock():.3f}", self.settings.lease_seconds, self.settings.max_attempts]
        return (
            [
                keys.PENDING_CERTS,
                keys.CERT_PREFIX,
                keys.CA_PREFIX,
                keys.AUDIT_PREFIX,
                keys.METRICS_OUTCOMES,
                keys.DRAINING,
                keys.DRAIN_HELPER,
                keys.URGENT,
                keys.INDEX_PREFIX,
                keys.SERIES_PREFIX,
                keys.ARCHIVE_QUEUE,
            ],
            [*lease, self.settings.audit_stream_maxlen, *extra],
        )

    def clear_drain_kick(self) -> None:
        """Forget that a drain was asked for or is running, so the next submit asks again (a draining
        worker that found nothing calls this, then looks once more: no request can fall between the two)."""
        self.r.delete(keys.DRAIN_KICK, keys.DRAINING)

    def helper_started(self, helper: str) -> None:
        """A helper drain asked for by a full claim has started: a later full claim may ask again."""
        self._helper_started(keys=[keys.DRAIN_HELPER], args=[helper])

    def ready_count(self) -> int:
        """How many unfinished requests a worker could take now."""
        return int(self.r.zcount(keys.PENDING_CERTS, "-inf", self.clock()))

    def commit(
        self, owner: str, results: list[Result] | list[tuple[str, bool, bytes]], unexpected_errors: int = 0
    ) -> int:
        """Write results (see :class:`Result`) leased to ``owner``, in one atomic step with their audit
        entries and metrics, and count ``unexpected_errors`` (requests left leased for a retry);
        returns how many results took."""
        if not results and not unexpected_errors:
            return 0
        call_keys, args = self._commit_call(owner, results, unexpected_errors)
        if self.replica_wait is None:
            return int(self._commit(keys=call_keys, args=args))
        pipe = WaitingPipeline(self.r, False, self.replica_wait)
        self._commit(keys=call_keys, args=args, client=pipe)
        return int(pipe.execute()[0])

    def send_commit(
        self, owner: str, results: list[Result] | list[tuple[str, bool, bytes]], unexpected_errors: int = 0
    ) -> Sent[int]:
        """:meth:`commit`, sent now, how many results took read by ``result()`` (see :class:`Sent`)."""
        if not results and not unexpected_errors:
            return Done(0)
        call_keys, args = self._commit_call(owner, results, unexpected_errors)
        return Sent(self.r, self._commit, call_keys, args, int, self.replica_wait)

    def _commit_call(
        self, owner: str, results: list[Result] | list[tuple[str, bool, bytes]], unexpected_errors: int
    ) -> tuple[list, list]:
        args: list = [owner, f"{self.clock():.3f}", self.settings.audit_stream_maxlen, unexpected_errors]
        extend = args.extend
        for item in results:
            member, issued, payload, reason, audit, names, not_after = (
                item if len(item) == 7 else Result(*item)
            )
            extend(
                (
                    member,
                    "I" if issued else "F",
                    payload,
                    reason,
                    "" if not_after is None else f"{not_after:.0f}",
                    len(names),
                    2 * len(audit) if audit else 0,
                )
            )
            extend(names)
            if audit:
                for pair in audit.items():
                    extend(pair)
        return (
            [
                keys.PENDING_CERTS,
                keys.CERT_PREFIX,
                keys.AUDIT_PREFIX,
                keys.METRICS_LATENCY,
                keys.METRICS_OUTCOMES,
                keys.INDEX_PREFIX,
                keys.SERIES_PREFIX,
                keys.ARCHIVE_QUEUE,
            ],
            args,
        )

    def release(self, owner: str, claimed_from: float, claimed_to: float) -> int:
        """Hand back the requests leased to ``owner`` by claims made between ``claimed_from`` and
        ``claimed_to`` (this store's clock) that it will not sign, its drain having lost Redis
        part-way: ready at once, their attempt given back. Returns how many it still held."""
        lease = self.settings.lease_seconds
        window = [f"{claimed_from + lease - 1:.3f}", f"{claimed_to + lease + 1:.3f}"]
        return int(
            self._release(
                keys=[keys.PENDING_CERTS, keys.CERT_PREFIX], args=[owner, f"{self.clock():.3f}", *window]
            )
        )

    def stale_ready_count(self, older_than: float) -> int:
        """How many requests have been ready since before ``older_than`` without a worker taking them."""
        return int(self.r.zcount(keys.PENDING_CERTS, "-inf", older_than))

    def pending_count(self) -> int:
        """How many certificate requests are not finished."""
        return int(self.r.zcard(keys.PENDING_CERTS))


def _claimed(reply: list, helper: str = "") -> Claimed:
    leased, abandoned, helper_asked, urgent_jobs = reply
    return Claimed(
        [(leased[i].decode(), leased[i + 1]) for i in range(0, len(leased), 2)],
        [(abandoned[i].decode(), abandoned[i + 1].decode()) for i in range(0, len(abandoned), 2)],
        helper if helper_asked == 1 else None,
        urgent_jobs,
    )
