"""The ``pcaq`` command: ``pcaq up`` runs the whole service in the foreground on one machine.

``pcaq up`` loads (or creates) the master key, starts the embedded Redis unless ``REDIS_URL`` is set,
checks that the master key opens what Redis holds, then supervises the API (gunicorn) and the worker
(Celery) until Ctrl-C or SIGTERM. Production runs the same two programs with the same arguments from
the ``Procfile`` or ``docker-compose.yml``; :func:`api_args` and :func:`worker_args` are the single
source of those arguments and a test keeps the files in step with them.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import redis

from shared import embedded_redis
from shared.errors import MasterKeyError
from shared.records import Store
from shared.settings import Settings, load
from shared.supervisor import ChildSpec, StopSignals, Supervisor
from shared.vault import load_master_key, verify_master_key

log = logging.getLogger("pcaq")

API_APP = "api.app:create_app()"
WORKER_APP = "worker.app:app"
_REDIS_DEADLINE = 30.0  # how long pcaq up waits for an external Redis that is still starting


class StartError(Exception):
    """pcaq up cannot start; the message says why and what to do."""


def api_args(host: str, port: int | str) -> list[str]:
    """gunicorn's arguments for the API (the Procfile's ``web`` line is ``gunicorn`` plus these)."""
    address = f"[{host}]" if ":" in host else host  # an IPv6 address needs brackets
    return [
        "--bind", f"{address}:{port}",
        "--workers", "2",
        "--worker-class", "gthread",
        "--threads", "8",
        "--access-logfile", "-",
        API_APP,
    ]  # fmt: skip


def worker_args(concurrency: int | None = None) -> list[str]:
    """celery's arguments for a worker (the Procfile's ``worker`` line is ``celery`` plus these).

    Without ``concurrency`` Celery runs one pool process per CPU. Gossip and mingle are off: our
    workers coordinate through their own records in Redis, and both only add Redis traffic and a
    slower start.
    """
    args = ["-A", WORKER_APP, "worker", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    return args


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcaq", description="A private CA speaking the AWS Private CA API.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser(
        "up",
        help="run the API and the workers in the foreground (Ctrl-C stops them)",
        description="Run the API and the workers in the foreground until Ctrl-C or SIGTERM. Uses Redis at "
        "REDIS_URL, or an embedded one (redis-server from PATH, else an in-process server) when unset.",
    )
    up.add_argument("--host", default="127.0.0.1", help="address the API listens on (default: %(default)s)")
    up.add_argument("--port", type=int, default=8080, help="port the API listens on (default: %(default)s)")
    up.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="signing processes (Celery --concurrency; default: one per CPU, here %(default)s)",
    )
    up.add_argument(
        "--embedded-redis",
        choices=embedded_redis.CHOICES,
        default=None,
        help="which Redis to run when REDIS_URL is unset (default: PCAQ_EMBEDDED_REDIS, else auto)",
    )
    up.set_defaults(func=_up)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pcaq`` console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    return args.func(args)


def _configure_logging(level_name: str) -> None:
    level = logging.getLevelName(level_name)
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.INFO,
        format="%(asctime)s [pcaq] %(levelname)s %(message)s",
        stream=sys.stderr,
    )


def _up(args: argparse.Namespace) -> int:
    settings = load()
    _configure_logging(settings.log_level)
    if args.workers < 1:
        print("pcaq: --workers must be at least 1", file=sys.stderr)
        return 2
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
        if settings.redis_url:
            redis_url = settings.redis_url
            log.info("using Redis at %s (REDIS_URL)", redact(redis_url))
        else:
            prefer = args.embedded_redis or settings.embedded_redis
            running = stack.enter_context(embedded_redis.embedded_redis(settings.data_dir, prefer))
            redis_url = running.url
            log.info("using the embedded Redis (%s) at %s", running.kind, redis_url)
        _check_redis(replace(settings, redis_url=redis_url), kek, signals)
        if signals.requested:
            return 0
        env = _child_env(settings, redis_url, key_path, args.host, args.port)
        supervisor = Supervisor(
            [
                ChildSpec("api", [sys.executable, "-m", "gunicorn", *api_args(args.host, args.port)], env),
                ChildSpec("worker", [sys.executable, "-m", "celery", *worker_args(args.workers)], env),
            ],
            signals,
        )
        log.info("pcaq listening on http://%s:%d (signing processes: %d)", args.host, args.port, args.workers)
        return supervisor.run()


def _check_redis(settings: Settings, kek: bytes, signals: StopSignals) -> None:
    """Wait (bounded) for Redis to answer, then check the master key against what it holds."""
    store = Store.from_settings(settings)
    shown = redact(settings.effective_redis_url)
    try:
        deadline = time.monotonic() + _REDIS_DEADLINE
        waiting_logged = False
        while not store.ping():
            if signals.requested:
                return
            if time.monotonic() > deadline:
                raise StartError(f"Redis at {shown} does not answer; start it or fix REDIS_URL")
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
    settings: Settings, redis_url: str, key_path: os.PathLike | None, host: str, port: int
) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env["PCAQ_DATA_DIR"] = str(settings.data_dir)
    if key_path is not None:
        env["PCAQ_MASTER_KEY_FILE"] = str(key_path)
    if not env.get("PCAQ_PUBLIC_HOST"):
        # CRL URLs in certificates must name where this API is reachable, not the default port.
        public = socket.getfqdn() if host in ("0.0.0.0", "::", "") else host
        env["PCAQ_PUBLIC_HOST"] = f"{public}:{port}"
        log.info("PCAQ_PUBLIC_HOST not set: CRL URLs will name %s", env["PCAQ_PUBLIC_HOST"])
    return env


if __name__ == "__main__":
    sys.exit(main())
