"""The CA half of the API end to end: real `pcaq up`, real Celery workers, real Redis, boto3 and the AWS CLI."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.message import Message

import pytest
import redis
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, rsa
from cryptography.x509.oid import NameOID

from tests.acmpca import (
    ALGS,
    SUBJECT,
    create_ca,
    error_code,
)
from tests.signer import ExternalCA

pytestmark = pytest.mark.integration


def activate_subordinate(pca, external: ExternalCA) -> str:
    arn = create_ca(pca, "SUBORDINATE")
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    cert = external.sign_ca_csr(csr)
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=cert.encode(), CertificateChain=external.pem.encode()
    )
    return arn


@pytest.fixture(scope="module")
def external():
    return ExternalCA()


@pytest.mark.parametrize("key", list(ALGS))
def test_every_key_algorithm_makes_a_csr_with_a_ca_request(pca, key):
    arn = create_ca(pca, key=key)
    described = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert described["Status"] == "PENDING_CERTIFICATE"
    assert described["CertificateAuthorityConfiguration"]["KeyAlgorithm"] == key
    csr = x509.load_pem_x509_csr(
        pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"].encode()
    )
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "pcaq test CA"
    bc = csr.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True
    public = csr.public_key()
    expected_type = {"RSA": rsa.RSAPublicKey, "EC": ec.EllipticCurvePublicKey, "ML": object}[
        key.split("_")[0]
    ]
    assert isinstance(public, expected_type)
    if key.startswith("RSA"):
        assert public.key_size == int(key.split("_")[1])
    if key == "ML_DSA_65":
        assert isinstance(public, mldsa.MLDSA65PublicKey)


def test_sm2_and_mismatched_signing_algorithm_are_refused(pca):
    with pytest.raises(pca.exceptions.InvalidArgsException):
        create_ca(pca, key="SM2", signing="SM3WITHSM2", wait=False)
    with pytest.raises(pca.exceptions.InvalidArgsException) as exc:
        create_ca(pca, key="EC_prime256v1", signing="SHA256WITHRSA", wait=False)
    assert "EC" in str(exc.value)


def test_subordinate_activation_with_an_external_parent(pca, external):
    arn = activate_subordinate(pca, external)
    ca = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert ca["Status"] == "ACTIVE"
    assert ca["NotAfter"] > ca["NotBefore"]
    got = pca.get_certificate_authority_certificate(CertificateAuthorityArn=arn)
    cert = x509.load_pem_x509_certificate(got["Certificate"].encode())
    assert cert.issuer == external.cert.subject
    assert x509.load_pem_x509_certificate(got["CertificateChain"].encode()) == external.cert
    assert ca["Serial"] == format(cert.serial_number, "x")


def test_import_rules(pca, external):
    arn = create_ca(pca, "SUBORDINATE")
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    with pytest.raises(pca.exceptions.InvalidStateException):
        pca.get_certificate_authority_certificate(CertificateAuthorityArn=arn)
    good = external.sign_ca_csr(csr).encode()
    # A subordinate needs its chain.
    with pytest.raises(pca.exceptions.InvalidRequestException):
        pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=good)
    # Garbage.
    with pytest.raises(pca.exceptions.MalformedCertificateException):
        pca.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn,
            Certificate=b"not a certificate",
            CertificateChain=external.pem.encode(),
        )
    # A certificate for another CA's key.
    other = create_ca(pca, "SUBORDINATE")
    other_cert = external.sign_ca_csr(pca.get_certificate_authority_csr(CertificateAuthorityArn=other)["Csr"])
    with pytest.raises(pca.exceptions.CertificateMismatchException):
        pca.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn,
            Certificate=other_cert.encode(),
            CertificateChain=external.pem.encode(),
        )
    # A critical extension that may not be critical (AIA).
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://o")
            )
        ]
    )
    with pytest.raises(pca.exceptions.MalformedCertificateException):
        pca.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn,
            Certificate=external.sign_ca_csr(csr, extra_critical=aia).encode(),
            CertificateChain=external.pem.encode(),
        )
    # A chain that did not sign the certificate.
    with pytest.raises(pca.exceptions.MalformedCertificateException):
        pca.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn,
            Certificate=good,
            CertificateChain=ExternalCA("Stranger").pem.encode(),
        )
    # A ROOT CA takes only a self-signed certificate.
    root = create_ca(pca, "ROOT")
    with pytest.raises(ClientError):
        pca.import_certificate_authority_certificate(CertificateAuthorityArn=root, Certificate=good)
    # None of that moved the CA; the right import does.
    assert pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"][
        "Status"
    ] == ("PENDING_CERTIFICATE")
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=good, CertificateChain=external.pem.encode()
    )
    assert (
        pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]["Status"]
        == "ACTIVE"
    )


def test_state_rules_update_delete_restore(pca, external):
    pending = create_ca(pca)
    with pytest.raises(pca.exceptions.InvalidStateException):
        pca.update_certificate_authority(CertificateAuthorityArn=pending, Status="DISABLED")

    arn = activate_subordinate(pca, external)
    status = lambda: pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]  # noqa: E731
    with pytest.raises(pca.exceptions.InvalidStateException):
        pca.delete_certificate_authority(CertificateAuthorityArn=arn)
    before = status()["LastStateChangeAt"]
    pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="DISABLED")
    assert status()["Status"] == "DISABLED" and status()["LastStateChangeAt"] >= before
    pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="ACTIVE")
    assert status()["Status"] == "ACTIVE"
    with pytest.raises(pca.exceptions.InvalidArgsException):
        pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="PENDING_CERTIFICATE")

    pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="DISABLED")
    with pytest.raises(ClientError) as exc:
        pca.delete_certificate_authority(CertificateAuthorityArn=arn, PermanentDeletionTimeInDays=99)
    assert error_code(exc) == "ValidationException"
    pca.delete_certificate_authority(CertificateAuthorityArn=arn, PermanentDeletionTimeInDays=7)
    deleted = status()
    assert deleted["Status"] == "DELETED"
    assert (
        6.9 * 86400
        < deleted["RestorableUntil"].timestamp() - deleted["LastStateChangeAt"].timestamp()
        < 7.1 * 86400
    )
    with pytest.raises(pca.exceptions.InvalidStateException):
        pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="ACTIVE")
    pca.restore_certificate_authority(CertificateAuthorityArn=arn)
    restored = status()
    assert restored["Status"] == "DISABLED" and "RestorableUntil" not in restored
    with pytest.raises(pca.exceptions.InvalidStateException):
        pca.restore_certificate_authority(CertificateAuthorityArn=arn)

    # From PENDING_CERTIFICATE: restorable, and comes back PENDING_CERTIFICATE.
    pca.delete_certificate_authority(CertificateAuthorityArn=pending)
    pca.restore_certificate_authority(CertificateAuthorityArn=pending)
    assert pca.describe_certificate_authority(CertificateAuthorityArn=pending)["CertificateAuthority"][
        "Status"
    ] == ("PENDING_CERTIFICATE")


def test_revocation_configuration_is_validated_and_stored(pca, external):
    arn = activate_subordinate(pca, external)
    with pytest.raises(pca.exceptions.InvalidArgsException):
        pca.update_certificate_authority(
            CertificateAuthorityArn=arn,
            RevocationConfiguration={
                "CrlConfiguration": {"Enabled": True, "CustomCname": "http://crl.example.com"}
            },
        )
    with pytest.raises(pca.exceptions.InvalidArgsException):
        pca.update_certificate_authority(
            CertificateAuthorityArn=arn,
            RevocationConfiguration={"CrlConfiguration": {"Enabled": False, "ExpirationInDays": 3}},
        )
    pca.update_certificate_authority(
        CertificateAuthorityArn=arn,
        RevocationConfiguration={
            "CrlConfiguration": {"Enabled": True, "ExpirationInDays": 3, "CustomCname": "crl.example.com"}
        },
    )
    rc = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"][
        "RevocationConfiguration"
    ]
    assert rc["CrlConfiguration"]["Enabled"] is True
    assert rc["CrlConfiguration"]["ExpirationInDays"] == 3
    assert rc["CrlConfiguration"]["CustomCname"] == "crl.example.com"


def test_tags(pca):
    arn = create_ca(pca, wait=False, Tags=[{"Key": "env", "Value": "test"}])
    pca.tag_certificate_authority(
        CertificateAuthorityArn=arn, Tags=[{"Key": "team", "Value": "pki"}, {"Key": "café", "Value": "1"}]
    )
    tags = {t["Key"]: t.get("Value") for t in pca.list_tags(CertificateAuthorityArn=arn)["Tags"]}
    assert tags == {"env": "test", "team": "pki", "café": "1"}
    pca.untag_certificate_authority(CertificateAuthorityArn=arn, Tags=[{"Key": "team", "Value": "other"}])
    assert len(pca.list_tags(CertificateAuthorityArn=arn)["Tags"]) == 3  # value did not match
    pca.untag_certificate_authority(CertificateAuthorityArn=arn, Tags=[{"Key": "team"}])
    pages = pca.get_paginator("list_tags").paginate(
        CertificateAuthorityArn=arn, PaginationConfig={"PageSize": 1}
    )
    assert sorted(t["Key"] for page in pages for t in page["Tags"]) == ["café", "env"]
    with pytest.raises(pca.exceptions.TooManyTagsException):
        pca.tag_certificate_authority(
            CertificateAuthorityArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)]
        )
    with pytest.raises(pca.exceptions.InvalidTagException):
        pca.tag_certificate_authority(
            CertificateAuthorityArn=arn, Tags=[{"Key": "aws:reserved", "Value": "v"}]
        )
    with pytest.raises(ClientError) as exc:
        pca.tag_certificate_authority(CertificateAuthorityArn=arn, Tags=[{"Key": "bad*key", "Value": "v"}])
    assert error_code(exc) in ("InvalidTagException", "ValidationException")


def test_list_pagination_and_bad_token(pca):
    mine = {create_ca(pca, wait=False) for _ in range(3)}
    pages = list(pca.get_paginator("list_certificate_authorities").paginate(PaginationConfig={"PageSize": 2}))
    listed = [ca["Arn"] for page in pages for ca in page["CertificateAuthorities"]]
    assert mine <= set(listed)
    assert len(listed) == len(set(listed))
    assert all(len(page["CertificateAuthorities"]) <= 2 for page in pages) and len(pages) >= 2
    with pytest.raises(pca.exceptions.InvalidNextTokenException):
        pca.list_certificate_authorities(NextToken="bm90LWEtdG9rZW4=")


def test_idempotent_creation(pca):
    kwargs = dict(
        CertificateAuthorityType="ROOT",
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": SUBJECT,
        },
    )
    a = pca.create_certificate_authority(IdempotencyToken="ca-token-1", **kwargs)["CertificateAuthorityArn"]
    b = pca.create_certificate_authority(IdempotencyToken="ca-token-1", **kwargs)["CertificateAuthorityArn"]
    c = pca.create_certificate_authority(IdempotencyToken="ca-token-2", **kwargs)["CertificateAuthorityArn"]
    assert a == b != c


def test_wire_errors(pca, stack):
    def post(target: str | None, body: bytes) -> tuple[int, Message, dict]:
        headers = {"Content-Type": "application/x-amz-json-1.1"}
        if target:
            headers["X-Amz-Target"] = target
        req = urllib.request.Request(stack.endpoint_url + "/", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.headers, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, err.headers, json.loads(err.read())

    status, headers, body = post("ACMPrivateCA.NoSuchOperation", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    assert headers["x-amzn-ErrorType"] == "UnknownOperationException" and headers["x-amzn-RequestId"]
    status, _, body = post(None, b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = post("ACMPrivateCA.ListCertificateAuthorities", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, _, body = post("ACMPrivateCA.DescribeCertificateAuthority", b"[1, 2]")
    assert (status, body["__type"]) == (400, "ValidationException")
    status, _, body = post("ACMPrivateCA.ListCertificateAuthorities", b'{"MaxResults": "ten"}')
    assert status == 400 and body["__type"] == "ValidationException" and "maxResults" in body["message"]

    with pytest.raises(ClientError) as exc:
        pca.list_certificate_authorities(MaxResults=5000)
    assert error_code(exc) == "ValidationException"
    with pytest.raises(pca.exceptions.InvalidArnException):
        pca.describe_certificate_authority(CertificateAuthorityArn="abcdef")
    missing = (
        "arn:aws:acm-pca:us-east-1:123456789012:certificate-authority/12345678-1234-1234-1234-123456789012"
    )
    with pytest.raises(pca.exceptions.ResourceNotFoundException):
        pca.describe_certificate_authority(CertificateAuthorityArn=missing)
    with pytest.raises(ClientError) as exc:
        pca.create_certificate_authority(
            CertificateAuthorityType="ROOT",
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "EC_prime256v1",
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"Country": "USA", "CommonName": "x"},
            },
        )
    assert error_code(exc) == "ValidationException" and "country" in str(exc.value)


def test_ca_keys_are_encrypted_at_rest(pca, stack):
    arn = create_ca(pca, key="RSA_2048")
    ca_id = arn.rsplit("/", 1)[1]
    blob = redis.Redis.from_url(stack.redis_url).get(f"pcaq:cakey:{ca_id}")
    assert blob and len(blob) > 1000
    assert b"PRIVATE KEY" not in blob
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    with pytest.raises(ValueError):
        load_der_private_key(blob, password=None)


def test_aws_cli_drives_the_lifecycle(aws, pca):
    created = aws.json(
        "create-certificate-authority",
        "--certificate-authority-type",
        "ROOT",
        "--certificate-authority-configuration",
        "KeyAlgorithm=EC_secp384r1,SigningAlgorithm=SHA384WITHECDSA,Subject={CommonName=CLI Root,Organization=pcaq}",
        "--tags",
        "Key=made-by,Value=cli",
    )
    arn = created["CertificateAuthorityArn"]
    aws("wait", "certificate-authority-csr-created", "--certificate-authority-arn", arn)
    described = aws.json("describe-certificate-authority", "--certificate-authority-arn", arn)
    assert described["CertificateAuthority"]["Status"] == "PENDING_CERTIFICATE"
    csr = aws("get-certificate-authority-csr", "--certificate-authority-arn", arn, "--output", "text").stdout
    assert x509.load_pem_x509_csr(csr.encode()).is_signature_valid
    listed = aws.json("list-tags", "--certificate-authority-arn", arn)
    assert listed["Tags"] == [{"Key": "made-by", "Value": "cli"}]
    failed = aws(
        "update-certificate-authority", "--certificate-authority-arn", arn, "--status", "ACTIVE", check=False
    )
    assert failed.returncode == 255 and "InvalidStateException" in failed.stderr
    aws(
        "delete-certificate-authority",
        "--certificate-authority-arn",
        arn,
        "--permanent-deletion-time-in-days",
        "7",
    )
    assert (
        aws.json("describe-certificate-authority", "--certificate-authority-arn", arn)[
            "CertificateAuthority"
        ]["Status"]
        == "DELETED"
    )
