"""The worker's side of urgent work (shared/urgent.py): OCSP answers and CRLs an API process waits for.

Three ways a job reaches a worker, so that it waits milliseconds, not behind a backlog:
- a drain's claim takes the waiting jobs with its batch (the drain serves them first);
- a drain signing a batch looks at the list every ``PEEK_SECONDS`` (:class:`Watch`), so a job
  does not wait for a whole batch (100 RSA-4096 signatures take most of a second);
- with no drain running, the API's wake-up message runs :func:`serve_waiting`.
"""

from __future__ import annotations

import logging
import time

from shared import logs, urgent
from shared.queue import URGENT_TASK
from shared.records.requests import Sent
from worker.app import app
from worker.revocation_tasks import rebuild_crl, sign_ocsp
from worker.services import Services, services

log = logging.getLogger("pcaq.worker")

PEEK_SECONDS = 0.005  # how often a drain looks while it signs (a job waits one or two of these)
PER_WAKE_UP = 256  # jobs one wake-up serves before it asks for another (a flood must not pin a worker)
_look_failed = logs.Every(5.0)  # during a Redis outage: one line per 5 s, not one per look


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
    """Looks for urgent jobs while a drain signs, between two signatures: every ``interval`` seconds it
    serves what its previous look took (that reply arrived long ago: nothing waits) and sends the
    next look. Never waiting on Redis there is the point: a blocking round trip every 5 ms cost a
    drain about a tenth of its CPU on our 2-core VM (the process sleeps and its caches go cold), a
    pipelined one nothing we could measure. :meth:`close` serves the last look's jobs."""

    def __init__(self, svc: Services, interval: float = PEEK_SECONDS):
        self.svc = svc
        self.interval = interval
        self.due = time.monotonic() + interval
        self.look: Sent[list[bytes]] | None = None

    def __call__(self) -> None:
        now = time.monotonic()
        if now < self.due:
            return
        self.due = now + self.interval
        try:
            self._serve_look()
            self.look = self.svc.store.send_take_urgent(urgent.TAKE_PER_CLAIM)
        except Exception:  # noqa: BLE001 - the batch goes on; the readers answer without these jobs
            held = _look_failed.due()
            if held is not None:
                log.warning("a drain could not look for urgent jobs (%d more since)", held, exc_info=True)

    def close(self) -> None:
        """Serve the jobs the last look took (a drain calls this as it ends: nothing taken is dropped)."""
        self._serve_look()

    def _serve_look(self) -> None:
        look, self.look = self.look, None
        if look is not None:
            jobs = look.result()
            if jobs:
                serve(self.svc, jobs)


@app.task(name=URGENT_TASK)
def serve_urgent() -> None:
    """Celery entry point of :func:`serve_waiting` (the message is only a wake-up)."""
    serve_waiting(services())
