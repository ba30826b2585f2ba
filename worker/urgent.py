"""The worker's side of urgent work (shared/revocation/urgent.py): OCSP answers and CRLs an API process waits for.

Three ways a job reaches a worker, so that it waits milliseconds, not behind a backlog:
- a drain's claim takes the waiting jobs with its batch (the drain serves them first);
- a drain signing a batch is told on a pub/sub channel and takes it within ``PEEK_SECONDS``
  (:class:`Watch`), so a job does not wait for a whole batch (100 RSA-4096 signatures take most of a
  second);
- with no drain running, the API's wake-up message runs :func:`serve_waiting`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.client import PubSub

from pcaq.platform import logs
from pcaq.platform.queue import URGENT_TASK
from pcaq.revocation import urgent
from pcaq.worker.app import app
from pcaq.worker.revocation_tasks import rebuild_crl, sign_ocsp
from pcaq.worker.services import Services, services

log = logging.getLogger("pcaq.worker")

PEEK_SECONDS = 0.005  # how often a signing drain checks its subscription (a poll of its socket)
PER_WAKE_UP = 256  # jobs one wake-up serves before it asks for another (a flood must not pin a worker)
_watch_failed = logs.Every(5.0)  # during a Redis outage: one line per 5 s, not one per drain


def serve(svc: Services, jobs: list[bytes]) -> int:
    """Serve urgent jobs taken from the list; returns how many were served. A job whose asker stopped
    waiting is dropped, and one that fails is logged: it must not stop the drain that took it (the
    asker answers tryLater, or the CRL it has, when no reply comes)."""
    served = 0
    for raw in jobs:
        job = urgent.decode(raw)
        if job is None:
            log.warning("dropped an urgent job that is not one (%d bytes)", len(raw))
            continue
        if svc.clock() > job.until:
            continue
        try:
            if job.kind == urgent.OCSP:
                sign_ocsp(svc, job.ca_id, job.serial_hex, list(job.cert_id), job.reply)
            else:
                rebuild_crl(svc, job.ca_id, job.reply)
            served += 1
        except Exception:  # noqa: BLE001 - see the docstring
            log.exception("urgent %s job of CA %s failed", job.kind, job.ca_id)
    return served


def serve_waiting(svc: Services, most: int = PER_WAKE_UP) -> int:
    """Serve the jobs waiting in the list, up to ``most`` (then ask for another wake-up, so that other
    work gets its turn); returns how many were served."""
    served = taken = 0
    while taken < most:
        jobs = svc.store.take_urgent(min(urgent.TAKE_PER_CLAIM, most - taken))
        if not jobs:
            return served
        taken += len(jobs)
        served += serve(svc, jobs)
    svc.queue.serve_urgent()  # more may be waiting: another round, after the work queued meanwhile
    return served


class Watch:
    """Serves the urgent jobs that come while a drain signs a batch, between two signatures.

    Asks made while a drain runs are announced on a pub/sub channel. Every ``interval`` seconds the
    watch checks its subscription by polling its socket, with no round trip, and takes jobs only when
    one was announced. Neither the drain nor Redis waits or wakes for nothing: a blocking look in the
    list every 5 ms cost a drain about a tenth of its CPU on our 2-core VM (the process sleeps and its
    caches go cold), and even a pipelined one woke Redis 200 times a second per worker, each time
    preempting a signing worker.
    """

    def __init__(self, svc: Services, interval: float = PEEK_SECONDS):
        self.svc = svc
        self.interval = interval
        self.due = time.monotonic() + interval
        self.signals: PubSub | None = None
        try:
            self.signals = svc.store.urgent_signals()
        except Exception:  # noqa: BLE001 - without it only the claims take urgent jobs
            self._failed("could not subscribe to urgent-job signals")
        if self.signals is not None:
            self._check(_announced)  # words from before this drain: their jobs were taken by a claim

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self.due or self.signals is None:
            return
        self.due = now + self.interval
        self._check(self._take_if_announced)

    def _take_if_announced(self, signals: PubSub) -> None:
        if _announced(signals):
            jobs = self.svc.store.take_urgent(urgent.TAKE_PER_CLAIM)
            if jobs:
                serve(self.svc, jobs)

    def _check(self, step: Callable[[PubSub], object]) -> None:
        try:
            step(self.signals)
        except Exception:  # noqa: BLE001 - the batch goes on; claims still take the jobs, a little later
            self.svc.store.drop_urgent_signals(self.signals)
            self.signals = None
            self._failed("a drain stopped listening for urgent jobs")

    @staticmethod
    def _failed(what: str) -> None:
        held = _watch_failed.due()
        if held is not None:
            log.warning("%s (%d more since)", what, held, exc_info=True)


def _announced(signals: PubSub) -> bool:
    """Whether a word came on the subscription since it was last read (reads them all; no waiting)."""
    came = False
    while signals.get_message(timeout=0.0) is not None:
        came = True
    return came


@app.task(name=URGENT_TASK)
def serve_urgent() -> None:
    """Celery entry point of :func:`serve_waiting` (the message is only a wake-up)."""
    serve_waiting(services())
