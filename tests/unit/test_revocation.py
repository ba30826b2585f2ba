"""RevokeCertificate: serial forms, reason codes, the rules on what may be revoked, and the atomic
record (real Redis, the real Flask app, the worker's functions run in-process; no Celery worker).

The ``flow`` fixture (tests/unit/conftest.py) and its helpers (tests/revocation_flow.py) are shared with
test_crl.py, test_ocsp.py and test_urgent.py.
"""

from __future__ import annotations

import json
import threading
import time

import botocore.session
import pytest
from cryptography import x509

from pcaq.api.app import create_app
from pcaq.ca.authorities import Authorities
from pcaq.errors import InvalidRequest
from pcaq.platform.identity import Caller
from pcaq.platform.settings import load
from pcaq.revocation.revoke import REASONS, Revocations, normalise_serial, reason_flag
from tests.revocation_flow import ENABLED, issue_leaf, make_root, revoke

# -- pure rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("3af1", "3af1"),
        ("3AF1", "3af1"),
        ("3a:f1", "3af1"),
        ("00:3A:F1", "3af1"),
        ("0x003af1", "3af1"),
        (" 3a f1 ", "3af1"),
        ("00", "0"),
    ],
)
def test_serials_are_read_in_any_case_with_or_without_colons(given, stored):
    assert normalise_serial(given) == stored


@pytest.mark.parametrize("bad", ["", ":", "xyz", "3a:g1", "-1"])
def test_a_serial_that_is_not_hex_is_refused(bad):
    with pytest.raises(InvalidRequest):
        normalise_serial(bad)


def test_every_revocation_reason_of_the_model_maps_to_its_rfc5280_code():
    model = botocore.session.get_session().get_service_model("acm-pca")
    assert set(REASONS) == set(model.shape_for("RevocationReason").enum)
    codes = {name: reason_flag(name) for name in REASONS}
    assert codes["KEY_COMPROMISE"] is x509.ReasonFlags.key_compromise
    assert codes["CERTIFICATE_AUTHORITY_COMPROMISE"] is x509.ReasonFlags.ca_compromise
    assert codes["A_A_COMPROMISE"] is x509.ReasonFlags.aa_compromise
    assert codes["UNSPECIFIED"] is None  # RFC 5280 5.3.1: leave the reason code out
    assert len({c for c in codes.values() if c}) == 7


# -- the operation ---------------------------------------------------------------------------------


def test_revoke_then_again_then_get_certificate_still_works(flow):
    arn, _ = make_root(flow)
    cert_arn, serial = issue_leaf(flow, arn)
    shown = ":".join(serial[i : i + 2] for i in range(len(serial) % 2, len(serial), 2)).upper()
    status, _ = revoke(flow, arn, ("0" + serial[0] + ":" + shown) if len(serial) % 2 else shown)
    assert status == 200
    assert revoke(flow, arn, serial)[1]["__type"] == "RequestAlreadyProcessedException"
    state = flow.svc.store.certificate_state(arn.rsplit("/", 1)[1], serial)
    assert state.reason == "KEY_COMPROMISE" and state.revoked_at
    got = flow.ok("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert got["Certificate"].startswith("-----BEGIN CERTIFICATE-----")


def test_what_cannot_be_revoked(flow):
    arn, own = make_root(flow)
    assert revoke(flow, arn, own.rsplit("/", 1)[1])[1]["__type"] == "InvalidRequestException"
    assert revoke(flow, arn, "abcdef0123")[1]["__type"] == "ResourceNotFoundException"
    assert revoke(flow, arn, "not-hex")[1]["__type"] == "InvalidRequestException"
    _, pending = issue_leaf(flow, arn, signed=False)
    assert revoke(flow, arn, pending)[1]["__type"] == "RequestInProgressException"
    other = arn[:-1] + ("0" if arn[-1] != "0" else "1")
    assert revoke(flow, other, pending)[1]["__type"] == "ResourceNotFoundException"


def test_revocation_is_allowed_while_disabled_but_not_once_deleted(flow):
    arn, _ = make_root(flow)
    _, first = issue_leaf(flow, arn)
    _, second = issue_leaf(flow, arn)
    flow.ok("UpdateCertificateAuthority", {"CertificateAuthorityArn": arn, "Status": "DISABLED"})
    assert revoke(flow, arn, first)[0] == 200
    flow.ok("DeleteCertificateAuthority", {"CertificateAuthorityArn": arn, "PermanentDeletionTimeInDays": 7})
    assert revoke(flow, arn, second)[1]["__type"] == "InvalidStateException"


def test_an_expired_certificate_cannot_be_revoked(flow):
    arn, _ = make_root(flow)
    _, serial = issue_leaf(flow, arn)
    store = flow.svc.store
    store.clock = lambda: time.time() + 30 * 86400  # the leaf lives 7 days
    caller = Caller(account=arn.split(":")[4], region=arn.split(":")[3])
    with pytest.raises(InvalidRequest, match="expired"):
        Revocations(Authorities(store, flow.svc.queue, flow.svc.settings)).revoke(
            caller, arn, serial, "SUPERSEDED"
        )


def test_concurrent_revocations_of_one_serial_have_one_winner(flow):
    arn, _ = make_root(flow)
    _, serial = issue_leaf(flow, arn)
    ca_id = arn.rsplit("/", 1)[1]
    results: list[int] = []
    barrier = threading.Barrier(8)

    def attempt():
        barrier.wait()
        results.append(flow.svc.store.revoke(ca_id, serial, 1.0e9, "SUPERSEDED", 2.0e9, 10)[0])

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] * 7 + [1]
    assert flow.svc.store.r.zcard(f"pcaq:revoked:{ca_id}") == 1
    assert flow.svc.store.stored_crl(ca_id).want == 1  # counted once against the CRL


