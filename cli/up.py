"""``pcaq up`` runs the whole service in the foreground on one machine.

It loads (or creates) the master key, starts the embedded Redis unless ``REDIS_URL`` (or Sentinels)
is set, checks that the master key opens what Redis holds, then supervises the API (granian) and the
worker (Celery) until Ctrl-C or SIGTERM, with the arguments of :mod:`pcaq.cli.children`.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import redis

from pcaq.ca.vault import load_master_key, verify_master_key
from pcaq.cli import embedded_redis
from pcaq.cli.children import api_args, worker_args
from pcaq.cli.supervisor import ChildSpec, StopSignals, Supervisor
from pcaq.errors import MasterKeyError
from pcaq.pki import key_checks
from pcaq.platform import redis_connect
from pcaq.platform.credentials import OPEN_MODE_WARNING, CredentialsError, check_bind, load_credentials
from pcaq.platform.redis_connect import redact
from pcaq.platform.settings import Settings, load
from pcaq.platform.throttle import parse_rate_limits
from pcaq.records import Store

log = logging.getLogger("pcaq")

_REDIS_DEADLINE = 30.0  # how long pcaq up waits for an external Redis that is still starting


class StartError(Exception):
    """pcaq up cannot start; the message says why and what to do."""


def _check_security_config(settings: Settings) -> None:
    """Fail at start, with the reason, on rate limits or a key blocklist file the processes would refuse."""
    from pcaq.api.schemas import OPERATIONS  # the service's operation names (botocore's model)

    parse_rate_limits(settings.rate_limits, OPERATIONS)
    if settings.key_blocklist_file is not None:
        try:
            text = settings.key_blocklist_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"cannot read PCAQ_KEY_BLOCKLIST_FILE {settings.key_blocklist_file}: {exc}"
            ) from None
        try:
            key_checks.fingerprints_in_text(text)
        except ValueError as exc:
            raise ValueError(f"PCAQ_KEY_BLOCKLIST_FILE {settings.key_blocklist_file}: {exc}") from None


def _configure_logging(level_name: str) -> None:
    level = logging.getLevelName(level_name)
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.INFO,
        format="%(asctime)s [pcaq] %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    """``pcaq up``: run the service until stopped; the exit status."""
    settings = load()
    _configure_logging(settings.log_level)
    if args.workers < 1:
        print("pcaq: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        credentials = load_credentials(settings)
        check_bind(args.host, credentials)  # open development mode: loopback only
        _check_security_config(settings)
    except (CredentialsError, ValueError) as exc:
        print(f"pcaq: {exc}", file=sys.stderr)
        return 2
    if credentials.open_mode:
        log.warning(OPEN_MODE_WARNING)
    else:
        log.info("authentication: SigV4 with %d access keys", len(credentials))
    # Handle SIGINT/SIGTERM from here on, so a stop during start-up still stops the embedded Redis.
    signals = StopSignals()
    try:
        return _run_up(args, settings, signals)
    except (MasterKeyError, embedded_redis.EmbeddedRedisError, StartError) as exc:
        print(f"pcaq: {exc}", file=sys.stderr)
        return 1
    finally:
        signals.close()


def _run_up(args: argparse.Namespace, settings: Settings, signals: StopSignals) -> int:
    kek, key_path = load_master_key(settings, create=True)
    if key_path is None:
        log.info("master key: from PCAQ_MASTER_KEY")
    else:
        log.info("master key: file %s (keep a copy: without it the CA keys cannot be opened)", key_path)
    with ExitStack() as stack:
        if redis_connect.uses_sentinel(settings):
            # The children find the primary as this process does, from the same variables.
            redis_url = None
            log.info("using Redis: the %s (PCAQ_REDIS_SENTINELS)", redis_connect.describe(settings))
        elif settings.redis_url:
            redis_url = settings.redis_url
            log.info("using Redis at %s (REDIS_URL)", redact(redis_url))
        else:
            prefer = args.embedded_redis or settings.embedded_redis
            running = stack.enter_context(embedded_redis.embedded_redis(settings.data_dir, prefer))
            redis_url = running.url
            log.info("using the embedded Redis (%s) at %s", running.kind, redact(redis_url))
        _check_redis(replace(settings, redis_url=redis_url or settings.redis_url), kek, signals)
        if signals.requested:
            return 0
        env = _child_env(settings, redis_url, key_path, args.host, args.port)
        supervisor = Supervisor(
            [
                ChildSpec("api", [sys.executable, "-m", "granian", *api_args(args.host, args.port)], env),
                ChildSpec("worker", [sys.executable, "-m", "celery", *worker_args(args.workers)], env),
            ],
            signals,
        )
        log.info("pcaq listening on http://%s:%d (signing processes: %d)", args.host, args.port, args.workers)
        return supervisor.run()


def _check_redis(settings: Settings, kek: bytes, signals: StopSignals) -> None:
    """Wait (bounded) for Redis to answer, then check the master key against what it holds."""
    store = Store.from_settings(settings)
    shown = redis_connect.describe(settings)
    try:
        deadline = time.monotonic() + _REDIS_DEADLINE
        waiting_logged = False
        while not store.ping():
            if signals.requested:
                return
            if time.monotonic() > deadline:
                raise StartError(
                    f"Redis at {shown} does not answer; start it or fix REDIS_URL or PCAQ_REDIS_SENTINELS"
                )
            if not waiting_logged:
                log.info("waiting for Redis at %s", shown)
                waiting_logged = True
            signals.wait(0.25)
        try:
            verify_master_key(store, kek)
        except redis.RedisError as exc:
            raise StartError(f"Redis at {shown} refused the master key check: {exc}") from exc
    finally:
        store.r.close()


def _child_env(
    settings: Settings, redis_url: str | None, key_path: os.PathLike | None, host: str, port: int
) -> dict[str, str]:
    env = dict(os.environ)  # PCAQ_REDIS_SENTINELS and the rest of the Sentinel settings pass as they are
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    env["PCAQ_DATA_DIR"] = str(settings.data_dir)
    if key_path is not None:
        env["PCAQ_MASTER_KEY_FILE"] = str(key_path)
    if not env.get("PCAQ_PUBLIC_HOST"):
        # CRL URLs in certificates must name where this API is reachable, not the default port.
        public = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
        env["PCAQ_PUBLIC_HOST"] = f"{public}:{port}"
        log.info("PCAQ_PUBLIC_HOST not set: CRL URLs will name %s", env["PCAQ_PUBLIC_HOST"])
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env["PROMETHEUS_MULTIPROC_DIR"] = str(_fresh_metrics_dir(settings.data_dir / "metrics"))
    return env


def _fresh_metrics_dir(folder: Path) -> Path:
    """The folder where the API processes pool their request counters (for GET /metrics), emptied of
    an earlier run's files so that counters start from zero with the service."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
    return folder
