"""Wake workers for work that was accepted but is not moving (invariant 1: nothing stays PENDING forever).

Requests never need re-sending: workers pull them from the outbox, and a request whose worker died
becomes ready again when its lease ends. What can be lost is the wake-up (a drain message dropped by
a crash or a broker outage), so the sweeper asks for a drain when ready work has waited too long.
"""

from __future__ import annotations

import logging

from pcaq.worker.revocation_tasks import sweep_revocation  # CRLs due or missing, audit reports left behind

log = logging.getLogger("pcaq.sweeper")


def sweep(svc) -> int:
    """Ask for a drain if requests have been ready for ``stale_after`` seconds; re-queue CAs stuck in
    CREATING. Returns how many stale items were found."""
    now = svc.clock()
    cutoff = now - svc.settings.stale_after
    stale = svc.store.stale_ready_count(cutoff)
    if stale:
        svc.queue.drain()
    cas = svc.store.stale_pending_cas(cutoff, now)
    for ca_id in cas:
        svc.queue.create_ca_key(ca_id)
    if stale or cas:
        log.info(
            "sweeper: %d request(s) waiting too long, %d CA(s) stuck in CREATING: re-queued", stale, len(cas)
        )
    return stale + len(cas) + sweep_revocation(svc)