def test_a_revocation_asks_for_one_crl_rebuild_per_window(flow, monkeypatch):
    arn, _ = make_root(flow, ENABLED)
    serials = [issue_leaf(flow, arn)[1] for _ in range(3)]
    asked: list[str] = []
    from pcaq.platform.queue import Queue

    monkeypatch.setattr(Queue, "rebuild_crl", lambda self, ca_id, reply=None: asked.append(ca_id))
    for serial in serials:
        assert revoke(flow, arn, serial, "SUPERSEDED")[0] == 200
    assert asked == [arn.rsplit("/", 1)[1]]  # one message for the burst; the rebuild covers all three
    assert flow.svc.store.dirty_crls(float("inf")) == asked


# -- audit reports record revocations ---------------------------------------------------------------


def test_an_audit_report_records_issuance_and_revocation(flow):
    from pcaq.ca.audit_reports import FIELDS
    from pcaq.worker.revocation_tasks import write_audit_report

    arn, own = make_root(flow)
    _, kept = issue_leaf(flow, arn)
    _, gone = issue_leaf(flow, arn)
    assert revoke(flow, arn, gone, "PRIVILEGE_WITHDRAWN")[0] == 200
    ca_id = arn.rsplit("/", 1)[1]
    body = {"CertificateAuthorityArn": arn, "S3BucketName": "reports", "AuditReportResponseFormat": "JSON"}
    assert (
        flow.error("CreateCertificateAuthorityAuditReport", {**body, "S3BucketName": "../etc"})
        == "InvalidArgsException"
    )
    out = flow.ok("CreateCertificateAuthorityAuditReport", body)
    assert flow.error("CreateCertificateAuthorityAuditReport", body) == "RequestInProgressException"
    described = {"CertificateAuthorityArn": arn, "AuditReportId": out["AuditReportId"]}
    assert flow.ok("DescribeCertificateAuthorityAuditReport", described)["AuditReportStatus"] == "CREATING"
    assert write_audit_report(flow.svc, ca_id, out["AuditReportId"]) == "SUCCESS"
    assert write_audit_report(flow.svc, ca_id, out["AuditReportId"]) == "SUCCESS"  # a repeat writes nothing
    assert flow.ok("DescribeCertificateAuthorityAuditReport", described)["AuditReportStatus"] == "SUCCESS"
    rows = json.loads(flow.client.get(f"/s3/reports/{out['S3Key']}").data)
    by_serial = {r["certificateArn"].rsplit("/", 1)[1]: r for r in rows}
    assert set(by_serial) == {own.rsplit("/", 1)[1], kept, gone}
    assert (
        set(by_serial[gone]) <= set(FIELDS) and by_serial[gone]["revocationReason"] == "PRIVILEGE_WITHDRAWN"
    )
    assert "revokedAt" not in by_serial[kept]
    assert int(by_serial[kept]["serial"].replace(":", ""), 16) == int(kept, 16)
    assert flow.client.get("/s3/reports/audit-report/nothing-here.json").status_code == 404
    assert flow.client.get("/s3/reports/audit-report/../../secret").status_code in (400, 404)


def test_with_credentials_report_files_need_an_s3_signature_of_the_cas_account(flow):
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    settings = flow.svc.settings
    arn, _ = make_root(flow)
    ca_id = arn.rsplit("/", 1)[1]
    folder = settings.effective_audit_dir / "bkt1" / "audit-report" / ca_id
    folder.mkdir(parents=True)
    (folder / "r.json").write_text("[]")
    env = {
        "REDIS_URL": settings.effective_redis_url,
        "PCAQ_AUDIT_DIR": str(settings.effective_audit_dir),
        "PCAQ_CREDENTIALS": f"AKIDEXAMPLE:secret:{arn.split(':')[4]},OTHERKEY:secret2:210987654321",
    }
    client = create_app(load(env)).test_client()
    path = f"/s3/bkt1/audit-report/{ca_id}/r.json"

    def signed(key: str, secret: str) -> dict:
        request = AWSRequest(method="GET", url=f"http://localhost{path}")
        S3SigV4Auth(Credentials(key, secret), "s3", "us-east-1").add_auth(request)
        return dict(request.headers)

    assert client.get(path).status_code == 403
    assert client.get(path, headers=signed("AKIDEXAMPLE", "wrong")).status_code == 403
    assert client.get(path, headers=signed("OTHERKEY", "secret2")).status_code == 403  # another account
    got = client.get(path, headers=signed("AKIDEXAMPLE", "secret"))
    assert got.status_code == 200 and got.data == b"[]"
