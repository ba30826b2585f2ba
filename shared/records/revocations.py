"""Records of revocation: revoked certificates, each CA's CRL, cached OCSP answers, worker replies.

A revocation lives on the certificate's own hash (``rv`` revocation time, ``rr`` reason, ``na`` Not
After) and in a per-CA sorted set of revoked serials; both are written by one Lua script, so a
second revocation of the same serial is seen as such however many race. The same script counts the
revocation against the CA's CRL (``want``) so that a CRL build knows whether it covered everything.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from pcaq.records import keys, scripts
from pcaq.records.requests import member_of

# What REVOKE answers (see scripts.REVOKE).
REVOKED, ALREADY_REVOKED, NO_SUCH_CERTIFICATE, NOT_ISSUED, TOO_MANY = 1, 0, -1, -2, -3


@dataclass(frozen=True)
class RevokedEntry:
    """One revoked serial as a CRL lists it."""

    serial_hex: str
    revoked_at: float
    reason: str
    not_after: float


@dataclass(frozen=True)
class CertificateState:
    """What revocation and OCSP need of one certificate record."""

    status: str  # PENDING, ISSUED, FAILED
    certificate_der: bytes | None
    revoked_at: float | None
    reason: str | None


@dataclass(frozen=True)
class StoredCrl:
    """A CA's current CRL and its bookkeeping (``der`` is None before the first build)."""

    der: bytes | None
    number: int
    this_update: float
    next_update: float
    built: int  # revocations covered
    want: int  # revocations made
    config: str  # fingerprint of the CrlConfiguration it was built for


_STATUS = {b"P": "PENDING", b"I": "ISSUED", b"F": "FAILED"}


def _text(value: bytes | None) -> str:
    return value.decode() if value is not None else ""


class RevocationRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis
    durable_script: Callable[..., Any]  # Store's: confirmed by replicas when required

    @functools.cached_property
    def _revoke(self):
        return self.r.register_script(scripts.REVOKE)

    @functools.cached_property
    def _save_crl(self):
        return self.r.register_script(scripts.SAVE_CRL)

    @functools.cached_property
    def _cache_ocsp(self):
        return self.r.register_script(scripts.CACHE_OCSP)

    # -- certificates --------------------------------------------------------------------------------

    def certificate_state(self, ca_id: str, serial_hex: str) -> CertificateState | None:
        """The certificate record with its revocation fields, or None."""
        s, c, rv, rr = self.r.hmget(keys.certificate(member_of(ca_id, serial_hex)), ["s", "c", "rv", "rr"])
        if s is None:
            return None
        return CertificateState(_STATUS[s], c, float(rv) if rv else None, rr.decode() if rr else None)

    def revoke(
        self,
        ca_id: str,
        serial_hex: str,
        now: float,
        reason: str,
        not_after: float,
        limit: int,
        audit: Mapping[str, str] | None = None,
    ) -> tuple[int, str]:
        """Revoke one ISSUED certificate atomically; ``(code, record status letter)`` (codes above).
        ``audit`` fields are appended to the CA's audit stream in the same step, if it revokes."""
        cache = [keys.ocsp_response(ca_id, h, serial_hex) for h in keys.OCSP_HASHES]
        code, state = self.durable_script(
            self._revoke,
            keys=[
                keys.certificate(member_of(ca_id, serial_hex)),
                keys.revoked(ca_id),
                keys.crl(ca_id),
                keys.CRL_DIRTY,
                keys.audit_stream(ca_id) if audit else "",
                keys.ARCHIVE_QUEUE,
                keys.RETENTION,
                *cache,
            ],
            args=[
                serial_hex,
                f"{now:.3f}",
                reason,
                f"{not_after:.0f}",
                ca_id,
                limit,
                self.settings.audit_stream_maxlen,
                *(item for pair in (audit or {}).items() for item in pair),
            ],
        )
        return int(code), _text(state) if isinstance(state, bytes) else str(state)

    def revoked_entries(self, ca_id: str) -> list[RevokedEntry]:
        """Every serial in the CA's revoked set with its time, reason and Not After."""
        serials = [s.decode() for s in self.r.zrange(keys.revoked(ca_id), 0, -1)]
        pipe = self.r.pipeline(transaction=False)
        for serial in serials:
            pipe.hmget(keys.certificate(member_of(ca_id, serial)), ["rv", "rr", "na"])
        out = []
        for serial, (rv, rr, na) in zip(serials, pipe.execute() if serials else [], strict=True):
            if rv is None:
                continue  # a record removed by hand: nothing to list
            out.append(RevokedEntry(serial, float(rv), _text(rr) or "UNSPECIFIED", float(na or 0)))
        return out

    def forget_revoked(self, ca_id: str, serials: Iterable[str]) -> None:
        """Take serials off the CA's revoked set (expired ones, once a CRL issued after expiry listed
        them); their records keep the revocation."""
        serials = list(serials)
        if serials:
            self.r.zrem(keys.revoked(ca_id), *serials)

    # -- CRLs ----------------------------------------------------------------------------------------

    def stored_crl(self, ca_id: str) -> StoredCrl:
        """The CA's CRL bookkeeping (``der`` None when none was built yet)."""
        der, number, this, nxt, built, want, cfg = self.r.hmget(
            keys.crl(ca_id), ["der", "number", "this", "next", "built", "want", "cfg"]
        )
        return StoredCrl(
            der,
            int(number or 0),
            float(this or 0),
            float(nxt or 0),
            int(built or 0),
            int(want or 0),
            _text(cfg),
        )

    def revocations_counted(self, ca_id: str) -> int:
        """How many revocations the CA has had (read before its revoked set when building a CRL)."""
        return int(self.r.hget(keys.crl(ca_id), "want") or 0)

    def next_crl_number(self, ca_id: str) -> int:
        """A fresh CRL number for the CA (monotonic; a build that loses a race wastes its number)."""
        return int(self.r.hincrby(keys.crl(ca_id), "seq", 1))

    def save_crl(
        self,
        ca_id: str,
        der: bytes,
        number: int,
        this_update: float,
        next_update: float,
        covered: int,
        config: str,
        refresh_at: float,
    ) -> int:
        """Store a CRL unless a newer one is stored: 0 not stored, 1 stored, 2 stored and complete."""
        return int(
            self._save_crl(
                keys=[keys.crl(ca_id), keys.CRL_DIRTY, keys.CRL_REFRESH, keys.crl_kick(ca_id)],
                args=[
                    der,
                    number,
                    f"{this_update:.0f}",
                    f"{next_update:.0f}",
                    covered,
                    config,
                    refresh_at,
                    ca_id,
                ],
            )
        )

    def crl_not_wanted(self, ca_id: str) -> None:
        """The CA needs no CRL (disabled, gone, no certificate): stop asking for rebuilds."""
        pipe = self.r.pipeline()
        pipe.zrem(keys.CRL_DIRTY, ca_id)
        pipe.zrem(keys.CRL_REFRESH, ca_id)
        pipe.delete(keys.crl_kick(ca_id))
        pipe.execute()

    def request_crl_rebuild(self, ca_id: str, window_ms: int) -> bool:
        """True if no rebuild of this CA's CRL was asked for within the window (the caller asks now)."""
        return bool(self.r.set(keys.crl_kick(ca_id), "1", nx=True, px=max(1, window_ms)))

    def dirty_crls(self, older_than: float, limit: int = 100) -> list[str]:
        """CAs with revocations not in their CRL since before ``older_than``."""
        raw = self.r.zrangebyscore(keys.CRL_DIRTY, "-inf", older_than, start=0, num=limit)
        return [i.decode() for i in raw]

    def crls_due(self, now: float, limit: int = 100) -> list[str]:
        """CAs whose CRL has lived half its validity by ``now``."""
        return [i.decode() for i in self.r.zrangebyscore(keys.CRL_REFRESH, "-inf", now, start=0, num=limit)]

    # -- OCSP ----------------------------------------------------------------------------------------

    def cached_ocsp(self, ca_id: str, hash_name: str, serial_hex: str) -> tuple[bytes | None, int | None]:
        """A cached signed OCSP answer and the seconds it stays cached, or ``(None, None)``."""
        pipe = self.r.pipeline(transaction=False)
        key = keys.ocsp_response(ca_id, hash_name, serial_hex)
        pipe.get(key)
        pipe.ttl(key)
        der, ttl = pipe.execute()
        return (der, max(0, int(ttl))) if der is not None else (None, None)

    def cache_ocsp(
        self, ca_id: str, hash_name: str, serial_hex: str, der: bytes, seconds: int, claimed: str
    ) -> bool:
        """Cache an answer for ``seconds`` if the record still has the status it claims."""
        return bool(
            self._cache_ocsp(
                keys=[
                    keys.certificate(member_of(ca_id, serial_hex)),
                    keys.ocsp_response(ca_id, hash_name, serial_hex),
                ],
                args=[der, max(1, int(seconds)), claimed],
            )
        )

    def ocsp_issuer(self, hash_name: str, key_hash: bytes) -> str | None:
        """The CA whose key has this hash (as an OCSP CertID gives it), if indexed."""
        found = self.r.hget(keys.OCSP_ISSUERS, f"{hash_name}:{key_hash.hex()}")
        return found.decode() if found else None

    def ocsp_indexed(self) -> set[str]:
        """Ids of the CAs already in the issuer index."""
        return {i.decode() for i in self.r.smembers(keys.OCSP_INDEXED)}

    def index_ocsp_issuers(self, entries: dict[str, str], ca_ids: Iterable[str]) -> None:
        """Add ``"<hash>:<key hash hex>" -> CA id`` entries to the issuer index, and note the CAs done."""
        ca_ids = list(ca_ids)
        pipe = self.r.pipeline()
        if entries:
            pipe.hset(keys.OCSP_ISSUERS, mapping=entries)
        if ca_ids:
            pipe.sadd(keys.OCSP_INDEXED, *ca_ids)
        pipe.execute()

    # -- urgent work and replies from workers -------------------------------------------------------

    @functools.cached_property
    def _ask_urgent(self):
        return self.r.register_script(scripts.ASK_URGENT)

    def ask_urgent(self, job: bytes, max_waiting: int, ttl_seconds: int) -> int:
        """Append an urgent job (shared/revocation/urgent.py): 1 if a worker must be woken for it, 0 if a running
        drain will take it (it is told on the signal channel), -1 if ``max_waiting`` jobs wait already
        (it was not added)."""
        return int(
            self._ask_urgent(
                keys=[keys.URGENT, keys.DRAINING, keys.URGENT_SIGNAL], args=[job, max_waiting, ttl_seconds]
            )
        )

    def take_urgent(self, limit: int) -> list[bytes]:
        """Take up to ``limit`` urgent jobs, oldest first (each is taken by one caller only)."""
        return self.r.lpop(keys.URGENT, limit) or []

    def urgent_signals(self) -> redis.client.PubSub:
        """This process's subscription to the channel on which asks for urgent work are announced to
        running drains (``get_message(timeout=0)`` checks it without a round trip). It is made once per
        process (a forked child makes its own) and kept from drain to drain, on a pool of its own: the
        pool the other calls share holds nothing between calls."""
        subscriptions = self.__dict__.setdefault("_urgent_signals", {})
        signals = subscriptions.get(os.getpid())
        if signals is None:
            pool = self.r.connection_pool
            own = redis.ConnectionPool(connection_class=pool.connection_class, **pool.connection_kwargs)
            signals = redis.Redis(connection_pool=own).pubsub(ignore_subscribe_messages=True)
            signals.subscribe(keys.URGENT_SIGNAL)
            subscriptions[os.getpid()] = signals
        return signals

    def drop_urgent_signals(self, signals: redis.client.PubSub) -> None:
        """Close a subscription that failed; the next :meth:`urgent_signals` makes a new one."""
        subscriptions = self.__dict__.get("_urgent_signals", {})
        if subscriptions.get(os.getpid()) is signals:
            del subscriptions[os.getpid()]
        try:
            signals.close()
        except Exception:  # noqa: BLE001 - a connection already gone
            pass

    def push_reply(self, token: str, payload: bytes, seconds: int = 30) -> None:
        """Hand an answer to the API process waiting on ``token`` (kept briefly if nobody waits)."""
        pipe = self.r.pipeline()
        pipe.lpush(keys.reply(token), payload)
        pipe.expire(keys.reply(token), seconds)
        pipe.execute()

    def wait_reply(self, token: str, timeout: float) -> bytes | None:
        """Wait up to ``timeout`` seconds for the answer pushed to ``token``."""
        got = self.r.blpop([keys.reply(token)], timeout=max(0.01, timeout))
        return got[1] if got else None
