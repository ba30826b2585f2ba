"""A job delivered again while its first run is still signing (Redis redelivers a message held longer
than the visibility timeout) yields one certificate per ARN, not two (invariant 2).

Deterministic: the worker's functions run in-process on a real Redis, the first run is held inside
its first signature until the test lets it go, and the second run's clock is moved past the lease.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest

from shared import certificates
from shared.records import Store
from tests.faults.harness import member_of_arn
from tests.unit.test_issue_flow import active_root, call, env, issue  # noqa: F401 - env is a fixture
from worker.services import Services
from worker.tasks import sign_batch

pytestmark = pytest.mark.faults


def _certificate(client, ca_arn: str, cert_arn: str) -> str:
    status, out = call(
        client, "GetCertificate", {"CertificateAuthorityArn": ca_arn, "CertificateArn": cert_arn}
    )
    assert status == 200, out
    return out["Certificate"]


def test_a_job_redelivered_while_its_first_run_signs_yields_one_certificate(env, monkeypatch):  # noqa: F811
    svc, client = env
    ca_arn = active_root(svc, client)
    cert_arns = [issue(client, ca_arn) for _ in range(3)]
    members = [member_of_arn(a) for a in cert_arns]

    signings: Counter = Counter()  # by thread: how many certificates each run built and signed
    first_is_signing, let_first_go = threading.Event(), threading.Event()
    build = certificates.build_certificate

    def held_build(request, issuer):
        signings[threading.current_thread().name] += 1
        if threading.current_thread().name == "first-run":
            first_is_signing.set()
            assert let_first_go.wait(30)
        return build(request, issuer)

    monkeypatch.setattr(certificates, "build_certificate", held_build)
    first_took: list[int] = []
    first = threading.Thread(target=lambda: first_took.append(sign_batch(svc, members)), name="first-run")
    first.start()
    try:
        assert first_is_signing.wait(10)

        # Delivered again while the first run's lease holds: the second run claims and signs nothing.
        assert sign_batch(svc, members) == 0
        assert signings["MainThread"] == 0

        # Delivered again after the lease ended (the visibility timeout is far longer than a lease):
        # the second run takes the requests over, signs and commits them.
        later = Store(svc.store.r, svc.settings, clock=lambda: time.time() + svc.settings.lease_seconds + 1)
        assert sign_batch(Services(svc.settings, later, svc.queue, svc.vault, svc.authorities), members) == 3
        seen = {arn: _certificate(client, ca_arn, arn) for arn in cert_arns}
    finally:
        let_first_go.set()
        first.join(30)

    # The first run finishes signing, but none of its certificates is written: its lease is gone.
    assert first_took == [0]
    assert signings == {"first-run": 3, "MainThread": 3}
    assert {arn: _certificate(client, ca_arn, arn) for arn in cert_arns} == seen
    # One issuance per ARN in the audit trail and in the metrics, however many signatures were made.
    trail = [
        e for e in svc.store.read_audit(ca_arn.rsplit("/", 1)[1]) if e[1]["event"] == "CertificateIssued"
    ]
    issued_arns = Counter(json.loads(e[1]["details"])["CertificateArn"] for e in trail)
    assert all(issued_arns[arn] == 1 for arn in cert_arns), issued_arns
    assert svc.store.metrics_snapshot().issued == 1 + 3  # the root's own certificate, then ours
