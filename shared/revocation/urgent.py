"""Urgent work: what an API process waits for a worker to do while its client waits (an OCSP answer
to sign, a CRL to build), as opposed to certificate requests, which the client polls for.

Only workers hold CA keys, so the API asks one and waits (``PCAQ_RESPONDER_WAIT_MS``). Sent as a
Celery message, such a job queued behind a drain: a worker signing a backlog of 20,000 requests
works through it in slices of seconds, so OCSP answered ``tryLater`` for as long as bulk issuance
ran, and each waiting request held one of the API's request threads the whole time. Instead the job
goes to a Redis list that a drain takes from with its claims and, while it signs a batch, every few
milliseconds (worker/urgent.py), and a Celery message wakes a worker only when no drain is running
(the draining mark is absent). The list is bounded; a job carries the time its asker stops waiting,
after which a worker drops it unserved.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pcaq.platform.queue import Queue
    from pcaq.records import Store

OCSP = "ocsp"
CRL = "crl"

MAX_WAITING = 1000  # jobs in the list at once; past it the API answers at once (tryLater, or the CRL it has)
LIST_TTL_SECONDS = 60  # the list expires when nobody asks for this long (every job in it is stale by then)
TAKE_PER_CLAIM = 16  # jobs a drain's claim takes at once


@dataclass(frozen=True)
class UrgentJob:
    """One job: ``kind`` (OCSP or CRL), the CA, the reply list token the asker waits on, and the
    store-clock time after which nobody waits (``until``). OCSP jobs name the serial and the CertID
    (hash name, issuer name hash hex, issuer key hash hex)."""

    kind: str
    ca_id: str
    reply: str
    until: float
    serial_hex: str = ""
    cert_id: tuple[str, str, str] = ("", "", "")

    def encode(self) -> bytes:
        """The job as stored in the list."""
        return json.dumps(
            [self.kind, self.ca_id, self.reply, self.until, self.serial_hex, list(self.cert_id)],
            separators=(",", ":"),
        ).encode()


def decode(raw: bytes) -> UrgentJob | None:
    """The job stored as ``raw``; None for anything that is not one (it is then dropped)."""
    try:
        kind, ca_id, reply, until, serial_hex, cert_id = json.loads(raw)
        job = UrgentJob(
            str(kind), str(ca_id), str(reply), float(until), str(serial_hex), tuple(map(str, cert_id))
        )
    except (ValueError, TypeError):
        return None
    if job.kind not in (OCSP, CRL) or len(job.cert_id) != 3:
        return None
    return job


def ask_and_wait(
    store: Store,
    queue: Queue,
    wait_seconds: float,
    kind: str,
    ca_id: str,
    serial_hex: str = "",
    cert_id: tuple[str, str, str] = ("", "", ""),
) -> bytes | None:
    """Ask for a job (its reply token and the time its asker stops waiting are made here), wake a
    worker if no drain will take it, and wait for its reply; None if none came in ``wait_seconds`` or
    too many jobs are waiting already."""
    job = UrgentJob(kind, ca_id, uuid.uuid4().hex, store.clock() + wait_seconds, serial_hex, cert_id)
    outcome = store.ask_urgent(job.encode(), MAX_WAITING, LIST_TTL_SECONDS)
    if outcome < 0:
        return None
    if outcome > 0:
        queue.serve_urgent()
    return store.wait_reply(job.reply, wait_seconds)
