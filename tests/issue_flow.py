"""The issuance flow in-process: the worker's functions called directly, the real Flask app and a real
Redis, no Celery worker. The ``env`` fixture (tests/conftest.py) builds it; these are its helpers."""

from __future__ import annotations

import base64
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pcaq.records import member_of
from pcaq.worker.tasks import drain_outbox, generate_ca_key


class RecordingQueue:
    """Stands in for Celery: remembers what would have been published."""

    def __init__(self):
        self.keys: list[str] = []
        self.drains = 0
        self.helpers: list[str] = []  # helper drains asked for by full claims (their tokens)

    def drain(self, helper=None):
        if helper:
            self.helpers.append(helper)
        else:
            self.drains += 1

    def create_ca_key(self, ca_id):
        self.keys.append(ca_id)


def call(client, operation: str, body: dict) -> tuple[int, dict]:
    """One API call through the Flask test client: the status and the decoded body."""
    resp = client.post("/", data=json.dumps(body), headers={"X-Amz-Target": f"ACMPrivateCA.{operation}"})
    return resp.status_code, json.loads(resp.data or b"{}")


def leaf_csr() -> str:
    """A base64 PEM CSR of a fresh P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "flow.example.com")]))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def active_root(svc, client, before_import=None) -> str:
    """An ACTIVE root, its key made and its certificate signed by the worker's functions."""
    status, out = call(
        client,
        "CreateCertificateAuthority",
        {
            "CertificateAuthorityType": "ROOT",
            "CertificateAuthorityConfiguration": {
                "KeyAlgorithm": "EC_prime256v1",
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Subject": {"CommonName": "Flow Root"},
            },
        },
    )
    assert status == 200
    arn = out["CertificateAuthorityArn"]
    status, out = call(client, "GetCertificateAuthorityCsr", {"CertificateAuthorityArn": arn})
    assert (status, out["__type"]) == (400, "RequestInProgressException")
    generate_ca_key(svc, arn.rsplit("/", 1)[1])
    generate_ca_key(svc, arn.rsplit("/", 1)[1])  # a redelivered job changes nothing
    status, out = call(client, "GetCertificateAuthorityCsr", {"CertificateAuthorityArn": arn})
    csr_pem = out["Csr"]
    status, out = call(
        client,
        "IssueCertificate",
        {
            "CertificateAuthorityArn": arn,
            "Csr": base64.b64encode(csr_pem.encode()).decode(),
            "SigningAlgorithm": "SHA256WITHECDSA",
            "TemplateArn": "arn:aws:acm-pca:::template/RootCACertificate/V1",
            "Validity": {"Value": 5, "Type": "YEARS"},
        },
    )
    cert_arn = out["CertificateArn"]
    assert drain_outbox(svc) == 1
    _, out = call(client, "GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    assert "CertificateChain" not in out
    if before_import is not None:
        before_import(arn, cert_arn)
    call(
        client,
        "ImportCertificateAuthorityCertificate",
        {
            "CertificateAuthorityArn": arn,
            "Certificate": base64.b64encode(out["Certificate"].encode()).decode(),
        },
    )
    return arn


def issue(client, arn, token=None) -> str:
    """IssueCertificate of a fresh leaf; the certificate's ARN (not yet signed)."""
    body = {
        "CertificateAuthorityArn": arn,
        "Csr": leaf_csr(),
        "SigningAlgorithm": "SHA256WITHECDSA",
        "Validity": {"Value": 7, "Type": "DAYS"},
    }
    if token:
        body["IdempotencyToken"] = token
    status, out = call(client, "IssueCertificate", body)
    assert status == 200, out
    return out["CertificateArn"]


def member(cert_arn: str) -> str:
    """The outbox member of a certificate ARN."""
    parts = cert_arn.split("/")
    return member_of(parts[1], parts[3])
