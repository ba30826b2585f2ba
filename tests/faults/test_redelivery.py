"""A job delivered again while its first run is still signing (Redis redelivers a message held longer
than the visibility timeout) yields one certificate per ARN, not two (invariant 2).

Deterministic: the worker's functions run in-process on a real Redis, runs are held inside their first
signature until the test lets them go, and a late run's clock is moved past the lease. The first run
finishes while a late run holds the requests: only the lease owner's results may be written.
"""

from __future__ import annotations

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
from pcaq.worker.tasks import sign_batch
from tests.faults.harness import member_of_arn
from tests.issue_flow import active_root, call, issue

pytestmark = pytest.mark.faults


def _certificate(client, ca_arn: str, cert_arn: str) -> str:
    status, out = call(
        client, "GetCertificate", {"CertificateAuthorityArn": ca_arn, "CertificateArn": cert_arn}
    )
    assert status == 200, out
    return out["Certificate"]


def test_a_job_redelivered_while_its_first_run_signs_yields_one_certificate(env, monkeypatch):
    svc, client = env
    ca_arn = active_root(svc, client)
    cert_arns = [issue(client, ca_arn) for _ in range(3)]
    members = [member_of_arn(a) for a in cert_arns]

    # Two runs are held inside their first signature until the test lets them go.
    held = ("first-run", "late-run")
    signing = {name: threading.Event() for name in held}
    let_go = {name: threading.Event() for name in held}
    made: dict[str, list[bytes]] = {name: [] for name in (*held, "MainThread")}  # DER built by each run
    build = certificates.build_certificate

    def held_build(request, issuer):
        name = threading.current_thread().name
        if name in held:
            signing[name].set()
            assert let_go[name].wait(30)
        cert = build(request, issuer)
        made[name].append(cert.public_bytes(serialization.Encoding.DER))
        return cert

    monkeypatch.setattr(certificates, "build_certificate", held_build)
    took: dict[str, int] = {}
    runs: list[threading.Thread] = []

    def start(name: str, services: Services) -> threading.Thread:
        run = threading.Thread(
            target=lambda: took.__setitem__(name, sign_batch(services, members)), name=name
        )
        runs.append(run)
        run.start()
        assert signing[name].wait(10), f"{name} never started signing"
        return run

    later = Store(svc.store.r, svc.settings, clock=lambda: time.time() + svc.settings.lease_seconds + 1)
    try:
        first = start("first-run", svc)

        # Delivered again while the first run's lease holds: the second run claims and signs nothing.
        assert sign_batch(svc, members) == 0
        assert made["MainThread"] == []

        # Delivered again after the lease ended (the visibility timeout is far longer than a lease):
        # this run takes the requests over; while it signs, the first run finishes and commits, but
        # writes nothing: the requests are no longer leased to it.
        late = start("late-run", Services(svc.settings, later, svc.queue, svc.vault, svc.authorities))
        let_go["first-run"].set()
        first.join(30)
        assert took["first-run"] == 0, "a run whose lease was taken over wrote its results"
        let_go["late-run"].set()
        late.join(30)
        assert took["late-run"] == 3
    finally:
        for event in let_go.values():
            event.set()
        for run in runs:
            run.join(30)

    # Six certificates were signed; the one stored (and handed out) for each ARN is the late run's.
    assert [len(made[name]) for name in held] == [3, 3]
    for cert_arn in cert_arns:
        der = svc.store.get_certificate(*member_of_arn(cert_arn).split(":")).certificate_der
        assert der in made["late-run"] and der not in made["first-run"]
        handed_out = x509.load_pem_x509_certificate(_certificate(client, ca_arn, cert_arn).encode())
        assert handed_out.public_bytes(serialization.Encoding.DER) == der
    # One issuance per ARN in the audit trail and in the metrics, however many signatures were made.
    trail = [
        e for e in svc.store.read_audit(ca_arn.rsplit("/", 1)[1]) if e[1]["event"] == "CertificateIssued"
    ]
    issued_arns = Counter(json.loads(e[1]["details"])["CertificateArn"] for e in trail)
    assert all(issued_arns[arn] == 1 for arn in cert_arns), issued_arns
    assert svc.store.metrics_snapshot().issued == 1 + 3  # the root's own certificate, then ours
