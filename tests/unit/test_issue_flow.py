"""The issuance flow with the worker's functions run in-process, so that every in-between state
(RequestInProgress, redelivery, lost enqueue, abandoned work) can be observed deterministically.
Real Redis (the Lua scripts), the real Flask app, no Celery worker."""

from __future__ import annotations

import json
import time
from unittest.mock import ANY

from cryptography import x509

from pcaq.api.app import create_app
from pcaq.platform.queue import DRAIN_TASK, Queue
from pcaq.platform.settings import load
from pcaq.records.pending import VERSION
from pcaq.worker.sweeper import sweep
from pcaq.worker.tasks import drain_outbox
from tests.issue_flow import active_root, call, issue, member
from tests.legacy_requests import LEGACY_FULL, LEGACY_RID, legacy_full_request
from tests.support import wakeups_failed


def test_in_progress_then_issued_then_redelivery_changes_nothing(env):
    svc, client = env
    arn = active_root(svc, client)
    cert_arn = issue(client, arn)
    status, out = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert (status, out["__type"]) == (400, "RequestInProgressException")
    assert drain_outbox(svc) == 1
    _, first = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert first["Certificate"].startswith("-----BEGIN CERTIFICATE-----")
    # The drain message delivered again (Redis redelivers after the visibility timeout): no second certificate.
    assert drain_outbox(svc) == 0
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
    assert drain_outbox(svc) == 1
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
    before = wakeups_failed(DRAIN_TASK)
    cert_arn = issue(client, arn)  # the ARN is still handed out: the record is in the outbox
    assert wakeups_failed(DRAIN_TASK) == before + 1  # counted for /metrics
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
        assert svc.store.claim_ready(f"dead-{attempt}", 10) == [(member(cert_arn), ANY)]
    svc.store.clock = lambda: now + 10_000
    assert drain_outbox(svc) == 0
    status, out = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert (status, out["__type"]) == (400, "RequestFailedException") and "3 attempts" in out["message"]
    assert svc.store.pending_count() == 0


def test_a_request_queued_before_the_upgrade_is_signed(env):
    # A request the previous version encoded (no version field) and left in Redis: the drain signs it.
    svc, client = env
    arn = active_root(svc, client)
    ca_id, account = arn.rsplit("/", 1)[1], arn.split(":")[4]
    assert svc.store.submit_certificate(ca_id, account, "a1", LEGACY_FULL, None)
    assert drain_outbox(svc) == 1
    cert_arn = f"{arn}/certificate/a1"
    status, out = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert status == 200, out
    cert = x509.load_pem_x509_certificate(out["Certificate"].encode())
    wanted = legacy_full_request()
    csr = x509.load_der_x509_csr(wanted.csr_der)
    assert cert.public_key() == csr.public_key() and cert.serial_number == 0xA1
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (wanted.not_before, wanted.not_after)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    [entry] = [
        e
        for e in svc.store.read_audit(ca_id)
        if e[1]["event"] == "CertificateIssued" and "/a1" in e[1]["details"]
    ]
    assert entry[1]["request_id"] == LEGACY_RID


def test_an_unreadable_request_fails_with_its_reason_and_the_rest_of_its_batch_is_signed(env):
    svc, client = env
    arn = active_root(svc, client)
    ca_id, account = arn.rsplit("/", 1)[1], arn.split(":")[4]
    good = issue(client, arn)
    newer = json.dumps({**json.loads(LEGACY_FULL), "v": VERSION + 1}).encode()
    assert svc.store.submit_certificate(ca_id, account, "b1", newer, None)
    assert svc.store.submit_certificate(ca_id, account, "b2", b'{"csr":', None)
    assert drain_outbox(svc) == 3  # one batch: nothing is left leased for a retry
    assert svc.store.get_certificate(*member(good).split(":")).status == "ISSUED"
    for serial, reason in (("b1", f"version {VERSION + 1}, newer"), ("b2", "is corrupt")):
        body = {"CertificateAuthorityArn": arn, "CertificateArn": f"{arn}/certificate/{serial}"}
        status, out = call(client, "GetCertificate", body)
        assert (status, out["__type"]) == (400, "RequestFailedException") and reason in out["message"]
    assert svc.store.metrics_snapshot().failures == {"UnreadableRequest": 2}
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
