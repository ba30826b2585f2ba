"""Audit reports, permissions and policies on a running stack, with boto3 and the AWS CLI."""

from __future__ import annotations

import csv
import io
import json
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.acmpca import activate_root, error_code, fetch, issue, make_csr

pytestmark = pytest.mark.integration

WAIT = {"Delay": 0.2, "MaxAttempts": 150}
ACM = "acm.amazonaws.com"


@pytest.fixture(scope="module")
def root(pca):
    return activate_root(pca)[0]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def test_a_json_audit_report_lists_issued_and_revoked_certificates(pca, root, stack):
    leaf, _, _ = fetch(pca, root, issue(pca, root, make_csr()))
    revoked, _, _ = fetch(pca, root, issue(pca, root, make_csr(), template="EndEntityServerAuthCertificate"))
    pca.revoke_certificate(
        CertificateAuthorityArn=root,
        CertificateSerial=format(revoked.serial_number, "x"),
        RevocationReason="SUPERSEDED",
    )
    out = pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=root, S3BucketName="audit-bucket", AuditReportResponseFormat="JSON"
    )
    ca_id = root.rsplit("/", 1)[1]
    assert out["S3Key"] == f"audit-report/{ca_id}/{out['AuditReportId']}.json"
    with pytest.raises(ClientError) as exc:  # one report per CA per 30 minutes
        pca.create_certificate_authority_audit_report(
            CertificateAuthorityArn=root, S3BucketName="audit-bucket", AuditReportResponseFormat="CSV"
        )
    assert error_code(exc) == "RequestInProgressException"
    pca.get_waiter("audit_report_created").wait(
        CertificateAuthorityArn=root, AuditReportId=out["AuditReportId"], WaiterConfig=WAIT
    )
    described = pca.describe_certificate_authority_audit_report(
        CertificateAuthorityArn=root, AuditReportId=out["AuditReportId"]
    )
    assert described["AuditReportStatus"] == "SUCCESS" and described["S3BucketName"] == "audit-bucket"
    rows = json.loads(get(f"{stack.endpoint_url}/s3/audit-bucket/{out['S3Key']}"))
    by_arn = {row["certificateArn"]: row for row in rows}
    assert len(rows) == 3  # the root's own certificate and the two leaves
    first = by_arn[f"{root}/certificate/{format(leaf.serial_number, 'x')}"]
    assert first["serial"].replace(":", "").lstrip("0") == format(leaf.serial_number, "x")
    assert first["subject"] == "CN=leaf.example.com" and "revokedAt" not in first
    assert first["templateArn"] == "arn:aws:acm-pca:::template/EndEntityCertificate/V1"
    assert first["notAfter"].endswith("+0000") and first["awsAccountId"] == root.split(":")[4]
    second = by_arn[f"{root}/certificate/{format(revoked.serial_number, 'x')}"]
    assert second["revocationReason"] == "SUPERSEDED" and second["revokedAt"]
    assert second["templateArn"].endswith("/EndEntityServerAuthCertificate/V1")

    # The same object through an S3 client pointed at the stand-in.
    s3 = boto3.client(
        "s3",
        endpoint_url=f"{stack.endpoint_url}/s3",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    assert json.loads(s3.get_object(Bucket="audit-bucket", Key=out["S3Key"])["Body"].read()) == rows
    with pytest.raises(ClientError) as exc:
        pca.describe_certificate_authority_audit_report(
            CertificateAuthorityArn=root, AuditReportId="00000000-0000-4000-8000-000000000000"
        )
    assert error_code(exc) == "ResourceNotFoundException"


def test_a_csv_report_with_the_aws_cli(aws, pca, stack):
    arn = activate_root(pca)[0]
    out = aws.json(
        "create-certificate-authority-audit-report", "--certificate-authority-arn", arn,
        "--s3-bucket-name", "cli-bucket", "--audit-report-response-format", "CSV",
    )  # fmt: skip
    aws(
        "wait",
        "audit-report-created",
        "--certificate-authority-arn",
        arn,
        "--audit-report-id",
        out["AuditReportId"],
    )
    rows = list(
        csv.DictReader(io.StringIO(get(f"{stack.endpoint_url}/s3/cli-bucket/{out['S3Key']}").decode()))
    )
    assert len(rows) == 1 and rows[0]["certificateArn"].startswith(arn) and rows[0]["revokedAt"] == ""
    assert rows[0]["templateArn"] == "arn:aws:acm-pca:::template/RootCACertificate/V1"


def test_permissions(pca, aws, root):
    account = root.split(":")[4]
    pca.create_permission(
        CertificateAuthorityArn=root, Principal=ACM, Actions=["IssueCertificate", "GetCertificate"]
    )
    with pytest.raises(ClientError) as exc:
        pca.create_permission(CertificateAuthorityArn=root, Principal=ACM, Actions=["ListPermissions"])
    assert error_code(exc) == "PermissionAlreadyExistsException"
    with pytest.raises(ClientError) as exc:
        pca.create_permission(
            CertificateAuthorityArn=root, Principal="ec2.amazonaws.com", Actions=["GetCertificate"]
        )
    assert error_code(exc) == "InvalidArgsException"
    aws("create-permission", "--certificate-authority-arn", root, "--principal", ACM,
        "--actions", "ListPermissions", "--source-account", "210987654321")  # fmt: skip
    pages = list(pca.get_paginator("list_permissions").paginate(
        CertificateAuthorityArn=root, PaginationConfig={"PageSize": 1}))  # fmt: skip
    assert [len(p["Permissions"]) for p in pages] == [1, 1]
    first, second = pages[0]["Permissions"][0], pages[1]["Permissions"][0]
    assert first["Actions"] == ["IssueCertificate", "GetCertificate"] and first["SourceAccount"] == account
    assert first["Principal"] == ACM and first["CertificateAuthorityArn"] == root and first["CreatedAt"]
    assert second["SourceAccount"] == "210987654321"
    with pytest.raises(ClientError) as exc:
        pca.list_permissions(CertificateAuthorityArn=root, NextToken="bogus")
    assert error_code(exc) == "InvalidNextTokenException"
    pca.delete_permission(CertificateAuthorityArn=root, Principal=ACM)
    with pytest.raises(ClientError) as exc:
        pca.delete_permission(CertificateAuthorityArn=root, Principal=ACM)
    assert error_code(exc) == "ResourceNotFoundException"
    listed = aws.json("list-permissions", "--certificate-authority-arn", root)["Permissions"]
    assert [p["SourceAccount"] for p in listed] == ["210987654321"]


def test_policies(pca, aws, root, tmp_path):
    with pytest.raises(ClientError) as exc:
        pca.get_policy(ResourceArn=root)
    assert error_code(exc) == "ResourceNotFoundException"
    pca.delete_policy(ResourceArn=root)  # nothing attached: still a success
    for bad in ("not json", "[1, 2]", '{"Version": "2012-10-17"}'):
        with pytest.raises(ClientError) as exc:
            pca.put_policy(ResourceArn=root, Policy=bad)
        assert error_code(exc) == "InvalidPolicyException"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Share",
                "Effect": "Allow",
                "Principal": {"AWS": "210987654321"},
                "Action": ["acm-pca:IssueCertificate", "acm-pca:GetCertificate"],
                "Resource": root,
            }
        ],
    }
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    aws("put-policy", "--resource-arn", root, "--policy", f"file://{path}")
    assert json.loads(pca.get_policy(ResourceArn=root)["Policy"]) == policy
    assert json.loads(aws.json("get-policy", "--resource-arn", root)["Policy"]) == policy
    pca.delete_policy(ResourceArn=root)
    with pytest.raises(ClientError) as exc:
        pca.get_policy(ResourceArn=root)
    assert error_code(exc) == "ResourceNotFoundException"
    unknown = root[: -len("0000")] + ("0000" if not root.endswith("0000") else "1111")
    with pytest.raises(ClientError) as exc:
        pca.get_policy(ResourceArn=unknown)
    assert error_code(exc) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as exc:
        pca.put_policy(
            ResourceArn="arn:aws:acm-pca:::template/EndEntityCertificate/V1", Policy=json.dumps(policy)
        )
    assert error_code(exc) == "InvalidArnException"
