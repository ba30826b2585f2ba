"""The ``pcaq`` command: ``pcaq up`` runs the whole service in the foreground on one machine.

``pcaq up`` loads (or creates) the master key, starts the embedded Redis unless ``REDIS_URL`` is set,
checks that the master key opens what Redis holds, then supervises the API (granian) and the worker
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
from pathlib import Path

import redis

from pcaq.archive import ArchiveDown, open_archive
from pcaq.ca.audit_trail import AuditTrail
from pcaq.ca.vault import load_master_key, verify_master_key
from pcaq.cli import archive_backfill, bulk_issue, console_index, embedded_redis
from pcaq.cli.supervisor import ChildSpec, StopSignals, Supervisor
from pcaq.errors import MasterKeyError, PcaqError
from pcaq.pki import key_checks
from pcaq.platform import redis_connect
from pcaq.platform.credentials import OPEN_MODE_WARNING, CredentialsError, check_bind, load_credentials
from pcaq.platform.redis_connect import redact
from pcaq.platform.settings import Settings, load
from pcaq.platform.throttle import parse_rate_limits
from pcaq.records import Store

log = logging.getLogger("pcaq")

API_APP = "pcaq.api.app:create_app"  # a factory: granian calls it once per process
WORKER_APP = "pcaq.worker.app:app"
_REDIS_DEADLINE = 30.0  # how long pcaq up waits for an external Redis that is still starting


class StartError(Exception):
    """pcaq up cannot start; the message says why and what to do."""


def api_args(host: str, port: int | str) -> list[str]:
    """granian's arguments for the API (the Procfile's ``web`` line is ``granian`` plus these).

    Two processes, each serving one request at a time on one Python thread: HTTP is parsed in Rust
    and no GIL hand-off happens between request threads, which on the machines we measure costs more
    than the request itself (see docs/benchmarks.md). A process that dies is replaced.
    Request headers are bounded at 64 KiB (SigV4's need a few hundred bytes); bodies by
    ``PCAQ_MAX_BODY_BYTES`` in the application. No access log by default (it costs more than routing a request); ``GRANIAN_LOG_ACCESS_ENABLED=1``
    turns it on.
    """
    return [
        "--interface", "wsgi",
        "--host", host,
        "--port", str(port),
        "--workers", "2",
        "--blocking-threads", "1",
        "--runtime-mode", "st",
        "--runtime-threads", "1",
        "--respawn-failed-workers",
        "--http1-buffer-size", "65536",  # request line and headers: at most 64 KiB (431 past it)
        "--factory",
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


def default_workers(cpus: int | None = None) -> int:
    """How many signing processes ``pcaq up`` runs unless told: one per CPU but one, at least one.

    ``pcaq up`` runs the API, Redis and often the clients on the same machine; a signer on every core
    leaves none of them a core while a backlog is signed, and IssueCertificate's p99 suffers for no
    gain in rate (docs/benchmarks.md).
    """
    count = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, count - 1)


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
        default=default_workers(),
        help="signing processes (Celery --concurrency; default: one per CPU but one, at least one; "
        "here %(default)s)",
    )
    up.add_argument(
        "--embedded-redis",
        choices=embedded_redis.CHOICES,
        default=None,
        help="which Redis to run when REDIS_URL is unset (default: PCAQ_EMBEDDED_REDIS, else auto)",
    )
    up.set_defaults(func=_up)
    _add_security_commands(commands)
    bulk_issue.add_parser(commands)
    return parser


def _add_security_commands(commands: argparse._SubParsersAction) -> None:
    redis_url = argparse.ArgumentParser(add_help=False)
    redis_url.add_argument(
        "--redis-url",
        help="the Redis pcaq uses (default: REDIS_URL, else the embedded Redis of a pcaq up running on "
        "PCAQ_DATA_DIR, else redis://127.0.0.1:6379/0)",
    )
    audit = commands.add_parser(
        "audit",
        parents=[redis_url],
        help="print a CA's audit trail (state changes, issuance, revocation)",
        description="Print the audit trail of one CA, oldest first: when, what, who (access key), account, "
        "request id and details.",
    )
    audit.add_argument("--ca", required=True, metavar="ARN", help="the CA's ARN")
    audit.add_argument("--count", type=int, default=None, help="only the last COUNT entries")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=_audit)
    blocklist = commands.add_parser(
        "blocklist",
        parents=[redis_url],
        help="manage the public keys the workers refuse to certify",
        description="Keys on the blocklist are refused at signing (GetCertificate answers "
        "RequestFailedException). FILE holds PEM public keys, certificates, CSRs or private keys, or "
        "SHA-256 fingerprints of SubjectPublicKeyInfo (64 hex digits), one per line.",
    )
    blocklist.add_argument("action", choices=("add", "remove", "list"))
    blocklist.add_argument("files", nargs="*", metavar="FILE", help="for add and remove")
    blocklist.set_defaults(func=_blocklist)
    console_index.add_parser(commands, redis_url, _store_for)
    backfill = archive_backfill.add_parser(commands, [redis_url])
    backfill.set_defaults(func=lambda args: archive_backfill.run(_store_for(args)))


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


def _store_for(args: argparse.Namespace) -> Store:
    settings = load()
    if args.redis_url:  # named on the command line: that one server, whatever the environment says
        return Store.from_settings(replace(settings, redis_url=args.redis_url, redis_sentinels=()))
    if redis_connect.uses_sentinel(settings):
        return Store.from_settings(settings)
    # The embedded Redis asks for the password kept in the data folder: found there, never typed.
    url = settings.redis_url or embedded_redis.embedded_redis_url(settings.data_dir)
    if url:
        settings = replace(settings, redis_url=url)
    return Store.from_settings(settings)


def _audit(args: argparse.Namespace) -> int:
    store = _store_for(args)
    try:
        entries = AuditTrail(store, archive=open_archive(store.settings)).entries(args.ca, args.count)
    except ArchiveDown as exc:
        print(f"pcaq: {exc}", file=sys.stderr)
        return 1
    except PcaqError as exc:
        print(f"pcaq: {exc.message}", file=sys.stderr)
        return 2
    except redis.RedisError as exc:
        print(f"pcaq: Redis at {redis_connect.describe(store.settings)}: {exc}", file=sys.stderr)
        return 1
    for entry in entries:
        print(entry.as_json() if args.json else entry.line())
    if not entries:
        print(f"pcaq: no audit entries for {args.ca}", file=sys.stderr)
    return 0


def _blocklist(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.files:
        print(f"pcaq: blocklist {args.action} needs at least one FILE", file=sys.stderr)
        return 2
    fingerprints: set[str] = set()
    for name in args.files:
        try:
            fingerprints |= key_checks.fingerprints_in_text(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            print(f"pcaq: {name}: {exc}", file=sys.stderr)
            return 2
    store = _store_for(args)
    try:
        if args.action == "list":
            for fingerprint in sorted(store.blocklist_members()):
                print(fingerprint)
            return 0
        if args.action == "add":
            changed = store.blocklist_add(fingerprints)
        else:
            changed = store.blocklist_remove(fingerprints)
    except redis.RedisError as exc:
        print(f"pcaq: Redis at {redis_connect.describe(store.settings)}: {exc}", file=sys.stderr)
        return 1
    for fingerprint in sorted(fingerprints):
        print(fingerprint)
    verb = "added" if args.action == "add" else "removed"
    print(f"pcaq: {verb} {changed} of {len(fingerprints)} fingerprints", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pcaq`` console script; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except embedded_redis.EmbeddedRedisError as exc:  # its password file, for the commands but up
        print(f"pcaq: {exc}", file=sys.stderr)
        return 1


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


if __name__ == "__main__":
    sys.exit(main())
