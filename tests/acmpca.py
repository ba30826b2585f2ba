"""Helpers that drive a running pcaq through boto3's acm-pca client (the integration tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa
from cryptography.x509.oid import NameOID

# The environment of an AWS CLI or botocore client of a test stack: fixed keys, no user configuration.
CLIENT_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
README = Path(__file__).resolve().parents[1] / "README.md"


def run_readme_example(endpoint_url: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run README.md's "Example with the AWS CLI" as a user would paste it, against ``endpoint_url``,
    with the real AWS CLI of the test tools (not one a user's install of pcaq would bring)."""
    section = README.read_text().split("## Example with the AWS CLI", 1)[1]
    script = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    assert "http://127.0.0.1:8080" in script, "the example must point at the default endpoint we replace"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | CLIENT_ENV
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("http://127.0.0.1:8080", endpoint_url)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def pca_client(
    endpoint_url: str, region: str = "us-east-1", secret: str = "secret", access_key: str = "AKIDEXAMPLE"
):
    """A boto3 acm-pca client of a test stack: key AKIDEXAMPLE unless told, one attempt per call (no
    retries hide an error)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "acm-pca",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


SUBJECT = {"CommonName": "pcaq test CA", "Organization": "pcaq", "Country": "US"}
ALGS = {
    "RSA_2048": "SHA256WITHRSA",
    "RSA_3072": "SHA384WITHRSA",
    "RSA_4096": "SHA512WITHRSA",
    "EC_prime256v1": "SHA256WITHECDSA",
    "EC_secp384r1": "SHA384WITHECDSA",
    "EC_secp521r1": "SHA512WITHECDSA",
    "ML_DSA_44": "ML_DSA_44",
    "ML_DSA_65": "ML_DSA_65",
    "ML_DSA_87": "ML_DSA_87",
}
TEMPLATE = "arn:aws:acm-pca:::template/{}/V1"
WAIT = {"Delay": 0.1, "MaxAttempts": 600}


def create_ca(pca, ca_type="ROOT", key="EC_prime256v1", signing=None, wait=True, **extra) -> str:
    """A new CA (its ARN), by default once its key exists and its CSR can be fetched."""
    arn = pca.create_certificate_authority(
        CertificateAuthorityType=ca_type,
        CertificateAuthorityConfiguration={
            "KeyAlgorithm": key,
            "SigningAlgorithm": signing or ALGS[key],
            "Subject": dict(SUBJECT),
        },
        **extra,
    )["CertificateAuthorityArn"]
    if wait:
        pca.get_waiter("certificate_authority_csr_created").wait(
            CertificateAuthorityArn=arn, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300}
        )
    return arn


def error_code(exc_info) -> str:
    """The error code of the ``ClientError`` caught by ``pytest.raises``."""
    return exc_info.value.response["Error"]["Code"]


def make_csr(
    key=None, cn: str | None = "leaf.example.com", sans=("leaf.example.com",), extensions=(), alg=None
):
    """A PEM CSR (a fresh P-256 key unless ``key`` is given)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    if isinstance(key, mldsa.MLDSA65PrivateKey):
        return builder.sign(key, None).public_bytes(serialization.Encoding.PEM)
    return builder.sign(key, alg or hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def issue(pca, ca_arn, csr, signing="SHA256WITHECDSA", template=None, validity=None, **extra) -> str:
    """IssueCertificate; the new certificate's ARN (not yet signed)."""
    kwargs = dict(
        CertificateAuthorityArn=ca_arn,
        Csr=csr,
        SigningAlgorithm=signing,
        Validity=validity or {"Value": 30, "Type": "DAYS"},
        **extra,
    )
    if template:
        kwargs["TemplateArn"] = TEMPLATE.format(template)
    return pca.issue_certificate(**kwargs)["CertificateArn"]


def fetch(pca, ca_arn, cert_arn) -> tuple[x509.Certificate, str, str | None]:
    """Wait for the certificate to be issued: it parsed, its PEM and its chain."""
    pca.get_waiter("certificate_issued").wait(
        CertificateAuthorityArn=ca_arn, CertificateArn=cert_arn, WaiterConfig=WAIT
    )
    got = pca.get_certificate(CertificateAuthorityArn=ca_arn, CertificateArn=cert_arn)
    return (
        x509.load_pem_x509_certificate(got["Certificate"].encode()),
        got["Certificate"],
        got.get("CertificateChain"),
    )


def activate_root(pca, key="EC_prime256v1", signing="SHA256WITHECDSA", years=10, **extra) -> tuple[str, str]:
    """An ACTIVE root CA with its self-signed certificate: its ARN and that PEM (``extra``: more
    CreateCertificateAuthority parameters)."""
    arn = create_ca(pca, "ROOT", key=key, signing=signing, **extra)
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    cert_arn = issue(pca, arn, csr.encode(), signing, "RootCACertificate", {"Value": years, "Type": "YEARS"})
    _, pem, chain = fetch(pca, arn, cert_arn)
    assert chain is None  # a root's own certificate has nothing above it
    pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=pem.encode())
    return arn, pem
