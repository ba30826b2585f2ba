"""Records of certificate authorities: their JSON documents, encrypted keys and the KEK check value."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping

import redis

from pcaq.errors import ConcurrentModification, NotFound
from pcaq.records import keys


class AuthorityRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis
    durable_pipeline: Callable[..., redis.client.Pipeline]  # Store's: confirmed by replicas when required

    # -- the key-encryption key check and CA private keys -----------------------------------------

    def kek_check(self) -> bytes | None:
        """The encrypted check value that tells whether a master key is the right one."""
        return self.r.get(keys.KEK_CHECK)

    def init_kek_check(self, blob: bytes) -> bool:
        """Store the check value unless one exists; True if this call stored it."""
        return bool(self.r.set(keys.KEK_CHECK, blob, nx=True))

    def put_ca_key(self, ca_id: str, blob: bytes) -> None:
        """Store a CA's encrypted private key."""
        self.r.set(keys.ca_private_key(ca_id), blob)

    def get_ca_key(self, ca_id: str) -> bytes | None:
        """A CA's encrypted private key, or None."""
        return self.r.get(keys.ca_private_key(ca_id))

    # -- CA documents -------------------------------------------------------------------------------

    def create_ca(
        self, ca_id: str, doc: dict, account: str, token: str | None, audit: Mapping[str, str] | None = None
    ) -> tuple[str, bool]:
        """Store a new CA document and queue its key generation, honouring the idempotency token.

        Returns ``(ca_id, created)``: with a token seen in the last TTL, the earlier CA's id. ``audit``
        fields are appended to the new CA's audit stream in the same transaction (not on a repeat).
        """
        idem_key = keys.ca_idempotency(account, token) if token else None
        # The token is claimed in the same transaction as the document: claimed alone first, a
        # concurrent or retried request could be answered with the id of a CA not (yet) stored.
        for _ in range(20):
            with self.durable_pipeline() as pipe:
                try:
                    if idem_key:
                        pipe.watch(idem_key)
                        existing = pipe.get(idem_key)
                        if existing:
                            return existing.decode(), False
                    pipe.multi()
                    if idem_key:
                        pipe.set(idem_key, ca_id, ex=self.settings.idempotency_ttl)
                    doc.setdefault("internal", {})["version"] = 1
                    pipe.set(keys.ca(ca_id), json.dumps(doc))
                    pipe.set(keys.ca_gate(ca_id), 1)
                    pipe.zadd(keys.ca_index(account), {ca_id: doc["CreatedAt"]})
                    pipe.zadd(keys.PENDING_CAS, {ca_id: self.clock()})
                    self._append_audit(pipe, ca_id, audit)
                    pipe.execute()
                    return ca_id, True
                except redis.WatchError:
                    continue
        raise ConcurrentModification("Another request with this idempotency token is being handled; retry.")

    def get_ca(self, ca_id: str) -> dict | None:
        """The CA document, or None."""
        raw = self.r.get(keys.ca(ca_id))
        return json.loads(raw) if raw else None

    def update_ca(
        self,
        ca_id: str,
        change: Callable[[dict], dict | None],
        audit: Mapping[str, str] | None = None,
        private_key: bytes | None = None,
    ) -> dict | None:
        """Apply ``change`` to the CA document atomically (it may raise to refuse); return the result.

        ``change`` returning None removes the CA for good instead (as :meth:`remove_ca`). ``audit``
        fields are appended to the CA's audit stream and ``private_key`` (an encrypted blob) is stored
        in the same transaction as the change: both only if the change is made, never without it.
        """
        key = keys.ca(ca_id)
        for _ in range(20):
            with self.durable_pipeline() as pipe:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise NotFound(f"Could not find certificate authority {ca_id}.")
                    old = json.loads(raw)
                    version = old.get("internal", {}).get("version", 0) + 1
                    account = old.get("OwnerAccount", "")
                    new = change(old)
                    pipe.multi()
                    if new is None:
                        self._remove_ca(pipe, ca_id, account)
                    else:
                        new.setdefault("internal", {})["version"] = version
                        pipe.set(key, json.dumps(new))
                        pipe.set(keys.ca_gate(ca_id), version)  # submits checked against the old version fail
                        if private_key is not None:
                            pipe.set(keys.ca_private_key(ca_id), private_key)
                    self._append_audit(pipe, ca_id, audit)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
        raise ConcurrentModification("The certificate authority is being changed by another request; retry.")

    def remove_ca(self, ca_id: str, account: str) -> None:
        """Delete a CA for good: its document, key and index entry (its certificates stay)."""
        pipe = self.durable_pipeline()
        self._remove_ca(pipe, ca_id, account)
        pipe.execute()

    @staticmethod
    def _remove_ca(pipe, ca_id: str, account: str) -> None:
        pipe.delete(keys.ca(ca_id), keys.ca_private_key(ca_id), keys.ca_gate(ca_id))
        pipe.zrem(keys.ca_index(account), ca_id)
        pipe.zrem(keys.PENDING_CAS, ca_id)

    def list_ca_ids(self, account: str, start: int, count: int) -> tuple[list[str], int]:
        """A page of the account's CA ids, oldest first, and how many there are in all."""
        key = keys.ca_index(account)
        ids = [i.decode() for i in self.r.zrange(key, start, start + count - 1)]
        return ids, int(self.r.zcard(key))

    def get_cas(self, ca_ids: Iterable[str]) -> list[dict]:
        """The documents of these CAs (missing ones left out)."""
        ids = list(ca_ids)
        if not ids:
            return []
        return [json.loads(raw) for raw in self.r.mget([keys.ca(i) for i in ids]) if raw]

    def ca_key_generated(self, ca_id: str) -> None:
        """Take a CA off the list of CAs awaiting key generation."""
        self.r.zrem(keys.PENDING_CAS, ca_id)

    def stale_pending_cas(self, older_than: float, now: float | None = None) -> list[str]:
        """CAs whose key generation was queued before ``older_than`` and is not done; re-stamped to ``now``."""
        now = self.clock() if now is None else now
        ids = [
            i.decode() for i in self.r.zrangebyscore(keys.PENDING_CAS, "-inf", older_than, start=0, num=100)
        ]
        if ids:
            self.r.zadd(keys.PENDING_CAS, dict.fromkeys(ids, now), xx=True)
        return ids
