"""Reading and checking a certificate signing request: exactly one PKCS#10 CSR, a key pcaq certifies
(type, size, no known weakness or blocklist entry: ``pcaq.pki.key_checks``), a structure that parses and
a self-signature that verifies. :func:`check_csr` hands what it read to the builder
(``pcaq.pki.certificates``), so that nothing is parsed twice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from pcaq.errors import InvalidArgument, MalformedCSR
from pcaq.pki import key_checks, keys

_CSR_KEYS = "RSA 2048 to 8192 bits with exponent 65537, EC P-256, P-384 or P-521, or ML-DSA-44/65/87"
_EC_CURVES = frozenset({"EC_prime256v1", "EC_secp384r1", "EC_secp521r1"})
_ML_DSA = frozenset({"ML_DSA_44", "ML_DSA_65", "ML_DSA_87"})

# ECDSA self-signatures are verified with the key check_csr already loaded: the same call cryptography's
# is_signature_valid makes (public_key.verify(signature, TBS, ECDSA(hash))) without loading the key
# a second time. Every other signature algorithm goes through is_signature_valid.
_ECDSA = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: ec.ECDSA(hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: ec.ECDSA(hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: ec.ECDSA(hashes.SHA512()),
}


class CheckedCSR(NamedTuple):
    """What :func:`check_csr` read from a CSR it accepted, so that the builder does not read it again."""

    public_key: Any
    key_algorithm: str  # ``keys.key_algorithm_of`` the public key
    subject: x509.Name
    extensions: x509.Extensions


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Exactly one PKCS#10 CSR, PEM or DER (base64 of the wire already removed). No signature check."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    try:
        if b"-----BEGIN" in data:
            if data.count(b"-----BEGIN") != 1:
                raise ValueError("more than one PEM block")
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        x509.InvalidVersion,
    ):  # InvalidVersion: not a ValueError
        raise MalformedCSR(
            "The CSR could not be parsed: send exactly one PKCS#10 certificate signing request, PEM or DER."
        ) from None


def check_csr(csr: x509.CertificateSigningRequest) -> CheckedCSR:
    """Key policy (InvalidArgument: ``_CSR_KEYS`` only, no weak or blocklisted key: ``key_checks``), then
    structure and self-signature (MalformedCSR). Returns the key, its algorithm, subject and extensions."""
    try:
        public_key = csr.public_key()
        key_algorithm = keys.key_algorithm_of(public_key)
    except (ValueError, UnsupportedAlgorithm, InvalidArgument):
        raise InvalidArgument(f"The CSR's public key type is not supported; use {_CSR_KEYS}.") from None
    if key_algorithm.startswith("RSA_"):
        if not 2048 <= public_key.key_size <= 8192 or public_key.public_numbers().e != 65537:
            raise InvalidArgument(
                f"The CSR's RSA key ({public_key.key_size} bits, exponent {public_key.public_numbers().e}) "
                f"is not supported; use {_CSR_KEYS}."
            )
    elif key_algorithm not in _EC_CURVES and key_algorithm not in _ML_DSA:
        raise InvalidArgument(f"The CSR's key {key_algorithm} is not supported; use {_CSR_KEYS}.")
    key_checks.check_public_key(public_key)  # before the signature: a weak key is named even if unsigned
    try:
        subject = csr.subject  # parsed now so that a bad name fails as MalformedCSR, not later
        extensions = csr.extensions
        ecdsa = _ECDSA.get(csr.signature_algorithm_oid) if key_algorithm in _EC_CURVES else None
        if ecdsa is None:
            valid = csr.is_signature_valid
        else:
            valid = _ecdsa_valid(public_key, csr.signature, csr.tbs_certrequest_bytes, ecdsa)
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension) as exc:
        raise MalformedCSR(f"The CSR could not be parsed: {exc}") from None
    if not valid:
        raise MalformedCSR("The CSR's signature does not verify with its own public key.")
    return CheckedCSR(public_key, key_algorithm, subject, extensions)


def _ecdsa_valid(public_key: Any, signature: bytes, info: bytes, ecdsa: ec.ECDSA) -> bool:
    """``csr.is_signature_valid`` for an ECDSA self-signature, with the key already loaded (``_ECDSA``)."""
    try:
        public_key.verify(signature, info, ecdsa)
    except InvalidSignature:
        return False
    return True
