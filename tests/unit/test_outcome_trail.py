"""A request's outcome, its audit entry and its metrics are written in one atomic step, with the request
id of the IssueCertificate call that asked for it (shared/records/scripts.py: COMMIT and the claims).

The record-level tests run the scripts on a real Redis and on fakeredis (the embedded Redis of a
machine without redis-server); the flow tests run the worker's functions in-process.
"""

from __future__ import annotations

import base64
import json
import logging
from unittest.mock import ANY

import fakeredis
import pytest
import redis

from pcaq.ca import audit_trail
from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.audit_trail import AuditTrail
from pcaq.platform.settings import load
from pcaq.records import Result, Store, member_of
from pcaq.worker.tasks import drain_outbox
from tests.issue_flow import active_root, leaf_csr, member
from tests.support import Clock

ACCOUNT = "111122223333"
CA = "0b5c3a1e-1111-4222-8333-444455556666"
CA_ARN = f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/{CA}"
T0 = 1_700_000_000.0
SETTINGS = load({"PCAQ_LEASE_SECONDS": "30", "PCAQ_MAX_ATTEMPTS": "2"})


@pytest.fixture(params=["redis", "fakeredis"])
def store(request, redis_base_url):
    if request.param == "redis":
        client = redis.Redis.from_url(f"{redis_base_url}/13")
    else:
        client = fakeredis.FakeRedis()
    client.flushdb()
    yield Store(client, SETTINGS, clock=Clock(T0))
    client.flushdb()
    client.close()


def _trail(store: Store) -> list:
    return AuditTrail(store).entries(CA_ARN)


def _submitted(store: Store, serial: str, request_id: str = "rid-1") -> str:
    request = json.dumps({"csr": "", "rid": request_id}).encode()
    assert store.submit_certificate(CA, ACCOUNT, serial, request, None)
    return member_of(CA, serial)


def test_a_commit_appends_the_audit_entry_of_each_result_that_takes_and_no_other(store):
    mine, theirs = _submitted(store, "a1"), _submitted(store, "a2")
    assert [m for m, _ in store.claim_ready("w1", 1)] == [mine]  # same age: in member order
    assert [m for m, _ in store.claim_ready("w2", 1)] == [theirs]
    now = store.clock()

    def result(m: str, serial: str, issued: bool, payload: bytes, rid: str) -> Result:
        fields = audit_trail.signing_fields(parse_ca_arn(CA_ARN), serial, issued, payload, rid, now)
        return Result(m, issued, payload, "" if issued else "MalformedCSR", fields)

    # w1's commit carries a result for a request leased to w2: that one does not take, and leaves no entry.
    took = store.commit(
        "w1", [result(mine, "a1", True, b"DER", "rid-a1"), result(theirs, "a2", True, b"X", "")]
    )
    assert took == 1
    assert store.commit("w2", [result(theirs, "a2", False, b"The CSR is bad.", "rid-a2")]) == 1
    assert store.commit("w1", [result(mine, "a1", True, b"DER again", "rid-a1")]) == 0  # redelivered

    entries = _trail(store)
    assert [(e.event, e.who, e.account, e.request_id, e.ca) for e in entries] == [
        ("CertificateIssued", "pcaq-worker", ACCOUNT, "rid-a1", CA_ARN),
        ("CertificateRequestFailed", "pcaq-worker", ACCOUNT, "rid-a2", CA_ARN),
    ]
    assert entries[0].details == {"CertificateArn": f"{CA_ARN}/certificate/a1"}
    assert entries[1].details == {"CertificateArn": f"{CA_ARN}/certificate/a2", "Reason": "The CSR is bad."}
    assert entries[0].when == pytest.approx(T0)
    snap = store.metrics_snapshot()
    assert snap.issued == 1 and snap.failures == {"MalformedCSR": 1}


def test_a_request_given_up_after_max_attempts_is_counted_and_audited_by_the_claim(store):
    store.create_ca(CA, {"Arn": CA_ARN, "CreatedAt": T0, "tags": []}, ACCOUNT, None)
    m = _submitted(store, "a1", request_id="rid-abandoned")
    orphan = _submitted(store, "b1")
    store.r.delete(f"pcaq:cert:{orphan}")  # gone: a claim just drops it from the outbox
    for attempt in range(SETTINGS.max_attempts):
        assert store.claim_ready(f"w{attempt}", 10) == [
            (m, json.dumps({"csr": "", "rid": "rid-abandoned"}).encode())
        ]
        store.clock.now += SETTINGS.lease_seconds + 1

    claimed = store.claim_ready("last", 10)
    assert claimed == [] and claimed.abandoned == [(m, "rid-abandoned")]
    record = store.get_certificate(CA, "a1")
    assert record.status == "FAILED" and record.failure == "Issuance was abandoned after 2 attempts."
    assert store.metrics_snapshot().failures == {"Abandoned": 1}
    [entry] = _trail(store)
    assert (entry.event, entry.who, entry.account, entry.request_id, entry.ca) == (
        "CertificateRequestFailed",
        "pcaq-worker",
        ACCOUNT,
        "rid-abandoned",
        CA_ARN,
    )
    assert entry.details == {
        "CertificateArn": f"{CA_ARN}/certificate/a1",
        "Reason": "Issuance was abandoned after 2 attempts.",
    }
    assert entry.when == pytest.approx(store.clock())
    assert store.claim_ready("again", 10).abandoned == []  # given up once only


