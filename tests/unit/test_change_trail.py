"""A state-changing call and its audit entry are written in one atomic step.

Each operation is run through the real API (Flask app, dispatcher, real Redis) twice: first with the
connection failing when the audit entry is sent (the EXEC of a transaction, or a script, that carries
it), which must leave neither the change nor the entry; then with the append the API used to make
after the change failing, which must leave both.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import redis
from redis.commands.core import Script

from pcaq.ca.audit_trail import AuditTrail
from pcaq.records import Store, keys
from pcaq.worker.tasks import drain_outbox, generate_ca_key
from tests.issue_flow import active_root, call, issue

ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"


@dataclass
class Case:
    arn: str
    body: dict
    cert_arn: str | None = None


def _create_ca(svc, client) -> str:
    body = {
        "CertificateAuthorityType": "ROOT",
        "CertificateAuthorityConfiguration": {
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "Trail Root"},
        },
    }
    status, out = call(client, "CreateCertificateAuthority", body)
    assert status == 200, out
    return out["CertificateAuthorityArn"]


def _ok(client, operation: str, body: dict) -> dict:
    status, out = call(client, operation, body)
    assert status == 200, out
    return out


def _signed(svc, cert_arn: str) -> None:
    assert drain_outbox(svc) == 1
    parts = cert_arn.split("/")
    record = svc.store.get_certificate(parts[1], parts[3])
    assert record is not None and record.status == "ISSUED"


def _import(svc, client) -> Case:
    """A root in PENDING_CERTIFICATE and the body that imports its own certificate."""
    arn = _create_ca(svc, client)
    generate_ca_key(svc, arn.rsplit("/", 1)[1])
    csr = _ok(client, "GetCertificateAuthorityCsr", {"CertificateAuthorityArn": arn})["Csr"]
    body = {
        "CertificateAuthorityArn": arn,
        "Csr": base64.b64encode(csr.encode()).decode(),
        "SigningAlgorithm": "SHA256WITHECDSA",
        "TemplateArn": ROOT_TEMPLATE,
        "Validity": {"Value": 5, "Type": "YEARS"},
    }
    own = _ok(client, "IssueCertificate", body)["CertificateArn"]
    _signed(svc, own)
    pem = _ok(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": own})[
        "Certificate"
    ]
    return Case(arn, {"CertificateAuthorityArn": arn, "Certificate": base64.b64encode(pem.encode()).decode()})


def _disabled(svc, client) -> str:
    arn = active_root(svc, client)
    _ok(client, "UpdateCertificateAuthority", {"CertificateAuthorityArn": arn, "Status": "DISABLED"})
    return arn


def _update(svc, client) -> Case:
    arn = active_root(svc, client)
    return Case(arn, {"CertificateAuthorityArn": arn, "Status": "DISABLED"})


def _tag(svc, client) -> Case:
    arn = active_root(svc, client)
    return Case(arn, {"CertificateAuthorityArn": arn, "Tags": [{"Key": "team", "Value": "pki"}]})


def _untag(svc, client) -> Case:
    arn = active_root(svc, client)
    _ok(client, "TagCertificateAuthority", {"CertificateAuthorityArn": arn, "Tags": [{"Key": "team"}]})
    return Case(arn, {"CertificateAuthorityArn": arn, "Tags": [{"Key": "team"}]})


def _delete(svc, client) -> Case:
    arn = _disabled(svc, client)
    return Case(arn, {"CertificateAuthorityArn": arn, "PermanentDeletionTimeInDays": 7})


def _delete_creating(svc, client) -> Case:
    arn = _create_ca(svc, client)
    return Case(arn, {"CertificateAuthorityArn": arn})


def _restore(svc, client) -> Case:
    arn = _disabled(svc, client)
    _ok(client, "DeleteCertificateAuthority", {"CertificateAuthorityArn": arn})
    return Case(arn, {"CertificateAuthorityArn": arn})


def _revoke(svc, client) -> Case:
    arn = active_root(svc, client)
    cert_arn = issue(client, arn)
    _signed(svc, cert_arn)
    serial = cert_arn.rsplit("/", 1)[1]
    body = {"CertificateAuthorityArn": arn, "CertificateSerial": serial, "RevocationReason": "KEY_COMPROMISE"}
    return Case(arn, body, cert_arn)


def _permission_body(arn: str) -> dict:
    return {"CertificateAuthorityArn": arn, "Principal": "acm.amazonaws.com", "Actions": ["IssueCertificate"]}


def _create_permission(svc, client) -> Case:
    arn = active_root(svc, client)
    return Case(arn, _permission_body(arn))


def _delete_permission(svc, client) -> Case:
    arn = active_root(svc, client)
    _ok(client, "CreatePermission", _permission_body(arn))
    return Case(arn, {"CertificateAuthorityArn": arn, "Principal": "acm.amazonaws.com"})


POLICY = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "acm-pca:*"}]})


def _put_policy(svc, client) -> Case:
    arn = active_root(svc, client)
    return Case(arn, {"ResourceArn": arn, "Policy": POLICY})


def _delete_policy(svc, client) -> Case:
    arn = active_root(svc, client)
    _ok(client, "PutPolicy", {"ResourceArn": arn, "Policy": POLICY})
    return Case(arn, {"ResourceArn": arn})


def _audit_report(svc, client) -> Case:
    arn = active_root(svc, client)
    body = {
        "CertificateAuthorityArn": arn,
        "S3BucketName": "trail-bucket",
        "AuditReportResponseFormat": "JSON",
    }
    return Case(arn, body)


CASES: dict[str, Callable] = {
    "ImportCertificateAuthorityCertificate": _import,
    "UpdateCertificateAuthority": _update,
    "TagCertificateAuthority": _tag,
    "UntagCertificateAuthority": _untag,
    "DeleteCertificateAuthority": _delete,
    "DeleteCertificateAuthority (CREATING)": _delete_creating,
    "RestoreCertificateAuthority": _restore,
    "RevokeCertificate": _revoke,
    "CreatePermission": _create_permission,
    "DeletePermission": _delete_permission,
    "PutPolicy": _put_policy,
    "DeletePolicy": _delete_policy,
    "CreateCertificateAuthorityAuditReport": _audit_report,
}


def _state(svc, case: Case) -> tuple:
    """What the operations change: the CA document, the certificate's revocation, the permissions,
    the policy and the reports being made."""
    ca_id = case.arn.rsplit("/", 1)[1]
    cert = None
    if case.cert_arn is not None:
        cert = svc.store.certificate_state(ca_id, case.cert_arn.rsplit("/", 1)[1])
    store = svc.store
    reports = store.stale_audit_reports(store.clock() + 3600)
    return store.get_ca(ca_id), cert, store.list_permissions(ca_id), store.get_policy(ca_id), reports


def _events(svc, arn: str) -> list[str]:
    return [e.event for e in AuditTrail(svc.store).entries(arn)]


def _fail_the_entry(monkeypatch, case: Case) -> None:
    """The connection drops when the CA's audit entry is sent: the EXEC of a transaction, or a script,
    that carries it."""
    execute = redis.client.Pipeline._execute_transaction
    run = Script.__call__
    stream = keys.audit_stream(case.arn.rsplit("/", 1)[1])

    def dropped_exec(self, connection, commands, raise_on_error):
        if any(args[:2] == ("XADD", stream) for args, _ in commands):
            raise redis.ConnectionError("injected: connection lost at EXEC")
        return execute(self, connection, commands, raise_on_error)

    def dropped_script(self, keys=(), args=(), client=None):
        if stream in keys:
            raise redis.ConnectionError("injected: connection lost at a script")
        return run(self, keys, args, client)

    monkeypatch.setattr(redis.client.Pipeline, "_execute_transaction", dropped_exec)
    monkeypatch.setattr(Script, "__call__", dropped_script)


def _fail_the_separate_append(monkeypatch) -> None:
    def lost(self, entries):
        raise redis.ConnectionError("injected: connection lost at the audit append")

    monkeypatch.setattr(Store, "append_audit", lost)


@pytest.mark.parametrize("name", list(CASES))
def test_a_change_and_its_audit_entry_are_both_there_or_both_absent(env, monkeypatch, name):
    svc, client = env
    case = CASES[name](svc, client)
    operation = name.split()[0]
    before, trail = _state(svc, case), _events(svc, case.arn)

    with monkeypatch.context() as m:
        _fail_the_entry(m, case)
        status, out = call(client, operation, case.body)
    assert status != 200, out  # a 503, or a 400 once update_ca gave up retrying
    assert _state(svc, case) == before and _events(svc, case.arn) == trail  # neither

    with monkeypatch.context() as m:
        _fail_the_separate_append(m)
        resp = client.post(
            "/", data=json.dumps(case.body), headers={"X-Amz-Target": f"ACMPrivateCA.{operation}"}
        )
    assert resp.status_code == 200, resp.data
    assert _state(svc, case) != before
    assert _events(svc, case.arn) == [*trail, operation]  # both
    entry = AuditTrail(svc.store).entries(case.arn)[-1]
    assert entry.request_id == resp.headers["x-amzn-RequestId"]
    assert entry.who != "pcaq-worker" and entry.ca == case.arn


def test_a_new_ca_and_its_key_have_their_entries_when_the_separate_append_fails(env, monkeypatch):
    svc, client = env
    _fail_the_separate_append(monkeypatch)
    arn = _create_ca(svc, client)
    generate_ca_key(svc, arn.rsplit("/", 1)[1])
    entries = AuditTrail(svc.store).entries(arn)
    assert [e.event for e in entries] == ["CreateCertificateAuthority", "CertificateAuthorityKeyGenerated"]
    assert entries[0].ca == arn and entries[0].request_id != "-"
    assert entries[1].who == "pcaq-worker"
