"""The record store: every Redis key name and every multi-key transaction of pcaq lives here.

Nothing else in the code base builds a key string. CAs are JSON documents changed with optimistic
transactions (WATCH/MULTI); certificate requests are hashes whose life (submit, claim, commit) runs
in Lua scripts so that each step is atomic (design.md, invariants 1, 2 and 5).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis

from shared.errors import ConcurrentModification, NotFound
from shared.settings import Settings

_P = "pcaq:"
PENDING = "P"
ISSUED = "I"
FAILED = "F"


def _ca_key(ca_id: str) -> str:
    return f"{_P}ca:{ca_id}"


def _ca_index_key(account: str) -> str:
    return f"{_P}cas:{account}"


def _ca_private_key_key(ca_id: str) -> str:
    return f"{_P}cakey:{ca_id}"


def _cert_key(member: str) -> str:
    return f"{_P}cert:{member}"


def _token_digest(token: str) -> str:
    # Hash the caller's token: it may hold any Latin-1 text, and it should not sit in Redis verbatim.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_KEK_CHECK = f"{_P}kek-check"
_PENDING_CERTS = f"{_P}pending:certs"
_PENDING_CAS = f"{_P}pending:cas"
_WORKERS = f"{_P}workers"
_SWEEP_LOCK = f"{_P}sweep-lock"

# Submit: idempotency claim, PENDING record and outbox entry in one step.
_SUBMIT = """
if KEYS[3] ~= '' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, ''} end
redis.call('HSET', KEYS[1], 's', 'P', 'r', ARGV[2], 't', ARGV[3], 'a', '0')
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[4]) end
return {1, ARGV[1]}
"""

# Claim: lease each still-PENDING, unleased request to one owner; fail those past their attempts.
_CLAIM = """
local now = tonumber(ARGV[2])
local lease_until = now + tonumber(ARGV[3])
local max_attempts = tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV do
  local member = ARGV[i]
  local key = KEYS[2] .. member
  local st = redis.call('HGET', key, 's')
  if st == 'P' then
    local lease = tonumber(redis.call('HGET', key, 'l') or '0')
    if lease < now then
      local attempts = redis.call('HINCRBY', key, 'a', 1)
      if attempts > max_attempts then
        redis.call('HSET', key, 's', 'F', 'e', 'Issuance was abandoned after ' .. max_attempts .. ' attempts.')
        redis.call('HDEL', key, 'r', 'o', 'l')
        redis.call('ZREM', KEYS[1], member)
      else
        redis.call('HSET', key, 'o', ARGV[1], 'l', lease_until)
        redis.call('ZADD', KEYS[1], lease_until, member)
        table.insert(out, member)
        table.insert(out, redis.call('HGET', key, 'r'))
      end
    end
  elseif st then
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
"""

# Commit: write a result only on the PENDING -> ISSUED/FAILED transition, and only for the lease owner.
_COMMIT = """
local done = 0
for i = 2, #ARGV, 3 do
  local member = ARGV[i]
  local key = KEYS[2] .. member
  if redis.call('HGET', key, 's') == 'P' and redis.call('HGET', key, 'o') == ARGV[1] then
    if ARGV[i + 1] == 'I' then
      redis.call('HSET', key, 's', 'I', 'c', ARGV[i + 2], 'd', ARGV[#ARGV])
    else
      redis.call('HSET', key, 's', 'F', 'e', ARGV[i + 2], 'd', ARGV[#ARGV])
    end
    redis.call('HDEL', key, 'r', 'o', 'l')
    redis.call('ZREM', KEYS[1], member)
    done = done + 1
  end
end
return done
"""


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


class Store:
    """All of pcaq's state in Redis. Raises :class:`Unavailable` when Redis cannot be reached."""

    def __init__(self, client: redis.Redis, settings: Settings):
        self.r = client
        self.settings = settings
        self._submit = client.register_script(_SUBMIT)
        self._claim = client.register_script(_CLAIM)
        self._commit = client.register_script(_COMMIT)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """A store on the Redis named by the settings."""
        client = redis.Redis.from_url(
            settings.effective_redis_url,
            socket_connect_timeout=2,
            socket_timeout=10,
            health_check_interval=30,
        )
        return cls(client, settings)

    # -- health -------------------------------------------------------------------------------------

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def heartbeat(self, worker: str) -> None:
        """Record that a worker is alive now."""
        self.r.zadd(_WORKERS, {worker: time.time()})

    def alive_workers(self, within: float = 30.0) -> list[str]:
        """Workers that sent a heartbeat in the last ``within`` seconds."""
        now = time.time()
        self.r.zremrangebyscore(_WORKERS, "-inf", now - 3600)
        return [w.decode() for w in self.r.zrangebyscore(_WORKERS, now - within, "+inf")]

    def try_sweep_lock(self, owner: str, seconds: int) -> bool:
        """Let one process in the fleet sweep per interval."""
        return bool(self.r.set(_SWEEP_LOCK, owner, nx=True, ex=max(1, seconds)))

    def try_key_generation_lock(self, ca_id: str, owner: str, seconds: int = 600) -> bool:
        """Let one worker at a time generate a CA's key (a redelivered job must not race the first)."""
        return bool(self.r.set(f"{_P}keygen-lock:{ca_id}", owner, nx=True, ex=seconds))

    # -- the key-encryption key check and CA private keys -----------------------------------------

    def kek_check(self) -> bytes | None:
        """The encrypted check value that tells whether a master key is the right one."""
        return self.r.get(_KEK_CHECK)

    def init_kek_check(self, blob: bytes) -> bool:
        """Store the check value unless one exists; True if this call stored it."""
        return bool(self.r.set(_KEK_CHECK, blob, nx=True))

    def put_ca_key(self, ca_id: str, blob: bytes) -> None:
        """Store a CA's encrypted private key."""
        self.r.set(_ca_private_key_key(ca_id), blob)

    def get_ca_key(self, ca_id: str) -> bytes | None:
        """A CA's encrypted private key, or None."""
        return self.r.get(_ca_private_key_key(ca_id))

    # -- certificate authorities ------------------------------------------------------------------

    def create_ca(self, ca_id: str, doc: dict, account: str, token: str | None) -> tuple[str, bool]:
        """Store a new CA document and queue its key generation, honouring the idempotency token.

        Returns ``(ca_id, created)``: with a token seen in the last TTL, the earlier CA's id.
        """
        idem_key = f"{_P}idem:ca:{account}:{_token_digest(token)}" if token else None
        # The token is claimed in the same transaction as the document: claimed alone first, a
        # concurrent or retried request could be answered with the id of a CA not (yet) stored.
        for _ in range(20):
            with self.r.pipeline() as pipe:
                try:
                    if idem_key:
                        pipe.watch(idem_key)
                        existing = pipe.get(idem_key)
                        if existing:
                            return existing.decode(), False
                    pipe.multi()
                    if idem_key:
                        pipe.set(idem_key, ca_id, ex=self.settings.idempotency_ttl)
                    pipe.set(_ca_key(ca_id), json.dumps(doc))
                    pipe.zadd(_ca_index_key(account), {ca_id: doc["CreatedAt"]})
                    pipe.zadd(_PENDING_CAS, {ca_id: time.time()})
                    pipe.execute()
                    return ca_id, True
                except redis.WatchError:
                    continue
        raise ConcurrentModification("Another request with this idempotency token is being handled; retry.")

    def get_ca(self, ca_id: str) -> dict | None:
        """The CA document, or None."""
        raw = self.r.get(_ca_key(ca_id))
        return json.loads(raw) if raw else None

    def update_ca(self, ca_id: str, change: Callable[[dict], dict]) -> dict:
        """Apply ``change`` to the CA document atomically (it may raise to refuse); return the result."""
        key = _ca_key(ca_id)
        for _ in range(20):
            with self.r.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise NotFound(f"Could not find certificate authority {ca_id}.")
                    new = change(json.loads(raw))
                    pipe.multi()
                    pipe.set(key, json.dumps(new))
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
        raise ConcurrentModification("The certificate authority is being changed by another request; retry.")

    def remove_ca(self, ca_id: str, account: str) -> None:
        """Delete a CA for good: its document, key and index entry (its certificates stay)."""
        pipe = self.r.pipeline()
        pipe.delete(_ca_key(ca_id), _ca_private_key_key(ca_id))
        pipe.zrem(_ca_index_key(account), ca_id)
        pipe.zrem(_PENDING_CAS, ca_id)
        pipe.execute()

    def list_ca_ids(self, account: str, start: int, count: int) -> tuple[list[str], int]:
        """A page of the account's CA ids, oldest first, and how many there are in all."""
        key = _ca_index_key(account)
        ids = [i.decode() for i in self.r.zrange(key, start, start + count - 1)]
        return ids, int(self.r.zcard(key))

    def get_cas(self, ca_ids: Iterable[str]) -> list[dict]:
        """The documents of these CAs (missing ones left out)."""
        ids = list(ca_ids)
        if not ids:
            return []
        return [json.loads(raw) for raw in self.r.mget([_ca_key(i) for i in ids]) if raw]

    def ca_key_generated(self, ca_id: str) -> None:
        """Take a CA off the list of CAs awaiting key generation."""
        self.r.zrem(_PENDING_CAS, ca_id)

    def stale_pending_cas(self, older_than: float, now: float | None = None) -> list[str]:
        """CAs whose key generation was queued before ``older_than`` and is not done; re-stamped to ``now``."""
        now = time.time() if now is None else now
        ids = [i.decode() for i in self.r.zrangebyscore(_PENDING_CAS, "-inf", older_than, start=0, num=100)]
        if ids:
            self.r.zadd(_PENDING_CAS, dict.fromkeys(ids, now), xx=True)
        return ids

    # -- certificate requests -----------------------------------------------------------------------

    def submit_certificate(
        self, ca_id: str, account: str, serial_hex: str, request: bytes, token: str | None
    ) -> Submission | None:
        """Record a PENDING certificate request and put it in the outbox, in one atomic step.

        Returns None when the serial is taken (draw another), else the serial that holds the request:
        the new one, or with a token seen within the TTL, the one of the earlier request.
        """
        idem_key = f"{_P}idem:cert:{account}:{ca_id}:{_token_digest(token)}" if token else ""
        member = member_of(ca_id, serial_hex)
        code, serial = self._submit(
            keys=[_cert_key(member), _PENDING_CERTS, idem_key],
            args=[serial_hex, request, f"{time.time():.3f}", self.settings.idempotency_ttl, member],
        )
        if code == -1:
            return None
        return Submission(serial.decode() if isinstance(serial, bytes) else serial, created=code == 1)

    def get_certificate(self, ca_id: str, serial_hex: str) -> CertificateRecord | None:
        """The state of one certificate request, or None if there is none."""
        s, c, e, t = self.r.hmget(_cert_key(member_of(ca_id, serial_hex)), ["s", "c", "e", "t"])
        if s is None:
            return None
        status = {b"P": "PENDING", b"I": "ISSUED", b"F": "FAILED"}[s]
        return CertificateRecord(status, c, e.decode() if e else None, float(t or 0))

    def claim(self, members: list[str], owner: str) -> list[tuple[str, bytes]]:
        """Lease the given requests to ``owner``; returns ``(member, request)`` for each one leased."""
        if not members:
            return []
        out = self._claim(
            keys=[_PENDING_CERTS, f"{_P}cert:"],
            args=[
                owner,
                f"{time.time():.3f}",
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
        args.append(f"{time.time():.3f}")
        return int(self._commit(keys=[_PENDING_CERTS, f"{_P}cert:"], args=args))

    def stale_pending_certificates(
        self, older_than: float, now: float | None = None, limit: int = 10_000
    ) -> list[str]:
        """Requests in the outbox not enqueued or leased since ``older_than``; re-stamped to ``now``."""
        now = time.time() if now is None else now
        members = [
            m.decode() for m in self.r.zrangebyscore(_PENDING_CERTS, "-inf", older_than, start=0, num=limit)
        ]
        if members:
            self.r.zadd(_PENDING_CERTS, dict.fromkeys(members, now), xx=True)
        return members

    def pending_count(self) -> int:
        """How many certificate requests are not finished."""
        return int(self.r.zcard(_PENDING_CERTS))


# Exceptions that mean "Redis is not reachable right now" (a retryable 503, never a 500).
STORE_DOWN: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
