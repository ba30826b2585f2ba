"""Building and signing one certificate from a CSR and a profile (docs/wire-contract.md, "Templates").

:func:`build_certificate` applies a :class:`pcaq.pki.profiles.Profile` in three layers with the
precedence **template > API passthrough > CSR**: each layer maps extension OIDs to values and the
first layer that sets an OID wins. The CSR layer always carries the SAN (AWS copies SANs from the
CSR) and, under ``*_CSRPassthrough`` templates, every other requested extension; the API layer exists
only under ``*_APIPassthrough`` templates; the template layer holds Basic Constraints, KU/EKU when
the template fixes them, SKI, AKI (not for roots), CDP and AIA.

Rules enforced beyond the templates (:mod:`pcaq.pki.extension_rules`), so that every certificate passes
pkilint's RFC 5280 linter:
KU bits must suit the subject key (RFC 5480: no encipherment bits for EC, signature bits only for
ML-DSA), keyCertSign only with CA:TRUE and always on a CA; a CA needs a non-empty subject; the SAN is
critical exactly when the subject is empty (RFC 5280 §4.2.1.6); a subject emailAddress is added to
the SAN as an rfc822Name (§4.1.2.6); an end-entity EKU with timeStamping is critical (RFC 3161);
NameConstraints, PolicyMappings, PolicyConstraints and InhibitAnyPolicy are refused in end-entity
certificates; and the criticality RFC 5280 fixes (KU and NameConstraints critical; AKI, SKI, AIA,
SIA, CDP, FreshestCRL, IssuerAltName not) overrides what the CSR or API asked for.
Name *values* (DNS names, URIs, e-mail addresses) are copied as given, like AWS does: pkilint's
RFC 5280 linter flags wildcard DNS names and URIs without a dotted host (SPIFFE IDs, URNs), and those
are still issued.

The hot path is :func:`build_certificate`: an :class:`Issuer` caches everything derived from the CA
certificate, and per (template, subject key algorithm, CDP and OCSP URLs) the template layer, already
checked and conformed and built as extension objects, so build one Issuer per CA and reuse it for a
whole batch. Per certificate the CSR's key is loaded once (:func:`check_csr` hands it, its subject and
its extensions to the builder); only the SKI and what the API and CSR layers add are checked anew.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtensionOID,
    ObjectIdentifier,
)

from pcaq.errors import InvalidArgument
from pcaq.pki import extension_rules, keys, profiles, subjects
from pcaq.pki.csrs import check_csr, parse_csr
from pcaq.pki.extension_rules import KU, SAN, Layer
from pcaq.pki.profiles import Profile

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
# Extensions a CSR never supplies: the builder owns the key identifiers and Basic Constraints.
_CSR_NEVER = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)
_SKI = ExtensionOID.SUBJECT_KEY_IDENTIFIER
_LAYER_CACHE_SIZE = 256  # template layers an Issuer keeps (templates x key algorithms x URLs in use)


@dataclass
class IssueRequest:
    """One certificate to sign. ``not_before``/``not_after`` come from ``validity.compute_window``."""

    csr_der: bytes
    signing_algorithm: str
    template: str
    not_before: datetime
    not_after: datetime
    serial: int
    api_passthrough: dict | None = None
    crl_url: str | None = None  # CDP URI, when the CA's CRL is enabled and not omitted
    ocsp_url: str | None = None  # AIA OCSP URI, when the CA's OCSP is enabled


@dataclass
class Issuer:
    """A signing CA. ``certificate`` is None while a root has no certificate yet (self-signing).

    Everything derived from the certificate is computed once here; reuse the object across calls.
    """

    certificate: x509.Certificate | None
    private_key: Any
    signing_algorithm: str
    key_algorithm: str
    name: x509.Name | None = field(init=False)
    spki_der: bytes = field(init=False, repr=False)
    aki: x509.AuthorityKeyIdentifier = field(init=False, repr=False)
    path_length: int | None = field(init=False)
    _sign_kwargs: dict[str, dict] = field(init=False, default_factory=dict, repr=False)
    _layers: dict[tuple, _TemplateLayer] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        public_key = self.private_key.public_key()
        self.spki_der = public_key.public_bytes(*_SPKI)
        self.name = None if self.certificate is None else self.certificate.subject
        self.path_length = None
        ski = None
        if self.certificate is not None:
            exts = self.certificate.extensions
            try:
                ski = exts.get_extension_for_class(x509.SubjectKeyIdentifier).value
            except x509.ExtensionNotFound:
                pass
            try:
                self.path_length = exts.get_extension_for_class(x509.BasicConstraints).value.path_length
            except x509.ExtensionNotFound:
                pass
        if ski is None:  # §8.2: without an SKI the AKI is the SHA-1 of the issuer's public key
            ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
        self.aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)

    def sign_kwargs(self, signing_algorithm: str) -> dict:
        """``keys.sign_kwargs`` checked against this CA's key and cached per algorithm."""
        kwargs = self._sign_kwargs.get(signing_algorithm)
        if kwargs is None:
            keys.check_signing_algorithm(self.key_algorithm, signing_algorithm)
            kwargs = self._sign_kwargs[signing_algorithm] = keys.sign_kwargs(signing_algorithm)
        return kwargs

    def template_layer(
        self, profile: Profile, key_alg: str, crl_url: str | None, ocsp_url: str | None
    ) -> _TemplateLayer:
        """The template layer for a subject key of ``key_alg``, built once per (template, key
        algorithm, URLs) and kept (it depends on nothing else of the request)."""
        cache_key = (profile.name, key_alg, crl_url, ocsp_url)
        layer = self._layers.get(cache_key)
        if layer is None:
            if len(self._layers) >= _LAYER_CACHE_SIZE:
                self._layers.clear()
            layer = self._layers[cache_key] = _template_layer(profile, self, key_alg, crl_url, ocsp_url)
        return layer


