"""The CA's own CSR and the rules for importing its certificate (docs/wire-contract.md, "CA lifecycle")."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from pcaq.errors import CertificateMismatch, InvalidArgument, InvalidRequest, MalformedCertificate
from pcaq.pki import keys, subjects

# §8.8: only these extensions may be marked critical in an imported CA certificate.
CRITICAL_ALLOWED = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.INHIBIT_ANY_POLICY,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.SUBJECT_DIRECTORY_ATTRIBUTES,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_INFORMATION_ACCESS,
    }
)
_EXTENSION_NAMES = {
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: "authorityInfoAccess",
    ExtensionOID.CRL_DISTRIBUTION_POINTS: "cRLDistributionPoints",
    ExtensionOID.FRESHEST_CRL: "freshestCRL",
    ExtensionOID.POLICY_CONSTRAINTS: "policyConstraints",
}


def build_ca_csr(private_key: Any, configuration: dict[str, Any]) -> x509.CertificateSigningRequest:
    """The CA's own CSR from a ``CertificateAuthorityConfiguration`` wire dict.

    Requests a critical BasicConstraints CA:TRUE (no path length), a critical KeyUsage and a
    SubjectInformationAccess when ``CsrExtensions`` gives them, and is signed with the configured
    ``SigningAlgorithm``. Raises :class:`InvalidArgument` if the key does not match ``KeyAlgorithm``,
    the signing algorithm does not fit the key, or the subject is empty.
    """
    key_algorithm = keys.key_algorithm_of(private_key.public_key())
    if configuration.get("KeyAlgorithm") != key_algorithm:
        raise InvalidArgument(
            f"the CA key is {key_algorithm} but the configuration says {configuration.get('KeyAlgorithm')}"
        )
    signing_algorithm = configuration.get("SigningAlgorithm", "")
    keys.check_signing_algorithm(key_algorithm, signing_algorithm)
    name = subjects.build_name(configuration.get("Subject") or {})
    if len(name) == 0:
        raise InvalidArgument("Subject must contain at least one attribute: a CA needs a non-empty name")

    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    csr_extensions = configuration.get("CsrExtensions") or {}
    if csr_extensions.get("KeyUsage") is not None:
        builder = builder.add_extension(subjects.build_key_usage(csr_extensions["KeyUsage"]), critical=True)
    access = csr_extensions.get("SubjectInformationAccess")
    if access:
        descriptions = [
            subjects.build_access_description(ad, f"CsrExtensions.SubjectInformationAccess[{i}]")
            for i, ad in enumerate(access)
        ]
        builder = builder.add_extension(x509.SubjectInformationAccess(descriptions), critical=False)
    return builder.sign(private_key, **keys.sign_kwargs(signing_algorithm))


def certificate_pem(cert: x509.Certificate) -> str:
    """The PEM text of one certificate."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def chain_pem(certs: list[x509.Certificate]) -> str:
    """Concatenated PEM text of certificates, in the given order."""
    return "".join(certificate_pem(c) for c in certs)


