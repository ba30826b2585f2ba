"""A drain signs batch after batch with its Redis round trips overlapped: the next claim is sent
before a batch is signed and the last commit's reply read after it (worker/tasks.py). Real Redis,
worker functions in-process."""

from __future__ import annotations

import dataclasses
import time

import pytest

from pcaq.records import keys
from pcaq.worker import tasks
from pcaq.worker.tasks import _Issuers, drain_outbox
from tests.issue_flow import active_root, issue, member
from tests.signer import ExternalCA


@pytest.fixture
def small_batches(env):
    svc, client = env
    svc.settings = svc.store.settings = dataclasses.replace(svc.settings, batch_size=2)
    return svc, client


def status(svc, cert_arn: str) -> str:
    return svc.store.get_certificate(*member(cert_arn).split(":")).status


def in_use(svc) -> int:
    return len(svc.store.r.connection_pool._in_use_connections)


def test_a_drain_signs_every_batch_and_holds_no_connection_after(small_batches):
    svc, client = small_batches
    ca_arn = active_root(svc, client)
    arns = [issue(client, ca_arn) for _ in range(5)]  # three batches of two
    drains = svc.queue.drains
    assert drain_outbox(svc) == 5
    assert [status(svc, a) for a in arns] == ["ISSUED"] * 5
    assert svc.store.pending_count() == 0 and in_use(svc) == 0
    assert svc.queue.drains == drains  # it ran out of work, not out of time


def test_a_drain_that_fails_mid_way_still_commits_what_it_signed(small_batches, monkeypatch):
    svc, client = small_batches
    ca_arn = active_root(svc, client)
    arns = [issue(client, ca_arn) for _ in range(4)]
    sign_all, batches = tasks._sign_all, []

    def second_batch_fails(*args, **kwargs):
        batches.append(1)
        if len(batches) == 2:
            raise RuntimeError("the signing thread died")
        return sign_all(*args, **kwargs)

    monkeypatch.setattr(tasks, "_sign_all", second_batch_fails)
    with pytest.raises(RuntimeError):
        drain_outbox(svc)
    statuses = sorted(status(svc, a) for a in arns)  # (requests submitted in one millisecond: any order)
    assert statuses == ["ISSUED", "ISSUED", "PENDING", "PENDING"]
    assert in_use(svc) == 0
    assert svc.store.ready_count() == 0  # the failed batch is still leased ...
    svc.store.clock = lambda: time.time() + svc.settings.lease_seconds + 1
    monkeypatch.setattr(tasks, "_sign_all", sign_all)
    assert drain_outbox(svc) == 2  # ... until its lease ends
    assert [status(svc, a) for a in arns] == ["ISSUED"] * 4


def test_issuers_are_reused_across_batches_while_the_ca_is_the_same(env):
    svc, client = env
    ca_id = active_root(svc, client).rsplit("/", 1)[1]
    first, ca = _Issuers(svc).get(ca_id, False)
    assert _Issuers(svc).get(ca_id, False)[0] is first  # a new batch, the same CA: the same Issuer
    assert _Issuers(svc).get(ca_id, True)[0] is not first  # self-signing: no certificate
    renewed = dataclasses.replace(ca, certificate_pem=ExternalCA("Renewed Root").pem)
    assert _Issuers(svc, {ca_id: renewed}).get(ca_id, False)[0] is not first
    changed = dataclasses.replace(ca, signing_algorithm="SHA384WITHECDSA")
    assert _Issuers(svc, {ca_id: changed}).get(ca_id, False)[0].signing_algorithm == "SHA384WITHECDSA"


def test_a_drain_lingers_after_a_claim_that_was_not_full_and_takes_what_came_meanwhile(
    small_batches, monkeypatch
):
    svc, client = small_batches
    svc.settings = dataclasses.replace(svc.settings, batch_size=4, drain_linger_ms=50)
    ca_arn = active_root(svc, client)
    first = issue(client, ca_arn)
    arriving: list[str] = []
    sign_all, batches, pauses = tasks._sign_all, [], []

    def counted(svc_, claimed, *rest, **named):
        batches.append(len(claimed))
        return sign_all(svc_, claimed, *rest, **named)

    def pause(seconds):  # the linger: three requests arrive while the drain waits
        pauses.append(seconds)
        if len(pauses) == 1:
            arriving.extend(issue(client, ca_arn) for _ in range(3))

    monkeypatch.setattr(tasks, "_sign_all", counted)
    monkeypatch.setattr(tasks.time, "sleep", pause)
    assert drain_outbox(svc) == 4
    assert batches == [1, 3]  # the three that came during the wait were one batch, not three
    assert len(pauses) == 2 and all(0 < p <= 0.05 for p in pauses)
    assert [status(svc, a) for a in [first, *arriving]] == ["ISSUED"] * 4


def test_full_batches_are_claimed_back_to_back_without_lingering(small_batches, monkeypatch):
    svc, client = small_batches
    svc.settings = dataclasses.replace(svc.settings, drain_linger_ms=50)
    ca_arn = active_root(svc, client)
    for _ in range(4):
        issue(client, ca_arn)
    pauses = []
    monkeypatch.setattr(tasks.time, "sleep", pauses.append)
    assert drain_outbox(svc) == 4
    assert pauses == []  # two full batches, then an empty claim: nothing to wait for


def test_a_drain_with_a_backlog_asks_for_one_helper_which_clears_its_mark(small_batches):
    svc, client = small_batches
    ca_arn = active_root(svc, client)
    for _ in range(6):
        issue(client, ca_arn)
    assert drain_outbox(svc) == 6
    assert len(svc.queue.helpers) == 1  # full claims, but one helper at a time
    assert svc.store.r.get(keys.DRAIN_HELPER) == svc.queue.helpers[0].encode()
    assert drain_outbox(svc, helper=svc.queue.helpers[0]) == 0  # the helper starts: nothing left
    assert svc.store.r.get(keys.DRAIN_HELPER) is None
