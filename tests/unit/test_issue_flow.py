"""The issuance flow with the worker's functions run in-process, so that every in-between state
(RequestInProgress, redelivery, lost enqueue, abandoned work) can be observed deterministically.
Real Redis (the Lua scripts), the real Flask app, no Celery worker."""

from __future__ import annotations

import time

from pcaq.api.app import create_app
from pcaq.platform.queue import Queue
from pcaq.platform.settings import load
from pcaq.worker.sweeper import sweep
from pcaq.worker.tasks import drain_outbox, sign_batch
from tests.issue_flow import active_root, call, issue, member


def test_in_progress_then_issued_then_redelivery_changes_nothing(env):
    svc, client = env
    arn = active_root(svc, client)
    cert_arn = issue(client, arn)
    status, out = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert (status, out["__type"]) == (400, "RequestInProgressException")
    assert sign_batch(svc, [member(cert_arn)]) == 1
    _, first = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert first["Certificate"].startswith("-----BEGIN CERTIFICATE-----")
    # The same job delivered again (Redis redelivers after the visibility timeout): no second certificate.
    assert sign_batch(svc, [member(cert_arn)]) == 0
    _, again = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert again["Certificate"] == first["Certificate"]


def test_a_certificate_signed_right_after_the_import_comes_with_its_chain(env):
    # The API process read the CA's document while the root's own certificate was polled, before the
    # import, and GetCertificate may answer from a copy up to 2 s old: that copy has no CA
    # certificate, but a certificate the CA signed must still come with the chain.
    svc, client = env
    other = create_app(svc.settings).test_client()  # a second API process, with a cache of its own

    def poll_the_root_certificate(arn: str, root_cert_arn: str) -> None:
        body = {"CertificateAuthorityArn": arn, "CertificateArn": root_cert_arn}
        assert "CertificateChain" not in call(other, "GetCertificate", body)[1]  # a root's own: none

    arn = active_root(svc, client, before_import=poll_the_root_certificate)
    cert_arn = issue(client, arn)
    assert sign_batch(svc, [member(cert_arn)]) == 1
    body = {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn}
    _, out = call(other, "GetCertificate", body)
    _, ca = call(client, "GetCertificateAuthorityCertificate", {"CertificateAuthorityArn": arn})
    assert out["CertificateChain"] == ca["Certificate"]


def test_a_lost_enqueue_is_found_by_the_sweeper(env, monkeypatch):
    svc, client = env
    arn = active_root(svc, client)

    def broker_down(self):
        raise ConnectionError("broker down")

    monkeypatch.setattr(Queue, "drain", broker_down)
    svc.store.clear_drain_kick()
    cert_arn = issue(client, arn)  # the ARN is still handed out: the record is in the outbox
    assert svc.store.get_certificate(*member(cert_arn).split(":")).status == "PENDING"
    assert sweep(svc) == 0 and svc.queue.drains == 0  # not stale yet
    svc.clock = svc.store.clock = lambda: time.time() + 120
    assert sweep(svc) == 1 and svc.queue.drains == 1
    assert drain_outbox(svc) == 1
    assert svc.store.get_certificate(*member(cert_arn).split(":")).status == "ISSUED"


def test_work_that_keeps_dying_is_abandoned_after_max_attempts(env, monkeypatch):
    svc, client = env
    arn = active_root(svc, client)
    cert_arn = issue(client, arn)
    now = time.time()
    for attempt in range(3):  # claimed, then the worker dies before committing
        svc.store.clock = lambda a=attempt: now + a * 1000
        assert svc.store.claim([member(cert_arn)], f"dead-{attempt}")
    svc.store.clock = lambda: now + 10_000
    assert sign_batch(svc, [member(cert_arn)]) == 0
    status, out = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert (status, out["__type"]) == (400, "RequestFailedException") and "3 attempts" in out["message"]
    assert svc.store.pending_count() == 0


def test_idempotency_token_returns_the_same_arn_and_expires(env):
    svc, client = env
    arn = active_root(svc, client)
    first = issue(client, arn, token="tok")
    assert issue(client, arn, token="tok") == first
    keys = svc.store.r.keys("pcaq:idem:cert:*")
    assert len(keys) == 1 and 0 < svc.store.r.ttl(keys[0]) <= 300
    svc.store.r.delete(keys[0])  # what the TTL does after 5 minutes
    assert issue(client, arn, token="tok") != first


def test_redis_down_is_a_retryable_503(env):
    _, _ = env
    settings = load({"REDIS_URL": "redis://127.0.0.1:1/0"})
    client = create_app(settings).test_client()
    status, out = call(client, "ListCertificateAuthorities", {})
    assert (status, out["__type"]) == (503, "ServiceUnavailable")
    assert client.get("/readyz").status_code == 503 and client.get("/healthz").status_code == 200
