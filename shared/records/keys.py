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
DRAINING = f"{PREFIX}draining"  # kept alive by the claims of a drain that is taking work
DRAIN_HELPER = f"{PREFIX}drain-helper"  # the token of a helper drain asked for and not yet started
URGENT = f"{PREFIX}urgent"  # urgent jobs an API process waits on (shared/revocation/urgent.py), oldest first
URGENT_SIGNAL = f"{PREFIX}urgent-signal"  # pub/sub channel: an urgent job came while a drain runs
CA_PREFIX = f"{PREFIX}ca:"  # + CA id; the claim script appends the id (audit of abandoned requests)
AUDIT_PREFIX = f"{PREFIX}audit:"  # + CA id; the claim and commit scripts append the id
# Counted up right before a WAIT, so the WAIT covers what the answer read (records/replicas.py).
REPLICATION_MARK = f"{PREFIX}replication-mark"


def token_digest(token: str) -> str:
    """The caller's idempotency token as stored: hashed, since it may hold any Latin-1 text."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def ca(ca_id: str) -> str:
    """The JSON document of one CA."""
    return f"{CA_PREFIX}{ca_id}"


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


# -- security (throttling, audit trail, key blocklist) ---------------------------------------------

KEY_BLOCKLIST = f"{PREFIX}key-blocklist"  # SPKI SHA-256 fingerprints the worker refuses to certify
KEY_BLOCKLIST_VERSION = f"{PREFIX}key-blocklist:version"  # moves with every change of that set


def throttle_bucket(access_key: str, operation: str) -> str:
    """The token bucket of one access key for one operation."""
    return f"{PREFIX}throttle:{access_key}:{operation}"


def audit_stream(ca_id: str) -> str:
    """The stream of a CA's audit trail."""
    return f"{AUDIT_PREFIX}{ca_id}"


# -- revocation, CRLs, OCSP, audit reports, permissions and policies --------------------------------

CRL_DIRTY = f"{PREFIX}crl-dirty"  # CA id -> time of the first revocation not yet in its CRL
CRL_REFRESH = f"{PREFIX}crl-refresh"  # CA id -> time its CRL is due for a rebuild (half its validity)
OCSP_ISSUERS = f"{PREFIX}ocsp-issuers"  # "<hash>:<issuer key hash hex>" -> CA id
OCSP_INDEXED = f"{PREFIX}ocsp-indexed"  # ids of the CAs whose key hashes are in that index
REPORTS_PENDING = f"{PREFIX}reports-pending"  # "<ca id>/<report id>" -> time the report was asked for
OCSP_HASHES = ("sha1", "sha224", "sha256", "sha384", "sha512")  # CertID hashes a cached answer may use


REVOKED_PREFIX = f"{PREFIX}revoked:"  # + CA id; the removal script appends the id
OCSP_PREFIX = f"{PREFIX}ocsp:"  # + "<CA id>:<hash>:<serial hex>"; the removal script appends them


def revoked(ca_id: str) -> str:
    """The sorted set of a CA's revoked serials (hex), scored by revocation time."""
    return f"{REVOKED_PREFIX}{ca_id}"


def crl(ca_id: str) -> str:
    """The hash of a CA's CRL: der, number, this, next, built, cfg; want (revocations seen), seq."""
    return f"{PREFIX}crl:{ca_id}"


def crl_kick(ca_id: str) -> str:
    """Set (with a short expiry) while a CRL rebuild of the CA has been asked for."""
    return f"{PREFIX}crl-kick:{ca_id}"


def ocsp_response(ca_id: str, hash_name: str, serial_hex: str) -> str:
    """A signed OCSP answer about one serial, for CertIDs made with one hash."""
    return f"{OCSP_PREFIX}{ca_id}:{hash_name}:{serial_hex}"


def reply(token: str) -> str:
    """The list a worker pushes its answer to when the API waits for it (BLPOP)."""
    return f"{PREFIX}reply:{token}"


def audit_report(ca_id: str, report_id: str) -> str:
    """The hash of one audit report: status, bucket, key, format, created."""
    return f"{PREFIX}report:{ca_id}:{report_id}"


def audit_report_gate(ca_id: str) -> str:
    """Exists while the CA may not make another audit report."""
    return f"{PREFIX}report-gate:{ca_id}"


def permissions(ca_id: str) -> str:
    """The hash of a CA's permissions: "<principal> <source account>" -> JSON."""
    return f"{PREFIX}permissions:{ca_id}"


def policy(ca_id: str) -> str:
    """A CA's resource policy (JSON text)."""
    return f"{PREFIX}policy:{ca_id}"


# -- metrics (shared/records/metrics.py; served by GET /metrics) -----------------------------------

METRICS_LATENCY = f"{PREFIX}metrics:latency"  # ARN -> ISSUED seconds: bucket number -> count; count, sum
METRICS_OUTCOMES = f"{PREFIX}metrics:outcomes"  # issued, failed:<reason class>, error:unexpected -> count
CELERY_QUEUE = "pcaq"  # Celery's task_default_queue list (platform/queue.py): messages not yet taken


# -- the console (api/console/): per-CA certificate indexes, issuance time series, sessions ---------

# + "<CA id>:<kind>": sorted sets of one CA's certificates (shared/records/certificate_index.py); the
# submit, claim and commit scripts append the id and the kind.
INDEX_PREFIX = f"{PREFIX}idx:"
SERIES_PREFIX = f"{PREFIX}series:"  # + minute (epoch seconds // 60): the issuance figures of that minute
INDEX_KINDS = ("pending", "issued", "failed", "expiry", "names")


def certificate_index(ca_id: str, kind: str) -> str:
    """One CA's index of ``kind`` (see ``INDEX_KINDS``; revoked serials are in :func:`revoked`)."""
    return f"{INDEX_PREFIX}{ca_id}:{kind}"


def certificate_pattern(ca_id: str) -> str:
    """SCAN's pattern for every certificate request of one CA (CA ids are UUIDs: no glob characters)."""
    return f"{CERT_PREFIX}{ca_id}:*"


def series(minute: int) -> str:
    """The hash of one minute's issuance figures (shared/records/series.py)."""
    return f"{SERIES_PREFIX}{minute}"


def console_session(digest: str) -> str:
    """A console session, by the SHA-256 of its cookie (the cookie itself is never stored)."""
    return f"{PREFIX}console-session:{digest}"


# -- retention and the archive (shared/records/retention.py) ----------------------------------------

ARCHIVE_QUEUE = f"{PREFIX}archive-queue"  # stream: field m = members finished (space-separated), oldest first
RETENTION = f"{PREFIX}retention"  # member -> time its record may leave Redis (set once archived)
ARCHIVE_LOCK = f"{PREFIX}archive-lock"  # held by the one worker of the fleet that archives and removes
AUDIT_ARCHIVED = f"{PREFIX}audit-archived"  # CA id -> id of the last audit entry the archive confirmed
METRICS_RECORDS = f"{PREFIX}metrics:records"  # archived, removed, cpu (archiver seconds); ok/failed/error
