"""Re-queue work that was accepted but is not moving (invariant 1: nothing stays PENDING forever)."""

from __future__ import annotations

import logging

log = logging.getLogger("pcaq.sweeper")


def sweep(svc) -> int:
    """Re-enqueue stale certificate requests and CAs stuck in CREATING; returns how many were re-sent."""
    now = svc.clock()
    cutoff = now - svc.settings.stale_after
    # One bounded pass per sweep; what is left is found by the next one.
    members = svc.store.stale_pending_certificates(cutoff, now)
    for i in range(0, len(members), svc.settings.batch_size):
        svc.queue.issue(members[i : i + svc.settings.batch_size])
    resent = len(members)
    for ca_id in svc.store.stale_pending_cas(cutoff, now):
        svc.queue.create_ca_key(ca_id)
        resent += 1
    if resent:
        log.info("sweeper re-queued %d stale request(s)", resent)
    return resent
