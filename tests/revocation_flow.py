"""Revocation in-process: the worker's functions called directly, the real Flask app and a real Redis,
no Celery worker. The ``flow`` fixture (tests/unit/conftest.py) builds a :class:`Flow`; these are its
helpers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pcaq.worker.services import Services
from pcaq.worker.tasks import drain_outbox, generate_ca_key

ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"
ENABLED = {
    "CrlConfiguration": {"Enabled": True, "ExpirationInDays": 3},
    "OcspConfiguration": {"Enabled": True},
}


class RecordingQueue:
    """Stands in for Celery on the worker side: remembers what would have been published."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __getattr__(self, name):
        return lambda *args: self.calls.append((name, *args))


@dataclass
class Flow:
    """The in-process services and a Flask test client of the API."""

    svc: Services
    client: object

    def call(self, operation: str, body: dict) -> tuple[int, dict]:
        resp = self.client.post(
            "/", data=json.dumps(body), headers={"X-Amz-Target": f"ACMPrivateCA.{operation}"}
        )
        return resp.status_code, json.loads(resp.data or b"{}")

    def ok(self, operation: str, body: dict) -> dict:
        status, out = self.call(operation, body)
        assert status == 200, out
        return out

    def error(self, operation: str, body: dict) -> str:
        status, out = self.call(operation, body)
        assert status == 400, out
        return out["__type"]


def csr_b64(cn: str = "leaf.example.com") -> str:
    """A base64 PEM CSR of a fresh P-256 key, for ``cn``."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode()


def sign(flow: Flow, cert_arn: str) -> None:
    """Sign the certificate as a worker would (exactly one signed)."""
    parts = cert_arn.split("/")
    assert drain_outbox(flow.svc) == 1
    assert flow.svc.store.get_certificate(parts[1], parts[3]).status == "ISSUED"


def make_root(flow: Flow, revocation: dict | None = None) -> tuple[str, str]:
    """An ACTIVE EC root (its ARN, and the ARN of its own certificate)."""
    body = {
        "CertificateAuthorityType": "ROOT",
        "CertificateAuthorityConfiguration": {
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "Revocation Root", "Organization": "pcaq tests"},
        },
    }
    if revocation:
        body["RevocationConfiguration"] = revocation
    arn = flow.ok("CreateCertificateAuthority", body)["CertificateAuthorityArn"]
    generate_ca_key(flow.svc, arn.rsplit("/", 1)[1])
    csr = flow.ok("GetCertificateAuthorityCsr", {"CertificateAuthorityArn": arn})["Csr"]
    own = flow.ok(
        "IssueCertificate",
        {
            "CertificateAuthorityArn": arn,
            "Csr": base64.b64encode(csr.encode()).decode(),
            "SigningAlgorithm": "SHA256WITHECDSA",
            "TemplateArn": ROOT_TEMPLATE,
            "Validity": {"Value": 5, "Type": "YEARS"},
        },
    )["CertificateArn"]
    sign(flow, own)
    pem = flow.ok("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": own})["Certificate"]
    flow.ok(
        "ImportCertificateAuthorityCertificate",
        {"CertificateAuthorityArn": arn, "Certificate": base64.b64encode(pem.encode()).decode()},
    )
    return arn, own


def issue_leaf(flow: Flow, arn: str, signed: bool = True) -> tuple[str, str]:
    """A leaf certificate's ARN and serial (hex)."""
    cert_arn = flow.ok(
        "IssueCertificate",
        {
            "CertificateAuthorityArn": arn,
            "Csr": csr_b64(),
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Validity": {"Value": 7, "Type": "DAYS"},
        },
    )["CertificateArn"]
    if signed:
        sign(flow, cert_arn)
    return cert_arn, cert_arn.rsplit("/", 1)[1]


def revoke(flow: Flow, arn: str, serial: str, reason: str = "KEY_COMPROMISE") -> tuple[int, dict]:
    """RevokeCertificate: the status and the decoded body."""
    return flow.call(
        "RevokeCertificate",
        {"CertificateAuthorityArn": arn, "CertificateSerial": serial, "RevocationReason": reason},
    )
