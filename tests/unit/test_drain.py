"""A drain signs batch after batch with its Redis round trips overlapped: the next claim is sent
before a batch is signed and the last commit's reply read after it (worker/tasks.py). Real Redis,
worker functions in-process."""

from __future__ import annotations

import dataclasses
import time

import pytest

from tests.signer import ExternalCA
from tests.unit.test_issue_flow import active_root, env, issue, member  # noqa: F401 - env is a fixture
from worker import tasks
from worker.tasks import _Issuers, drain_outbox


@pytest.fixture
def small_batches(env):  # noqa: F811
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


def test_issuers_are_reused_across_batches_while_the_ca_is_the_same(env):  # noqa: F811
    svc, client = env
    ca_id = active_root(svc, client).rsplit("/", 1)[1]
    first, doc = _Issuers(svc).get(ca_id, False)
    assert _Issuers(svc).get(ca_id, False)[0] is first  # a new batch, the same CA: the same Issuer
    assert _Issuers(svc).get(ca_id, True)[0] is not first  # self-signing: no certificate
    renewed = {**doc, "internal": {**doc["internal"], "certificate_pem": ExternalCA("Renewed Root").pem}}
    assert _Issuers(svc, {ca_id: renewed}).get(ca_id, False)[0] is not first
    changed = {
        **doc,
        "CertificateAuthorityConfiguration": {
            **doc["CertificateAuthorityConfiguration"],
            "SigningAlgorithm": "SHA384WITHECDSA",
        },
    }
    assert _Issuers(svc, {ca_id: changed}).get(ca_id, False)[0].signing_algorithm == "SHA384WITHECDSA"

