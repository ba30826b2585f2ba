"""A drain message delivered twice yields one certificate per ARN, not two (invariant 2).

Redis redelivers an unacknowledged drain message: to a second worker while the first still runs it
(held past the visibility timeout), or after the worker that held it died mid-batch (acks_late with
reject_on_worker_lost). Either way two drains meet on one outbox: only what a drain's claim leased to
it can be committed by it, and a drain whose lease was taken over writes nothing.

Deterministic: the worker's drain runs in-process on a real Redis, drains are held inside their
signatures until the test lets them go, and a late drain's clock is moved past the lease.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pcaq.pki import certificates
from pcaq.records import Store
from pcaq.worker.services import Services
from pcaq.worker.tasks import drain_outbox
from tests.faults.harness import member_of_arn
from tests.issue_flow import active_root, call, issue

pytestmark = pytest.mark.faults


class Killed(BaseException):
    """What SIGKILL is to a drain: it stops where it is, and no exception handler of its runs."""


class Held:
    """Patches certificate building so that drains running in named threads stop inside a signature
    until the test lets them go; records the DER every thread built."""

    def __init__(self, monkeypatch, names: tuple[str, ...], stop_at: int = 1):
        self.names, self.stop_at = names, stop_at  # stop inside the stop_at-th signature of each
        self.signing = {name: threading.Event() for name in names}
        self.let_go = {name: threading.Event() for name in names}
        self.kill = {name: False for name in names}  # let go by being killed
        self.made: dict[str, list[bytes]] = {}
        self.threads: list[threading.Thread] = []
        self.took: dict[str, int | BaseException] = {}
        build = certificates.build_certificate

        def held_build(request, issuer):
            name = threading.current_thread().name
            made = self.made.setdefault(name, [])
            if name in self.signing and len(made) + 1 == self.stop_at:
                self.signing[name].set()
                assert self.let_go[name].wait(30)
                if self.kill[name]:
                    raise Killed(name)
            cert = build(request, issuer)
            made.append(cert.public_bytes(serialization.Encoding.DER))
            return cert

        monkeypatch.setattr(certificates, "build_certificate", held_build)

    def start(self, name: str, services: Services) -> threading.Thread:
        """Run a drain in a thread of this name; returns once it is held inside a signature."""

        def run() -> None:
            try:
                self.took[name] = drain_outbox(services)
            except Killed as exc:
                self.took[name] = exc

        thread = threading.Thread(target=run, name=name)
        self.threads.append(thread)
        thread.start()
        assert self.signing[name].wait(10), f"{name} never started signing"
        return thread

    def release(self, name: str, kill: bool = False) -> None:
        """Let a held drain go on (or die where it is held) and wait for it to end."""
        self.kill[name] = kill
        self.let_go[name].set()
        thread = next(t for t in self.threads if t.name == name)
        thread.join(30)
        assert not thread.is_alive(), f"{name} did not end"

    def close(self) -> None:
        for event in self.let_go.values():
            event.set()
        for thread in self.threads:
            thread.join(30)


def _later(svc, seconds: float) -> Services:
    """The services of a worker whose clock reads ``seconds`` later (a lease has ended for it)."""
    later = Store(svc.store.r, svc.settings, clock=lambda: time.time() + seconds)
    return Services(svc.settings, later, svc.queue, svc.vault, svc.authorities)


def _assert_once_each(svc, client, ca_arn: str, cert_arns: list[str], issued_before: int) -> list[bytes]:
    """Each ARN has one certificate, handed out as stored, with its own serial; one issuance each in
    the audit trail and the metrics. Returns the stored DER, in the order of ``cert_arns``."""
    stored = []
    for cert_arn in cert_arns:
        record = svc.store.get_certificate(*member_of_arn(cert_arn).split(":"))
        assert record.status == "ISSUED", (cert_arn, record)
        body = {"CertificateAuthorityArn": ca_arn, "CertificateArn": cert_arn}
        status, out = call(client, "GetCertificate", body)
        assert status == 200, out
        handed_out = x509.load_pem_x509_certificate(out["Certificate"].encode())
        assert handed_out.public_bytes(serialization.Encoding.DER) == record.certificate_der
        assert handed_out.serial_number == int(cert_arn.rsplit("/", 1)[1], 16)
        stored.append(record.certificate_der)
    serials = [x509.load_der_x509_certificate(der).serial_number for der in stored]
    assert len(set(serials)) == len(cert_arns)
    trail = [
        e for e in svc.store.read_audit(ca_arn.rsplit("/", 1)[1]) if e[1]["event"] == "CertificateIssued"
    ]
    issued_arns = Counter(json.loads(e[1]["details"])["CertificateArn"] for e in trail)
    assert all(issued_arns[arn] == 1 for arn in cert_arns), issued_arns
    assert svc.store.metrics_snapshot().issued == issued_before + len(cert_arns)
    assert svc.store.pending_count() == 0
    return stored


def test_two_deliveries_of_a_drain_racing_on_one_outbox_sign_each_request_once(env, monkeypatch):
    svc, client = env
    svc.settings = svc.store.settings = dataclasses.replace(svc.settings, batch_size=2)
    ca_arn = active_root(svc, client)
    issued_before = svc.store.metrics_snapshot().issued
    cert_arns = [issue(client, ca_arn) for _ in range(6)]
    held = Held(monkeypatch, ("first", "second"))
    try:
        # The first delivery leases a batch and the next one (sent ahead), and is held signing; the
        # second delivery leases what is left and is held too: both are inside the outbox at once.
        held.start("first", svc)
        held.start("second", svc)
        held.release("first")
        held.release("second")
    finally:
        held.close()
    assert held.took == {"first": 4, "second": 2}
    # A third delivery, after both: nothing is left to sign.
    assert drain_outbox(svc) == 0 and "MainThread" not in held.made

    stored = _assert_once_each(svc, client, ca_arn, cert_arns, issued_before)
    built = held.made["first"] + held.made["second"]
    assert sorted(built) == sorted(stored)  # each request was signed once, by one of the two


def test_a_drain_redelivered_while_its_first_run_still_signs_writes_one_certificate_per_arn(env, monkeypatch):
    svc, client = env
    ca_arn = active_root(svc, client)
    issued_before = svc.store.metrics_snapshot().issued
    cert_arns = [issue(client, ca_arn) for _ in range(3)]
    held = Held(monkeypatch, ("first-run", "late-run"))
    try:
        held.start("first-run", svc)

        # Delivered again while the first run's lease holds: the second run claims and signs nothing.
        assert drain_outbox(svc) == 0
        assert "MainThread" not in held.made

        # Delivered again after the lease ended (the visibility timeout is far longer than a lease):
        # this run takes the requests over; while it signs, the first run finishes and commits, but
        # writes nothing: the requests are no longer leased to it.
        held.start("late-run", _later(svc, svc.settings.lease_seconds + 1))
        held.release("first-run")
        assert held.took["first-run"] == 0, "a run whose lease was taken over wrote its results"
        held.release("late-run")
        assert held.took["late-run"] == 3
    finally:
        held.close()

    # Six certificates were built; the one stored (and handed out) for each ARN is the late run's.
    assert [len(held.made[name]) for name in ("first-run", "late-run")] == [3, 3]
    stored = _assert_once_each(svc, client, ca_arn, cert_arns, issued_before)
    assert all(der in held.made["late-run"] and der not in held.made["first-run"] for der in stored)


def test_a_drain_redelivered_after_its_worker_died_mid_batch_signs_each_request_once(env, monkeypatch):
    svc, client = env
    ca_arn = active_root(svc, client)
    issued_before = svc.store.metrics_snapshot().issued
    cert_arns = [issue(client, ca_arn) for _ in range(3)]
    held = Held(monkeypatch, ("dies",), stop_at=2)  # killed inside its second signature
    try:
        held.start("dies", svc)
        held.release("dies", kill=True)
    finally:
        held.close()
    assert isinstance(held.took["dies"], Killed) and len(held.made["dies"]) == 1
    assert all(svc.store.get_certificate(*member_of_arn(a).split(":")).status == "PENDING" for a in cert_arns)

    # Redelivered at once (the broker saw the worker go): the dead drain's leases still hold.
    assert drain_outbox(svc) == 0 and "MainThread" not in held.made
    # Its leases end: the redelivered drain signs the whole batch, one certificate each.
    late = _later(svc, svc.settings.lease_seconds + 1)
    assert drain_outbox(late) == 3
    assert drain_outbox(late) == 0  # and a further delivery finds nothing

    stored = _assert_once_each(svc, client, ca_arn, cert_arns, issued_before)
    assert sorted(held.made["MainThread"]) == sorted(stored)
    assert held.made["dies"][0] not in stored  # the dead drain's one signature was never written
