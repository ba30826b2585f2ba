"""Urgent work (shared/revocation/urgent.py, worker/urgent.py): OCSP answers and CRLs an API process waits for
are taken by a drain before and during its batches, not queued behind them. Real Redis, worker
functions in-process."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp as x509_ocsp

from pcaq.platform.queue import Queue
from pcaq.records import keys
from pcaq.revocation import urgent
from pcaq.worker import tasks
from pcaq.worker import urgent as worker_urgent
from pcaq.worker.tasks import drain_outbox
from tests.revocation_flow import ENABLED, issue_leaf, make_root


def ocsp_job(flow, arn: str, serial_hex: str, wait: float = 30.0) -> urgent.UrgentJob:
    """A job asking for the answer about ``serial_hex`` of the CA ``arn`` (a SHA-1 CertID, as openssl)."""
    pem = flow.ok("GetCertificateAuthorityCertificate", {"CertificateAuthorityArn": arn})["Certificate"]
    cert = x509.load_pem_x509_certificate(pem.encode())
    own = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, cert, hashes.SHA1()).build()
    return urgent.UrgentJob(
        urgent.OCSP,
        arn.rsplit("/", 1)[1],
        uuid.uuid4().hex,
        flow.svc.clock() + wait,
        serial_hex,
        ("sha1", own.issuer_name_hash.hex(), own.issuer_key_hash.hex()),
    )


def answer_to(flow, job: urgent.UrgentJob) -> x509_ocsp.OCSPResponse | None:
    der = flow.svc.store.wait_reply(job.reply, 0.01)
    return None if der is None else x509_ocsp.load_der_ocsp_response(der)


# -- the list --------------------------------------------------------------------------------------


def test_asking_wakes_a_worker_only_when_no_drain_runs_and_the_list_is_bounded(flow):
    store = flow.svc.store
    signals = store.urgent_signals()
    assert store.ask_urgent(b"first", 3, 60) == 1  # no drain: the caller sends a wake-up
    assert signals.get_message(timeout=0.2) is None  # and no drain is told
    store.r.set(keys.DRAINING, "1", px=2000)
    assert store.ask_urgent(b"second", 3, 60) == 0  # a running drain takes it: told on the channel
    assert signals.get_message(timeout=5)["channel"] == keys.URGENT_SIGNAL.encode()
    assert store.ask_urgent(b"third", 3, 60) == 0
    assert store.ask_urgent(b"fourth", 3, 60) == -1  # three wait already: refused, not added
    assert 0 < store.r.ttl(keys.URGENT) <= 60
    assert store.take_urgent(2) == [b"first", b"second"]  # oldest first
    assert store.take_urgent(5) == [b"third"] and store.take_urgent(5) == []


def test_a_claim_takes_urgent_jobs_only_when_its_caller_says_it_serves_them(flow):
    arn, _ = make_root(flow, ENABLED)
    issue_leaf(flow, arn, signed=False)
    store = flow.svc.store
    store.ask_urgent(b"job", 10, 60)
    assert store.claim_ready("w1", 10).urgent == []  # a claim that serves none takes none
    assert store.send_claim_ready("w1", 10, "", 0).result().urgent == []
    assert store.send_claim_ready("w1", 10, "", 16).result().urgent == [b"job"]
    assert store.take_urgent(10) == []


def test_jobs_round_trip_and_anything_else_is_not_one():
    job = urgent.UrgentJob(urgent.OCSP, "ca", "tok", 12.5, "1f", ("sha1", "aa", "bb"))
    assert urgent.decode(job.encode()) == job
    crl_job = urgent.UrgentJob(urgent.CRL, "ca", "tok", 12.5)
    assert urgent.decode(crl_job.encode()) == crl_job
    for junk in (
        b"",
        b"not json",
        b"[1,2]",
        b'["mint","ca","t",1,"",["a","b","c"]]',
        b'["ocsp","ca","t",1,"",[]]',
    ):
        assert urgent.decode(junk) is None


# -- the worker ------------------------------------------------------------------------------------


def test_a_drain_serves_the_jobs_its_claim_took_before_it_signs_the_batch(flow, monkeypatch):
    arn, _ = make_root(flow, ENABLED)
    _, serial = issue_leaf(flow, arn)
    pending = [issue_leaf(flow, arn, signed=False)[0] for _ in range(3)]
    job = ocsp_job(flow, arn, serial)
    assert flow.svc.store.ask_urgent(job.encode(), 10, 60) == 1
    answered_before_batch = []
    sign_all = tasks._sign_all

    def batch(svc, claimed, *rest, **named):
        answered_before_batch.append(svc.store.r.exists(keys.reply(job.reply)) == 1)
        return sign_all(svc, claimed, *rest, **named)

    monkeypatch.setattr(tasks, "_sign_all", batch)
    assert drain_outbox(flow.svc) == len(pending)
    assert answered_before_batch[0] is True
    answer = answer_to(flow, job)
    assert answer.certificate_status is x509_ocsp.OCSPCertStatus.GOOD and answer.serial_number == int(
        serial, 16
    )
    assert flow.svc.store.take_urgent(10) == []


def test_a_job_that_comes_while_a_batch_is_signed_is_served_before_the_batch_ends(flow, monkeypatch):
    flow.svc.settings = flow.svc.store.settings = dataclasses.replace(flow.svc.settings, batch_size=8)
    arn, _ = make_root(flow, ENABLED)
    _, serial = issue_leaf(flow, arn)
    for _ in range(5):
        issue_leaf(flow, arn, signed=False)
    job = ocsp_job(flow, arn, serial)
    monkeypatch.setattr(tasks, "Watch", lambda svc: worker_urgent.Watch(svc, 0.0))  # after every signature
    sign, signed, answered = tasks._sign, [], []

    def one(svc, *args):
        if len(signed) == 1:  # the job arrives while the second signature is made
            svc.store.ask_urgent(job.encode(), 10, 60)
        answered.append(svc.store.r.exists(keys.reply(job.reply)) == 1)
        signed.append(1)
        return sign(svc, *args)

    monkeypatch.setattr(tasks, "_sign", one)
    assert drain_outbox(flow.svc) == 5
    # Told on the channel, taken and served before the third signature (or the fourth, if the word
    # is slow to come): before the batch ends either way.
    assert answered[:2] == [False, False] and answered[3:] == [True, True]
    assert answer_to(flow, job).certificate_status is x509_ocsp.OCSPCertStatus.GOOD


def test_a_job_nobody_waits_for_any_more_is_dropped_and_one_that_fails_stops_nothing(flow, monkeypatch):
    arn, _ = make_root(flow, ENABLED)
    _, serial = issue_leaf(flow, arn)
    stale = ocsp_job(flow, arn, serial, wait=-1.0)
    failing = dataclasses.replace(ocsp_job(flow, arn, serial), serial_hex="bad")
    stranger = dataclasses.replace(ocsp_job(flow, arn, serial), ca_id="no-such-ca")
    good = ocsp_job(flow, arn, serial)
    sign_ocsp = worker_urgent.sign_ocsp

    def fails_on_bad(svc, ca_id, serial_hex, *rest):
        if serial_hex == "bad":
            raise RuntimeError("the vault is gone")
        return sign_ocsp(svc, ca_id, serial_hex, *rest)

    monkeypatch.setattr(worker_urgent, "sign_ocsp", fails_on_bad)
    jobs = [stale.encode(), b"junk", failing.encode(), stranger.encode(), good.encode()]
    assert worker_urgent.serve(flow.svc, jobs) == 2
    assert answer_to(flow, stale) is None and answer_to(flow, failing) is None
    assert answer_to(flow, stranger).response_status is x509_ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert answer_to(flow, good).certificate_status is x509_ocsp.OCSPCertStatus.GOOD


def test_a_wake_up_serves_a_bounded_number_then_asks_for_another(flow):
    arn, _ = make_root(flow, ENABLED)
    _, serial = issue_leaf(flow, arn)
    jobs = [ocsp_job(flow, arn, serial) for _ in range(5)]
    for job in jobs:
        flow.svc.store.ask_urgent(job.encode(), 10, 60)
    flow.svc.queue.calls.clear()
    assert worker_urgent.serve_waiting(flow.svc, most=2) == 2
    assert flow.svc.queue.calls == [("serve_urgent",)]  # more were waiting: another wake-up
    assert worker_urgent.serve_waiting(flow.svc) == 3
    assert flow.svc.queue.calls == [("serve_urgent",)] and flow.svc.store.take_urgent(10) == []
    assert all(answer_to(flow, job) is not None for job in jobs)


# -- the API's side --------------------------------------------------------------------------------


@pytest.fixture
def inline_wake_up(flow, monkeypatch):
    """The API's wake-up message runs the worker's side at once."""
    monkeypatch.setattr(Queue, "serve_urgent", lambda self: worker_urgent.serve_waiting(flow.svc))


def test_a_crl_reader_gets_the_crl_a_worker_builds_for_it(flow, inline_wake_up):
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    resp = flow.client.get(f"/crl/{ca_id}.crl")  # none was built yet: the reader waits for one
    assert resp.status_code == 200
    assert (
        x509.load_der_x509_crl(resp.data).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        == 1
    )
    assert flow.svc.store.take_urgent(10) == []


def test_when_too_many_wait_the_reader_is_answered_at_once(flow, monkeypatch):
    arn, cert_arn = make_root(flow, ENABLED)
    monkeypatch.setattr(urgent, "MAX_WAITING", 0)
    woken = []
    monkeypatch.setattr(Queue, "serve_urgent", lambda self: woken.append(1))
    ca_id = arn.rsplit("/", 1)[1]
    resp = flow.client.get(f"/crl/{ca_id}.crl")
    assert resp.status_code == 503 and woken == []  # nothing built it, nobody was asked
    assert flow.svc.store.take_urgent(10) == []


def test_a_subscription_that_fails_does_not_stop_the_batch_and_is_made_again(flow, monkeypatch):
    arn, _ = make_root(flow, ENABLED)
    pending = [issue_leaf(flow, arn, signed=False)[0] for _ in range(3)]
    checks = []

    class Broken:
        def get_message(self, timeout=0.0):
            checks.append(timeout)
            if len(checks) > 1:  # (the first check, as the drain starts, finds nothing)
                raise ConnectionError("Redis went away for a moment")

        def close(self):
            checks.append("closed")

    monkeypatch.setattr(flow.svc.store, "urgent_signals", Broken)
    monkeypatch.setattr(tasks, "Watch", lambda svc: worker_urgent.Watch(svc, 0.0))
    assert drain_outbox(flow.svc) == len(pending)
    assert checks == [0.0, 0.0, "closed"]  # one failed check, then no more in this drain
    monkeypatch.undo()
    job = ocsp_job(flow, arn, issue_leaf(flow, arn)[1])
    for _ in range(3):
        issue_leaf(flow, arn, signed=False)
    monkeypatch.setattr(tasks, "Watch", lambda svc: worker_urgent.Watch(svc, 0.0))
    sign, signed = tasks._sign, []

    def one(svc, *args):
        if len(signed) == 1:
            svc.store.ask_urgent(job.encode(), 10, 60)
        signed.append(1)
        return sign(svc, *args)

    monkeypatch.setattr(tasks, "_sign", one)
    take = flow.svc.store.send_claim_ready  # only the watch, subscribed again, can take it
    monkeypatch.setattr(flow.svc.store, "send_claim_ready", lambda *a, **k: take(*a[:3], 0))
    assert drain_outbox(flow.svc) == 3
    assert answer_to(flow, job).certificate_status is x509_ocsp.OCSPCertStatus.GOOD
