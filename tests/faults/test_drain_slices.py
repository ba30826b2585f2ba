"""A drain task hands back what it has not taken after one slice of time, so a worker asked to stop
(warm shutdown) is never held up by a steady load: the rest goes to a new drain message."""

from __future__ import annotations

import pytest

from pcaq.worker.tasks import drain_outbox
from tests.faults.harness import member_of_arn
from tests.issue_flow import active_root, issue

pytestmark = pytest.mark.faults


def test_a_drain_stops_after_its_slice_and_asks_for_another(env):
    svc, client = env
    ca_arn = active_root(svc, client)
    members = [member_of_arn(issue(client, ca_arn)) for _ in range(3)]
    drains = svc.queue.drains

    assert drain_outbox(svc, slice_seconds=0) == 0  # its slice is over before it takes anything
    assert svc.queue.drains == drains + 1, "the rest must be handed to a new drain message"
    assert [svc.store.get_certificate(*m.split(":")).status for m in members] == ["PENDING"] * 3
    assert svc.store.ready_count() == 3  # not leased: the next drain takes them at once

    assert drain_outbox(svc) == 3
    assert [svc.store.get_certificate(*m.split(":")).status for m in members] == ["ISSUED"] * 3
