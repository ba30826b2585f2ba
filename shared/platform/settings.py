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


def _bounded(env: dict[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    """A whole number in [low, high] (no upper bound when ``high`` is None); else the process stops."""
    value = _int(env, name, default)
    if high is None and value < low:
        raise SystemExit(f"pcaq: {name} must be at least {low}, got {value}")
    if high is not None and not low <= value <= high:
        raise SystemExit(f"pcaq: {name} must be between {low} and {high}, got {value}")
    return value


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


_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(env: dict[str, str], name: str, default: str) -> int:
    """A duration such as ``90s``, ``15m``, ``12h`` or ``7d``, in seconds."""
    raw = (env.get(name) or default).strip().lower()
    match = _DURATION.fullmatch(raw)
    if match is None:
        raise SystemExit(f"pcaq: {name} must be a duration such as 90s, 15m, 12h or 7d, got {raw!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _archive_url(env: dict[str, str]) -> str | None:
    raw = env.get("PCAQ_ARCHIVE_URL") or None
    # Only PostgreSQL is an archive server; anything else is a typo that would otherwise fall back to
    # files without anyone noticing.
    if raw is not None and not re.match(r"postgres(ql)?://", raw):
        raise SystemExit(
            "pcaq: PCAQ_ARCHIVE_URL must be a postgresql:// URL (unset: files in the data folder)"
        )
    return raw


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
    # CA keys in a hardware security module, PKCS#11 (docs/hsm.md). No module: keys in software.
    pkcs11_module: Path | None = None  # the PKCS#11 library the workers load
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = field(default=None, repr=False)  # from PCAQ_PKCS11_PIN or _PIN_FILE
    # Software keys for CAs when a token is configured (ML-DSA, which tokens lack): refused unless true.
    # Without a token every key is a software key, whatever this says.
    allow_software_keys: bool = False
    # The operator's console (api/console/, docs/security.md#the-console).
    console: bool = True  # PCAQ_CONSOLE: serve GET /console/ on the API's port
    console_session_seconds: int = 28800  # a console session ends this long after sign-in

    # -- Records at scale: retention and the archive (docs/operations.md) --
    retention_after_expiry: int = 7 * 86400  # seconds a certificate's record stays in Redis after Not After
    failed_retention: int = 7 * 86400  # seconds a failed request's record stays in Redis after it failed
    archive_url: str | None = field(default=None, repr=False)  # postgresql://...; None: JSON-lines files
    archive_batch: int = 500  # records the archiver writes (and retention removes) per step
    # High availability: Redis behind Sentinel (docs/operations.md, high availability).
    redis_sentinels: tuple[tuple[str, int], ...] = ()  # PCAQ_REDIS_SENTINELS; set: REDIS_URL is not used
    redis_master: str = "mymaster"  # the name the Sentinels know the primary by
    redis_password: str | None = field(default=None, repr=False)  # AUTH of the primary and replicas
    redis_sentinel_password: str | None = field(default=None, repr=False)  # AUTH of the Sentinels
    redis_min_replicas: int = 0  # replicas that must hold a write before a client is told it is done
    redis_replica_wait_ms: int = 2000  # how long such a write waits for them (WAIT's timeout)

    @property
    def token_configured(self) -> bool:
        """Whether CA keys are made in a PKCS#11 token (all three token settings are given)."""
        return self.pkcs11_module is not None

    @property
    def effective_audit_dir(self) -> Path:
        """Where audit reports are written (the local stand-in for their S3 buckets)."""
        return self.audit_dir or self.data_dir / "s3"

    @property
    def archive_dir(self) -> Path:
        """Where the file archive lives when no ``PCAQ_ARCHIVE_URL`` is set."""
        return self.data_dir / "archive"

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
        # CA keys in a hardware security module, PKCS#11 (docs/hsm.md).
        **_pkcs11(env),
        # The operator's console.
        console=_choice(env, "PCAQ_CONSOLE", ("on", "off"), "on") == "on",
        console_session_seconds=_bounded(env, "PCAQ_CONSOLE_SESSION_SECONDS", 28800, 60, 7 * 86400),
        # -- Records at scale: retention and the archive --
        retention_after_expiry=_duration(env, "PCAQ_RETENTION_AFTER_EXPIRY", "7d"),
        failed_retention=_duration(env, "PCAQ_FAILED_RETENTION", "7d"),
        archive_url=_archive_url(env),
        archive_batch=max(1, _int(env, "PCAQ_ARCHIVE_BATCH", 500)),
        # High availability: Redis behind Sentinel.
        redis_sentinels=_sentinels(env),
        redis_master=_redis_master(env),
        redis_password=env.get("PCAQ_REDIS_PASSWORD") or None,
        redis_sentinel_password=env.get("PCAQ_REDIS_SENTINEL_PASSWORD") or None,
        redis_min_replicas=_bounded(env, "PCAQ_REDIS_MIN_REPLICAS", 0, 0),
        redis_replica_wait_ms=_bounded(env, "PCAQ_REDIS_REPLICA_WAIT_MS", 2000, 1),
    )


def _pkcs11(env: dict[str, str]) -> dict:
    """The token settings: all of module, label and PIN, or none (a partial set stops the process)."""
    module, label = _path(env, "PCAQ_PKCS11_MODULE"), env.get("PCAQ_PKCS11_TOKEN_LABEL") or None
    pin, pin_file = env.get("PCAQ_PKCS11_PIN") or None, _path(env, "PCAQ_PKCS11_PIN_FILE")
    allow = _choice(env, "PCAQ_ALLOW_SOFTWARE_KEYS", ("true", "false"), "false") == "true"
    if module is None:
        for name in ("PCAQ_PKCS11_TOKEN_LABEL", "PCAQ_PKCS11_PIN", "PCAQ_PKCS11_PIN_FILE"):
            if env.get(name):
                raise SystemExit(f"pcaq: {name} is set but PCAQ_PKCS11_MODULE is not")
        return {"allow_software_keys": allow}
    if not module.is_file():
        raise SystemExit(f"pcaq: PCAQ_PKCS11_MODULE names {module}, which is not a file")
    if label is None:
        raise SystemExit("pcaq: PCAQ_PKCS11_MODULE is set, so PCAQ_PKCS11_TOKEN_LABEL must name the token")
    if pin is not None and pin_file is not None:
        raise SystemExit("pcaq: set PCAQ_PKCS11_PIN or PCAQ_PKCS11_PIN_FILE, not both")
    if pin_file is not None:
        try:
            pin = pin_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            # The message names the file only: its content is the PIN.
            raise SystemExit(f"pcaq: PCAQ_PKCS11_PIN_FILE names {pin_file}, which cannot be read") from exc
    if not pin:
        raise SystemExit(
            "pcaq: PCAQ_PKCS11_MODULE is set, so PCAQ_PKCS11_PIN or PCAQ_PKCS11_PIN_FILE must give the PIN"
        )
    return {
        "pkcs11_module": module,
        "pkcs11_token_label": label,
        "pkcs11_pin": pin,
        "allow_software_keys": allow,
    }
