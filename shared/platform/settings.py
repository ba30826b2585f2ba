"""Every setting pcaq reads, from the environment, in one place, each with a safe default."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"pcaq: {name} must be a whole number, got {raw!r}") from exc


def _choice(env: dict[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise SystemExit(f"pcaq: {name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _partition(env: dict[str, str]) -> str | None:
    raw = env.get("PCAQ_PARTITION") or None
    # An ARN's partition is letters, digits and dashes (aws, aws-cn, aws-iso-b...); anything else would
    # make ARNs that pcaq itself refuses to parse.
    if raw is not None and not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", raw):
        raise SystemExit(f"pcaq: PCAQ_PARTITION must be a partition name such as aws or aws-cn, got {raw!r}")
    return raw


def _path(env: dict[str, str], name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None


def _at_least(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    """A whole number no smaller than ``minimum`` (a negative count or timeout stops the process)."""
    value = _int(env, name, default)
    if value < minimum:
        raise SystemExit(f"pcaq: {name} must be at least {minimum}, got {value}")
    return value


def _sentinels(env: dict[str, str]) -> tuple[tuple[str, int], ...]:
    """PCAQ_REDIS_SENTINELS: ``host:port,host:port,...`` (``[v6addr]:port`` for IPv6)."""
    raw = env.get("PCAQ_REDIS_SENTINELS", "").strip()
    found = []
    for item in filter(None, (part.strip() for part in raw.split(","))):
        host, sep, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SystemExit(f"pcaq: PCAQ_REDIS_SENTINELS must be host:port,host:port,..., got {item!r}")
        found.append((host, int(port)))
    return tuple(found)


def _redis_master(env: dict[str, str]) -> str:
    raw = env.get("PCAQ_REDIS_MASTER") or "mymaster"
    # Sentinel names a master with one word; a space or a control character would not survive its config.
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", raw):
        raise SystemExit(
            f"pcaq: PCAQ_REDIS_MASTER must be a Sentinel master name (letters, digits, ._-), got {raw!r}"
        )
    return raw


def _default_data_dir(env: dict[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pcaq"


@dataclass(frozen=True)
class Settings:
    """pcaq's configuration. Build it with :func:`load`; never read ``os.environ`` elsewhere."""

    redis_url: str | None = None
    data_dir: Path = field(default_factory=lambda: _default_data_dir(dict(os.environ)))
    master_key: str | None = field(default=None, repr=False)
    master_key_file: Path | None = None
    partition: str | None = None  # PCAQ_PARTITION overrides the partition of the caller's region
    region: str = "us-east-1"
    account_id: str = "123456789012"
    public_host: str = "127.0.0.1:8080"
    max_body_bytes: int = 3 * 1024 * 1024  # a 2 MiB chain is about 2.7 MiB once base64-encoded
    idempotency_ttl: int = 300
    visibility_timeout: int = 3600
    prefetch_multiplier: int = 16
    batch_size: int = 100
    drain_kick_ms: int = 50
    drain_linger_ms: int = 10  # a drain whose claim was not full waits this long before the next one
    # Workers run this much nicer than the API: requests first, signing in between (docs/benchmarks.md).
    worker_nice: int = 19
    lease_seconds: int = 120
    sweep_interval: int = 30
    stale_after: int = 60
    max_attempts: int = 5
    log_level: str = "INFO"
    log_format: str = "text"  # text or json (one JSON object per line; docker-compose.yml sets json)
    metrics_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR: API processes pool their counters there
    embedded_redis: str = "auto"  # auto, redis-server or fakeredis: what `pcaq up` embeds without REDIS_URL
    # Security (docs/security.md): no credentials = open development mode, loopback only.
    credentials: str | None = field(default=None, repr=False)  # ACCESS_KEY:SECRET[:ACCOUNT],...
    credentials_file: Path | None = None
    rate_limits: str = ""  # Operation=rate[/burst],... ; empty: no throttling
    key_blocklist_file: Path | None = None  # SPKI SHA-256 fingerprints or PEM keys refused by the worker
    audit_stream_maxlen: int = 100_000  # entries kept per CA (approximate trimming)
    # Revocation, CRLs, OCSP and audit reports (docs/revocation.md).
    crl_rebuild_delay: int = 2  # seconds: one CRL rebuild message per CA per window; sweeper retries after it
    responder_wait_ms: int = 3000  # how long GET /crl and /ocsp wait for a worker to sign
    ocsp_cache_seconds: int = 43200  # an OCSP answer is reused this long; nextUpdate is twice as far
    audit_report_interval: int = 1800  # seconds between two audit reports of one CA
    audit_dir: Path | None = None  # stands in for S3: <audit_dir>/<bucket>/<key>; default <data_dir>/s3
    # High availability: Redis behind Sentinel (docs/operations.md, high availability).
    redis_sentinels: tuple[tuple[str, int], ...] = ()  # PCAQ_REDIS_SENTINELS; set: REDIS_URL is not used
    redis_master: str = "mymaster"  # the name the Sentinels know the primary by
    redis_password: str | None = field(default=None, repr=False)  # AUTH of the primary and replicas
    redis_sentinel_password: str | None = field(default=None, repr=False)  # AUTH of the Sentinels
    redis_min_replicas: int = 0  # replicas that must hold a write before a client is told it is done
    redis_replica_wait_ms: int = 2000  # how long such a write waits for them (WAIT's timeout)

    @property
    def effective_audit_dir(self) -> Path:
        """Where audit reports are written (the local stand-in for their S3 buckets)."""
        return self.audit_dir or self.data_dir / "s3"

    @property
    def effective_redis_url(self) -> str:
        """The Redis URL processes connect to (``pcaq up`` sets ``REDIS_URL`` for its children)."""
        return self.redis_url or "redis://127.0.0.1:6379/0"