def test_an_abandoned_request_without_ca_or_request_id_is_still_counted(store):
    assert store.submit_certificate(CA, ACCOUNT, "a1", b"not json", None)
    m = member_of(CA, "a1")
    for attempt in range(SETTINGS.max_attempts + 1):
        claimed = store.claim_ready(f"w{attempt}", 10)
        store.clock.now += SETTINGS.lease_seconds + 1
    assert claimed.abandoned == [(m, "-")]
    assert store.metrics_snapshot().failures == {"Abandoned": 1}
    assert store.read_audit(CA) == []  # no CA document: no ARN to write an entry about


# -- the worker ---------------------------------------------------------------------------------------


def _issue(client, ca_arn: str, csr: str | None = None) -> tuple[str, str]:
    """IssueCertificate through the app: the certificate ARN and the x-amzn-RequestId answered."""
    body = {
        "CertificateAuthorityArn": ca_arn,
        "Csr": csr or leaf_csr(),
        "SigningAlgorithm": "SHA256WITHECDSA",
        "Validity": {"Value": 7, "Type": "DAYS"},
    }
    resp = client.post("/", data=json.dumps(body), headers={"X-Amz-Target": "ACMPrivateCA.IssueCertificate"})
    assert resp.status_code == 200, resp.data
    return json.loads(resp.data)["CertificateArn"], resp.headers["x-amzn-RequestId"]


def _bad_signature_csr() -> str:
    pem = base64.b64decode(leaf_csr()).decode()
    lines = pem.strip().splitlines()
    der = bytearray(base64.b64decode("".join(lines[1:-1])))
    der[-1] ^= 0x01  # parses (the API accepts it); the worker's signature check refuses it
    body = base64.encodebytes(bytes(der)).decode()
    return base64.b64encode(f"{lines[0]}\n{body}{lines[-1]}\n".encode()).decode()


def _worker_entries(svc, ca_arn: str, since: int) -> list:
    return [e for e in AuditTrail(svc.store).entries(ca_arn)[since:] if e.who == "pcaq-worker"]


def test_worker_entries_and_log_lines_carry_the_request_id_of_issue_certificate(env, caplog):
    svc, client = env
    ca_arn = active_root(svc, client)
    since = len(AuditTrail(svc.store).entries(ca_arn))
    good_arn, good_rid = _issue(client, ca_arn)
    bad_arn, bad_rid = _issue(client, ca_arn, _bad_signature_csr())
    with caplog.at_level(logging.INFO, logger="pcaq.worker"):
        assert drain_outbox(svc) == 2

    entries = _worker_entries(svc, ca_arn, since)
    # In either order: two requests submitted in the same millisecond are signed in the order of their ids.
    assert sorted((e.event, e.request_id, e.details["CertificateArn"]) for e in entries) == [
        ("CertificateIssued", good_rid, good_arn),
        ("CertificateRequestFailed", bad_rid, bad_arn),
    ]
    refused = [r for r in caplog.records if getattr(r, "request_id", None) == bad_rid]
    assert refused and refused[0].reason == "MalformedCSR" and bad_rid in refused[0].getMessage()


def test_a_worker_killed_right_after_its_commit_leaves_the_audit_entry_and_the_count(env, monkeypatch):
    svc, client = env
    ca_arn = active_root(svc, client)
    issued_before = svc.store.metrics_snapshot().issued
    cert_arn, request_id = _issue(client, ca_arn)
    send_commit = type(svc.store).send_commit

    def commit_then_die(self, *args, **kwargs):
        send_commit(self, *args, **kwargs).result()
        raise SystemExit("SIGKILL")  # nothing of this worker runs after the commit's answer

    monkeypatch.setattr(type(svc.store), "send_commit", commit_then_die)
    with pytest.raises(SystemExit):
        drain_outbox(svc)

    assert svc.store.get_certificate(*member(cert_arn).split(":")).status == "ISSUED"
    [entry] = [
        e
        for e in AuditTrail(svc.store).entries(ca_arn)
        if e.details.get("CertificateArn") == cert_arn and e.who == "pcaq-worker"
    ]
    assert entry.event == "CertificateIssued" and entry.request_id == request_id
    assert svc.store.metrics_snapshot().issued == issued_before + 1


def test_a_request_abandoned_by_a_worker_claim_is_logged_audited_and_counted(env, caplog):
    svc, client = env  # PCAQ_MAX_ATTEMPTS=3
    ca_arn = active_root(svc, client)
    cert_arn, request_id = _issue(client, ca_arn)
    now = svc.store.clock()
    for attempt in range(3):  # claimed, then the worker dies before committing
        svc.store.clock = lambda a=attempt: now + a * 1000
        assert svc.store.claim_ready(f"dead-{attempt}", 10) == [(member(cert_arn), ANY)]
    svc.store.clock = lambda: now + 10_000
    with caplog.at_level(logging.INFO, logger="pcaq.worker"):
        assert drain_outbox(svc) == 0

    assert svc.store.metrics_snapshot().failures == {"Abandoned": 1}
    [entry] = [
        e
        for e in AuditTrail(svc.store).entries(ca_arn)
        if e.details.get("CertificateArn") == cert_arn and e.who == "pcaq-worker"
    ]
    assert (entry.event, entry.request_id) == ("CertificateRequestFailed", request_id)
    assert entry.details["Reason"] == "Issuance was abandoned after 3 attempts."
    lines = [r for r in caplog.records if getattr(r, "request_id", None) == request_id]
    assert lines and lines[0].reason == "Abandoned" and "abandoned" in lines[0].getMessage()
