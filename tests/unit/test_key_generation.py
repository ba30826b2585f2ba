"""Key generation racing DeleteCertificateAuthority (worker/tasks.py generate_ca_key).

The worker reads the CA in CREATING, makes the key, then stores it; a delete can land in between. The
race is driven deterministically: the CA is deleted from a hook the worker calls after making the key
and before storing it. Real Redis, the real Flask app, the worker's function run in-process.
"""

from __future__ import annotations

import logging

import pytest

from pcaq.ca.audit_trail import AuditTrail
from pcaq.errors import PcaqError
from pcaq.pki import ca_certificates
from pcaq.worker.sweeper import sweep
from pcaq.worker.tasks import generate_ca_key
from tests.issue_flow import call

CREATE = {
    "CertificateAuthorityType": "ROOT",
    "CertificateAuthorityConfiguration": {
        "KeyAlgorithm": "EC_prime256v1",
        "SigningAlgorithm": "SHA256WITHECDSA",
        "Subject": {"CommonName": "Raced Root"},
    },
}


def _create(client) -> str:
    status, out = call(client, "CreateCertificateAuthority", CREATE)
    assert status == 200, out
    return out["CertificateAuthorityArn"]


@pytest.mark.parametrize("outcome", ["key made", "creation failed"])
def test_a_ca_deleted_while_its_key_is_made_keeps_no_key_and_the_task_ends_cleanly(
    env,
    monkeypatch,
    caplog,
    outcome,
):
    svc, client = env
    arn = _create(client)
    ca_id = arn.rsplit("/", 1)[1]
    build_csr = ca_certificates.build_ca_csr

    def delete_then_build(key, config):
        # After the key is made, before it is stored: the caller deletes the CA (still CREATING).
        status, out = call(client, "DeleteCertificateAuthority", {"CertificateAuthorityArn": arn})
        assert status == 200, out
        if outcome == "creation failed":
            raise PcaqError("refused")
        return build_csr(key, config)

    monkeypatch.setattr(ca_certificates, "build_ca_csr", delete_then_build)
    with caplog.at_level(logging.INFO, logger="pcaq.worker"):
        generate_ca_key(svc, ca_id)  # no exception: the task ends (no Celery retry)

    assert svc.store.get_ca_key(ca_id) is None
    assert svc.store.get_ca(ca_id) is None
    if outcome == "key made":
        assert "deleted or changed while its key was made" in caplog.text
    events = [e.event for e in AuditTrail(svc.store).entries(arn)]
    assert events == ["CreateCertificateAuthority", "DeleteCertificateAuthority"]
    # Deleted while CREATING means gone for good: not restorable, and nothing left to re-queue.
    status, out = call(client, "RestoreCertificateAuthority", {"CertificateAuthorityArn": arn})
    assert (status, out["__type"]) == (400, "ResourceNotFoundException")
    svc.clock = lambda: svc.store.clock() + 3600
    sweep(svc)
    assert svc.queue.keys == []
    generate_ca_key(svc, ca_id)  # a redelivered job
    assert svc.store.get_ca_key(ca_id) is None
