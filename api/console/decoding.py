"""A certificate's fields as the console shows them (decoded once per page, never stored)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
    ObjectIdentifier,
    SignatureAlgorithmOID,
)

from pcaq.pki.profiles import KEY_USAGE_BITS


def _names_of(holder: type) -> dict[ObjectIdentifier, str]:
    """The public constant names of a class of OIDs (SERVER_AUTH, ECDSA_WITH_SHA256...), by OID."""
    return {v: k for k, v in vars(holder).items() if isinstance(v, ObjectIdentifier)}


_USAGES = _names_of(ExtendedKeyUsageOID)
_ACCESS = _names_of(AuthorityInformationAccessOID)
_SIGNATURES = _names_of(SignatureAlgorithmOID)
_EXTENSIONS = _names_of(ExtensionOID)


@dataclass(frozen=True)
class Decoded:
    """What the certificate page and the lists show of one certificate."""

    common_name: str
    subject: str
    issuer: str
    not_before: float
    not_after: float
    public_key: str
    signature_algorithm: str
    sha256: str
    pem: str
    names: list[str] = field(default_factory=list)  # subject alternative names, as "type: value"
    extensions: list[tuple[str, str]] = field(default_factory=list)  # (name, value) of the others


def _key(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.removesuffix("PublicKey").lstrip("_")


def _san(value: x509.SubjectAlternativeName) -> list[str]:
    out = []
    for general in value:
        kind = type(general).__name__.removesuffix("Name")
        out.append(
            f"{kind}: {general.value if not isinstance(general, x509.DirectoryName) else general.value.rfc4514_string()}"
        )
    return out


def _extension_text(ext: x509.Extension) -> str:
    value = ext.value
    if isinstance(value, x509.KeyUsage):
        # encipher_only and decipher_only mean something (and can be read) only with key_agreement
        bits = [
            n for n in KEY_USAGE_BITS if (value.key_agreement or "cipher_only" not in n) and getattr(value, n)
        ]
        return ", ".join(bits)
    if isinstance(value, x509.ExtendedKeyUsage):
        return ", ".join(_USAGES.get(u, u.dotted_string) for u in value)
    if isinstance(value, x509.BasicConstraints):
        return f"CA: {value.ca}" + (
            f", path length {value.path_length}" if value.path_length is not None else ""
        )
    if isinstance(value, x509.CRLDistributionPoints):
        return ", ".join(str(n.value) for dp in value for n in (dp.full_name or []))
    if isinstance(value, x509.AuthorityInformationAccess):
        return ", ".join(
            f"{_ACCESS.get(d.access_method, d.access_method.dotted_string)}: {d.access_location.value}"
            for d in value
        )
    if isinstance(value, (x509.SubjectKeyIdentifier,)):
        return value.digest.hex(":")
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return (value.key_identifier or b"").hex(":")
    return str(value)[:512]


def decode(der: bytes) -> Decoded:
    """The fields of a DER certificate."""
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    names: list[str] = []
    extensions: list[tuple[str, str]] = []
    for ext in cert.extensions:
        if ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME:
            names = _san(ext.value)
        else:
            label = _EXTENSIONS.get(ext.oid, ext.oid.dotted_string).replace("_", " ").capitalize()
            extensions.append((label + (" (critical)" if ext.critical else ""), _extension_text(ext)))
    return Decoded(
        common_name=str(cns[0].value) if cns else "",
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        public_key=_key(cert),
        signature_algorithm=_SIGNATURES.get(
            cert.signature_algorithm_oid, cert.signature_algorithm_oid.dotted_string
        ),
        sha256=hashlib.sha256(der).hexdigest(),
        pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        names=names,
        extensions=extensions,
    )


def brief(der: bytes | None) -> tuple[str, float | None]:
    """The common name and Not After of a certificate, for a list row ('' and None when none)."""
    if not der:
        return "", None
    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (str(cns[0].value) if cns else ""), cert.not_valid_after_utc.timestamp()
