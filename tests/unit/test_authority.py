"""The read-only view of a stored CA document (shared/ca/authority.py)."""

from __future__ import annotations

import pytest

from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.authority import Authority
from pcaq.errors import InvalidArn
from tests.signer import ExternalCA

ARN = "arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/0b5c3a1e-1111-4222-8333-444455556666"
T0 = 1_700_000_000.0


def stored(**internal) -> dict:
    """A CA document as the CA service stores it."""
    return {
        "Arn": ARN,
        "OwnerAccount": "111122223333",
        "Type": "SUBORDINATE",
        "Status": "ACTIVE",
        "NotBefore": T0 - 10,
        "NotAfter": T0 + 10,
        "CertificateAuthorityConfiguration": {
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": "Sub"},
        },
        "RevocationConfiguration": {
            "CrlConfiguration": {"Enabled": True, "ExpirationInDays": 7},
            "OcspConfiguration": {"Enabled": False},
        },
        "UsageMode": "SHORT_LIVED_CERTIFICATE",
        "internal": {"version": 4, "tags": [{"Key": "team", "Value": "pki"}], **internal},
    }


def test_the_view_reads_the_public_and_the_internal_parts_once():
    ca = Authority.of(stored(public_key_pem="KEY", csr_pem="CSR", certificate_pem="CERT", chain_pem="CHAIN"))
    assert ca.arn == parse_ca_arn(ARN) and ca.id == ARN.rsplit("/", 1)[1]
    assert (ca.status, ca.type, ca.is_root, ca.version) == ("ACTIVE", "SUBORDINATE", False, 4)
    assert (ca.key_algorithm, ca.signing_algorithm) == ("EC_prime256v1", "SHA256WITHECDSA")
    assert (ca.public_key_pem, ca.csr_pem, ca.certificate_pem, ca.chain_pem) == (
        "KEY",
        "CSR",
        "CERT",
        "CHAIN",
    )
    assert (ca.not_before, ca.not_after, ca.usage_mode) == (T0 - 10, T0 + 10, "SHORT_LIVED_CERTIFICATE")
    assert ca.tags == ({"Key": "team", "Value": "pki"},)
    assert ca.crl_enabled and not ca.ocsp_enabled and ca.crl_configuration["ExpirationInDays"] == 7


def test_a_ca_without_key_or_certificate_reads_none():
    ca = Authority.of(stored())
    assert ca.public_key_pem is ca.certificate_pem is ca.chain_pem is None
    assert ca.certificate is None


def test_the_effective_status_and_the_output_shape():
    ca = Authority.of(stored())
    assert ca.effective_status(T0) == "ACTIVE"
    assert ca.effective_status(T0 + 11) == "EXPIRED"
    described = ca.described(T0 + 11)
    assert described["Status"] == "EXPIRED" and described["Arn"] == ARN
    assert "internal" not in described


def test_the_ca_certificate_is_parsed_on_first_use_and_kept():
    external = ExternalCA("Parsed Once")
    ca = Authority.of(stored(certificate_pem=external.pem))
    assert "certificate" not in vars(ca)  # nothing parsed while building the view
    assert ca.certificate == external.cert
    assert ca.certificate is ca.certificate


def test_a_document_with_a_bad_arn_is_refused():
    with pytest.raises(InvalidArn):
        Authority.of({**stored(), "Arn": "arn:aws:acm-pca:us-east-1:1:certificate-authority/x"})