@dataclass(frozen=True)
class _TemplateLayer:
    """The extensions a template fixes for one issuer, subject key algorithm and pair of URLs.

    ``entries`` are already conformed (criticality, CA-only extensions, EKU timeStamping) and, when the
    template fixes the KeyUsage, already checked against the key and the certificate type
    (``ku_checked``): neither depends on the certificate's subject nor on the other layers. The SKI
    slot holds a placeholder (the SKI is the subject key's); ``built`` holds the other entries as
    ``x509.Extension`` objects, used as long as an entry is still the very tuple of ``entries``.
    """

    entries: Layer
    built: dict[ObjectIdentifier, x509.Extension]
    ku_checked: bool


def der_to_pem(der: bytes) -> str:
    """PEM text of a DER certificate, without parsing it (GetCertificate's hot path)."""
    b64 = base64.b64encode(der).decode("ascii")
    body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"


def certificate_pem(cert: x509.Certificate) -> str:
    """The certificate as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _template_layer(
    profile: Profile, issuer: Issuer, key_alg: str, crl_url: str | None, ocsp_url: str | None
) -> _TemplateLayer:
    """The template layer (see :class:`_TemplateLayer`); use :meth:`Issuer.template_layer`, which keeps it."""
    layer: Layer = {
        ExtensionOID.BASIC_CONSTRAINTS: (
            x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length),
            profile.bc_critical,
        )
    }
    bits = profiles.key_usage_for(profile, key_alg)
    if bits is not None:
        layer[KU] = (extension_rules.key_usage(bits), True)
    if profile.eku is not None:
        eku = x509.ExtendedKeyUsage(list(profile.eku))
        layer[ExtensionOID.EXTENDED_KEY_USAGE] = (eku, profile.eku_critical)
    layer[_SKI] = (None, False)  # a placeholder: the subject key's SKI goes here, per certificate
    if not profile.is_root:
        layer[ExtensionOID.AUTHORITY_KEY_IDENTIFIER] = (issuer.aki, False)
    if profile.include_cdp and crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        layer[ExtensionOID.CRL_DISTRIBUTION_POINTS] = (x509.CRLDistributionPoints([point]), False)
    if profile.include_aia and ocsp_url:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        layer[ExtensionOID.AUTHORITY_INFORMATION_ACCESS] = (x509.AuthorityInformationAccess([access]), False)
    # A template KU wins over the other layers, so its check depends on nothing per certificate.
    ku_checked = KU in layer
    if ku_checked:
        extension_rules.check_key_usage(layer, profile, key_alg)
    extension_rules.conform_entries(layer, [oid for oid in layer if oid != _SKI], profile)
    built = {
        oid: _encoded(oid, value, critical) for oid, (value, critical) in layer.items() if value is not None
    }
    return _TemplateLayer(layer, built, ku_checked)


def _encoded(oid: ObjectIdentifier, value: x509.ExtensionType, critical: bool) -> x509.Extension:
    """The extension with its value already DER-encoded: the builder copies the bytes instead of encoding
    the value again for every certificate (the certificate's bytes are the same)."""
    try:
        der = value.public_bytes()
    except NotImplementedError:  # a value type cryptography cannot encode on its own: let the builder do it
        return x509.Extension(oid, critical, value)
    return x509.Extension(oid, critical, x509.UnrecognizedExtension(oid, der))


def build_certificate(request: IssueRequest, issuer: Issuer) -> x509.Certificate:
    """Verify the CSR (:func:`check_csr`), apply the request's template and sign with ``issuer``.

    Raises InvalidArgument for requests the template or RFC 5280 cannot honour, MalformedCSR for a CSR
    that does not parse or verify.
    """
    profile = profiles.get_profile(request.template)
    csr = parse_csr(request.csr_der)
    public_key, key_alg, csr_subject, csr_extensions = check_csr(csr)
    sign_kwargs = issuer.sign_kwargs(request.signing_algorithm)

    if profile.is_root:
        if public_key.public_bytes(*_SPKI) != issuer.spki_der:
            raise InvalidArgument(
                f"The template {profile.name} signs only the certificate authority's own CSR."
            )
    elif issuer.certificate is None:
        raise InvalidArgument(
            "The certificate authority has no certificate yet; only a root template can be used."
        )
    elif profile.ca and issuer.path_length is not None and profile.path_length >= issuer.path_length:
        raise InvalidArgument(
            f"The template {profile.name} asks for path length {profile.path_length}, but the issuing CA's "
            f"path length constraint is {issuer.path_length}; use a PathLen below {issuer.path_length}."
        )

    api = (request.api_passthrough or {}) if profile.api_passthrough else {}
    subject = subjects.build_name(api["Subject"]) if api.get("Subject") else csr_subject

    csr_layer: Layer = {}
    for ext in csr_extensions:
        if ext.oid == SAN or (profile.csr_passthrough and ext.oid not in _CSR_NEVER):
            csr_layer[ext.oid] = (ext.value, ext.critical)
    api_layer = extension_rules.api_layer(api["Extensions"]) if api.get("Extensions") else {}
    template = issuer.template_layer(profile, key_alg, request.crl_url, request.ocsp_url)
    extensions = template.entries.copy()
    ski_value = x509.SubjectKeyIdentifier.from_public_key(public_key)
    ski = extensions[_SKI] = (ski_value, False)
    added: list[ObjectIdentifier] = []
    for layer in (api_layer, csr_layer):  # lower precedence: only OIDs not set yet
        for oid, entry in layer.items():
            if oid not in extensions:
                extensions[oid] = entry
                added.append(oid)

    if not template.ku_checked:
        extension_rules.check_key_usage(extensions, profile, key_alg)
    extension_rules.conform(extensions, subject, profile, added)

    fixed, built = template.entries, template.built
    digest = ski_value.digest  # SHA-1, 20 bytes: its DER is a short-form OCTET STRING
    ski_der = x509.UnrecognizedExtension(_SKI, b"\x04" + bytes([len(digest)]) + digest)
    builder = x509.CertificateBuilder(
        issuer_name=subject if profile.is_root else issuer.name,
        subject_name=subject,
        public_key=public_key,
        serial_number=request.serial,
        not_valid_before=request.not_before,
        not_valid_after=request.not_after,
        extensions=[
            built[oid]
            if entry is fixed.get(oid)
            else x509.Extension(_SKI, False, ski_der)
            if entry is ski
            else x509.Extension(oid, entry[1], entry[0])
            for oid, entry in extensions.items()
        ],
    )
    return builder.sign(issuer.private_key, **sign_kwargs)