def load(env: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``env`` (the process environment by default)."""
    env = dict(os.environ if env is None else env)
    data_dir = Path(env["PCAQ_DATA_DIR"]) if env.get("PCAQ_DATA_DIR") else _default_data_dir(env)
    key_file = env.get("PCAQ_MASTER_KEY_FILE")
    return Settings(
        redis_url=env.get("REDIS_URL") or None,
        data_dir=data_dir,
        master_key=env.get("PCAQ_MASTER_KEY") or None,
        master_key_file=Path(key_file) if key_file else None,
        partition=_partition(env),
        region=env.get("PCAQ_REGION", "us-east-1"),
        account_id=env.get("PCAQ_ACCOUNT_ID", "123456789012"),
        public_host=env.get("PCAQ_PUBLIC_HOST", "127.0.0.1:8080"),
        max_body_bytes=_int(env, "PCAQ_MAX_BODY_BYTES", 3 * 1024 * 1024),
        idempotency_ttl=_int(env, "PCAQ_IDEMPOTENCY_TTL", 300),
        visibility_timeout=_int(env, "PCAQ_VISIBILITY_TIMEOUT", 3600),
        prefetch_multiplier=_int(env, "PCAQ_PREFETCH", 16),
        batch_size=_int(env, "PCAQ_BATCH_SIZE", 100),
        drain_kick_ms=_int(env, "PCAQ_DRAIN_KICK_MS", 50),
        drain_linger_ms=_int(env, "PCAQ_DRAIN_LINGER_MS", 10),
        worker_nice=min(19, max(0, _int(env, "PCAQ_WORKER_NICE", 19))),
        lease_seconds=_int(env, "PCAQ_LEASE_SECONDS", 120),
        sweep_interval=_int(env, "PCAQ_SWEEP_INTERVAL", 30),
        stale_after=_int(env, "PCAQ_STALE_AFTER", 60),
        max_attempts=_int(env, "PCAQ_MAX_ATTEMPTS", 5),
        log_level=env.get("PCAQ_LOG_LEVEL", "INFO").upper(),
        log_format=_choice(env, "PCAQ_LOG_FORMAT", ("text", "json"), "text"),
        metrics_dir=_path(env, "PROMETHEUS_MULTIPROC_DIR"),
        embedded_redis=env.get("PCAQ_EMBEDDED_REDIS", "auto"),
        credentials=env.get("PCAQ_CREDENTIALS") or None,
        credentials_file=_path(env, "PCAQ_CREDENTIALS_FILE"),
        rate_limits=env.get("PCAQ_RATE_LIMITS", ""),
        key_blocklist_file=_path(env, "PCAQ_KEY_BLOCKLIST_FILE"),
        audit_stream_maxlen=_int(env, "PCAQ_AUDIT_STREAM_MAXLEN", 100_000),
        crl_rebuild_delay=_int(env, "PCAQ_CRL_REBUILD_DELAY", 2),
        responder_wait_ms=_int(env, "PCAQ_RESPONDER_WAIT_MS", 3000),
        ocsp_cache_seconds=_int(env, "PCAQ_OCSP_CACHE_SECONDS", 43200),
        audit_report_interval=_int(env, "PCAQ_AUDIT_REPORT_INTERVAL", 1800),
        audit_dir=_path(env, "PCAQ_AUDIT_DIR"),
        # High availability: Redis behind Sentinel.
        redis_sentinels=_sentinels(env),
        redis_master=_redis_master(env),
        redis_password=env.get("PCAQ_REDIS_PASSWORD") or None,
        redis_sentinel_password=env.get("PCAQ_REDIS_SENTINEL_PASSWORD") or None,
        redis_min_replicas=_at_least(env, "PCAQ_REDIS_MIN_REPLICAS", 0),
        redis_replica_wait_ms=_at_least(env, "PCAQ_REDIS_REPLICA_WAIT_MS", 2000, minimum=1),
    )
