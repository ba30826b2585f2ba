"""The programs ``pcaq up`` supervises, as the Procfile and docker-compose.yml also run them: their
arguments have this one source, and a test keeps those files in step with it."""

from __future__ import annotations

import os

API_APP = "pcaq.api.app:create_app"  # a factory: granian calls it once per process
WORKER_APP = "pcaq.worker.app:app"


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
