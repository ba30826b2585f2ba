"""Every Redis key name of pcaq. Nothing outside ``shared/records`` builds a key string."""

from __future__ import annotations

import hashlib

PREFIX = "pcaq:"
CERT_PREFIX = f"{PREFIX}cert:"  # + member ("<ca id>:<serial hex>"); the Lua scripts append the member
KEK_CHECK = f"{PREFIX}kek-check"
PENDING_CERTS = f"{PREFIX}pending:certs"  # the outbox: member -> time last enqueued or lease end
PENDING_CAS = f"{PREFIX}pending:cas"  # CA id -> time its key generation was last queued
WORKERS = f"{PREFIX}workers"  # worker name -> last heartbeat
SWEEP_LOCK = f"{PREFIX}sweep-lock"
DRAIN_KICK = f"{PREFIX}drain-kick"  # set (with a short expiry) when a drain task has been asked for


def token_digest(token: str) -> str:
    """The caller's idempotency token as stored: hashed, since it may hold any Latin-1 text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def ca(ca_id: str) -> str:
    """The JSON document of one CA."""
    return f"{PREFIX}ca:{ca_id}"


def ca_gate(ca_id: str) -> str:
    """The version of a CA's document: IssueCertificate's submit checks it in the same step."""
    return f"{PREFIX}ca-gate:{ca_id}"


def ca_index(account: str) -> str:
    """The sorted set of an account's CA ids, by creation time."""
    return f"{PREFIX}cas:{account}"


def ca_private_key(ca_id: str) -> str:
    """A CA's private key, encrypted by the key vault."""
    return f"{PREFIX}cakey:{ca_id}"


def certificate(member: str) -> str:
    """The hash of one certificate request (s status, r request, c DER, e failure, a attempts, o/l lease)."""
    return f"{CERT_PREFIX}{member}"


def ca_idempotency(account: str, token: str) -> str:
    """CreateCertificateAuthority's idempotency key."""
    return f"{PREFIX}idem:ca:{account}:{token_digest(token)}"


def certificate_idempotency(account: str, ca_id: str, token: str) -> str:
    """IssueCertificate's idempotency key (scoped by account, CA and token)."""
    return f"{PREFIX}idem:cert:{account}:{ca_id}:{token_digest(token)}"


def key_generation_lock(ca_id: str) -> str:
    """Held by the one worker generating a CA's key."""
    return f"{PREFIX}keygen-lock:{ca_id}"