def _describe(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "an empty subject"


def _parse_certificate(data: bytes) -> x509.Certificate:
    """Exactly one certificate from PEM or DER bytes."""
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except (ValueError, x509.InvalidVersion) as exc:
            raise MalformedCertificate("Certificate is not a parsable PEM certificate") from exc
        if len(certs) != 1:
            raise MalformedCertificate(
                f"Certificate must hold exactly one certificate, it holds {len(certs)}; "
                "put the issuing certificates in CertificateChain"
            )
        return certs[0]
    try:
        return x509.load_der_x509_certificate(data)
    except (ValueError, x509.InvalidVersion) as exc:
        raise MalformedCertificate("Certificate is neither a PEM nor a DER certificate") from exc


def _parse_chain(data: bytes | None) -> list[x509.Certificate]:
    """The chain's certificates (PEM; a single DER certificate is accepted too); empty if absent."""
    if data is None or not data.strip():
        return []
    if b"-----BEGIN" in data:
        try:
            return x509.load_pem_x509_certificates(data)
        except (ValueError, x509.InvalidVersion) as exc:
            raise MalformedCertificate("CertificateChain is not parsable PEM certificates") from exc
    try:
        return [x509.load_der_x509_certificate(data)]
    except (ValueError, x509.InvalidVersion) as exc:
        raise MalformedCertificate("CertificateChain is not PEM certificates") from exc


def _extensions(cert: x509.Certificate, where: str) -> x509.Extensions:
    try:
        return cert.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise MalformedCertificate(f"{where} has malformed or duplicate extensions") from exc


def _basic_constraints(cert: x509.Certificate, where: str) -> x509.Extension[x509.BasicConstraints] | None:
    try:
        return _extensions(cert, where).get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return None


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s subject and key issued ``cert``."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and _signed_by(cert, cert)


def _check_own_extensions(cert: x509.Certificate) -> None:
    """§8.8 rules on the imported certificate: critical BasicConstraints CA:TRUE, critical whitelist."""
    extensions = _extensions(cert, "Certificate")
    bc = _basic_constraints(cert, "Certificate")
    if bc is None or not bc.critical or not bc.value.ca:
        raise MalformedCertificate(
            "Certificate must carry a critical Basic Constraints extension with CA=TRUE"
        )
    for ext in extensions:
        if ext.critical and ext.oid not in CRITICAL_ALLOWED:
            name = _EXTENSION_NAMES.get(ext.oid, "extension")
            raise MalformedCertificate(
                f"Certificate marks {name} {ext.oid.dotted_string} critical, which is not allowed; "
                "only AKI, basicConstraints, certificatePolicies, EKU, inhibitAnyPolicy, issuerAltName, "
                "keyUsage, nameConstraints, policyMappings, SAN, subjectDirectoryAttributes, SKI and "
                "subjectInfoAccess may be critical"
            )
    try:
        ku = extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise MalformedCertificate(
            "Certificate has a Key Usage extension without keyCertSign, so it cannot sign"
        )


def _check_chain(cert: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """Issuer-first chain ending in a self-signed root; every link verifies; path lengths hold."""
    for i, link in enumerate(chain, start=1):
        if link == cert:
            raise MalformedCertificate(
                f"CertificateChain certificate {i} is the certificate being imported; the chain must "
                "hold only its issuers"
            )
    path = [cert, *chain]
    for i in range(1, len(path)):
        child, issuer = path[i - 1], path[i]
        child_name = "the imported certificate" if i == 1 else f"CertificateChain certificate {i - 1}"
        if not _signed_by(child, issuer):
            raise MalformedCertificate(
                f"CertificateChain certificate {i} ({_describe(issuer)}) did not issue {child_name} "
                f"({_describe(child)}); order the chain from the issuer of the certificate up to the root"
            )
    root = chain[-1]
    if not _is_self_signed(root):
        raise MalformedCertificate(
            f"CertificateChain certificate {len(chain)} ({_describe(root)}) is not a self-signed root; "
            "the chain must end with the root certificate"
        )
    for i, issuer in enumerate(chain, start=1):
        where = f"CertificateChain certificate {i}"
        bc = _basic_constraints(issuer, where)
        if bc is None:
            if issuer is root:
                continue  # old v1 roots carry no extensions; a trust anchor is taken as it is
            raise MalformedCertificate(f"{where} ({_describe(issuer)}) has no Basic Constraints; it is no CA")
        if not bc.value.ca:
            raise MalformedCertificate(
                f"{where} ({_describe(issuer)}) is not a CA (Basic Constraints CA=FALSE)"
            )
        limit = bc.value.path_length
        if limit is None:
            continue
        # RFC 5280 6.1.4: self-issued certificates below do not count against the path length.
        below = sum(1 for c in path[:i] if c.issuer != c.subject)
        if below > limit:
            raise MalformedCertificate(
                f"{where} ({_describe(issuer)}) allows {limit} CA certificate(s) below it "
                f"but the path has {below}, counting the imported CA"
            )


def validate_import(
    ca_type: str, ca_public_key_pem: str, certificate: bytes, chain: bytes | None
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """Check an ImportCertificateAuthorityCertificate request.

    ``certificate`` and ``chain`` are the raw bytes after base64 decoding (PEM; DER accepted for a
    single certificate). Returns the parsed certificate and chain (issuer first, root last; empty
    for a ROOT CA). Raises :class:`MalformedCertificate` for unparsable or structurally wrong input,
    :class:`InvalidRequest` when the certificate/chain does not fit the CA type, and
    :class:`CertificateMismatch` when the certificate does not carry the CA's public key.
    """
    cert = _parse_certificate(certificate)
    certs = _parse_chain(chain)
    if ca_type == "ROOT":
        if certs:
            raise InvalidRequest(
                "a ROOT CA takes only its self-signed certificate; leave CertificateChain out"
            )
        if cert.issuer != cert.subject:
            raise InvalidRequest(
                "a ROOT CA takes only a self-signed certificate, but this certificate was issued by "
                f"{cert.issuer.rfc4514_string()}; import it into a SUBORDINATE CA with its chain"
            )
        if not _signed_by(cert, cert):
            raise MalformedCertificate(
                "Certificate claims to be self-signed but its signature does not verify"
            )
    elif ca_type == "SUBORDINATE":
        if not certs:
            raise InvalidRequest(
                "a SUBORDINATE CA needs CertificateChain: its issuer's certificate up to the root"
            )
        if _is_self_signed(cert):
            raise InvalidRequest(
                "a SUBORDINATE CA cannot take a self-signed certificate; sign its CSR with a parent CA"
            )
    else:
        raise InvalidArgument(f"unknown CA type {ca_type!r}; expected ROOT or SUBORDINATE")

    try:
        cert_key = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateMismatch("the certificate's public key is not the CA's key") from exc
    ca_key = keys.load_public_key_pem(ca_public_key_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if cert_key != ca_key:
        raise CertificateMismatch(
            "the certificate's public key is not this CA's key; sign the CSR from GetCertificateAuthorityCsr"
        )

    _check_own_extensions(cert)
    if certs:
        _check_chain(cert, certs)
    return cert, certs
