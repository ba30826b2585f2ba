"""Re-queue work that was accepted but is not moving (invariant 1: nothing stays PENDING forever)."""

from __future__ import annotations

import logging

log = logging.getLogger("pcaq.sweeper")


def sweep(svc) -> int:
    """Re-enqueue stale certificate requests and CAs stuck in CREATING; returns how many were re-sent."""
    cutoff = svc.clock() - svc.settings.stale_after
    resent = 0
    while True:
        members = svc.store.stale_pending_certificates(cutoff, limit=1000)
        if not members:
            break
        for i in range(0, len(members), svc.settings.batch_size):
            svc.queue.issue(members[i : i + svc.settings.batch_size])
        resent += len(members)
    for ca_id in svc.store.stale_pending_cas(cutoff):
        svc.queue.create_ca_key(ca_id)
        resent += 1
    if resent:
        log.info("sweeper re-queued %d stale request(s)", resent)
    return resent
