"""The rules a certificate's extensions must follow, whichever layer they came from.

RFC 5280 and RFC 5480 fix some things whatever a template, the API passthrough or the CSR asked for
(the criticality of KU, AKI, SKI and others; KU bits a key type can carry; extensions only CA
certificates may have; a SAN critical exactly when the subject is empty), and pkilint holds every
issued certificate to them. :mod:`pcaq.pki.certificates` assembles the layers; this module turns the
API passthrough into a layer and checks and conforms the merged result.
"""

from __future__ import annotations

import base64
import binascii

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, ObjectIdentifier

from pcaq.errors import InvalidArgument
from pcaq.pki import profiles, subjects
from pcaq.pki.profiles import KEY_USAGE_BITS, Profile

# One layer of extensions: OID -> (value, critical).
Layer = dict[ObjectIdentifier, tuple[x509.ExtensionType, bool]]

SAN = ExtensionOID.SUBJECT_ALTERNATIVE_NAME
KU = ExtensionOID.KEY_USAGE
_EKU = ExtensionOID.EXTENDED_KEY_USAGE

# Criticality RFC 5280 (and pkilint) fixes whatever the CSR or API asked for.
_MUST_BE_CRITICAL = frozenset({KU, ExtensionOID.NAME_CONSTRAINTS})
_MUST_NOT_BE_CRITICAL = frozenset(
    {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.SUBJECT_INFORMATION_ACCESS,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.FRESHEST_CRL,
        ExtensionOID.ISSUER_ALTERNATIVE_NAME,
        ObjectIdentifier("1.2.840.113549.1.9.15"),  # S/MIME capabilities (RFC 4262)
    }
)
_FIXED_CRITICALITY = _MUST_BE_CRITICAL | _MUST_NOT_BE_CRITICAL
# Extensions that only make sense in (and RFC 5280 allows only in) CA certificates.
_CA_ONLY = {
    ExtensionOID.NAME_CONSTRAINTS: "NameConstraints",
    ExtensionOID.POLICY_MAPPINGS: "PolicyMappings",
    ExtensionOID.POLICY_CONSTRAINTS: "PolicyConstraints",
    ExtensionOID.INHIBIT_ANY_POLICY: "InhibitAnyPolicy",
}


def key_usage_bits(ku: x509.KeyUsage) -> frozenset[str]:
    # encipher_only/decipher_only raise unless key_agreement is set
    names = [n for n in KEY_USAGE_BITS[:7] if getattr(ku, n)]
    if ku.key_agreement:
        names += [n for n in KEY_USAGE_BITS[7:] if getattr(ku, n)]
    return frozenset(names)


def key_usage(bits: frozenset[str]) -> x509.KeyUsage:
    return x509.KeyUsage(**{name: name in bits for name in KEY_USAGE_BITS})


def api_layer(extensions: dict) -> Layer:
    """The ``ApiPassthrough.Extensions`` structure as extensions; an OID given twice is InvalidArgument."""
    layer: Layer = {}

    def put(oid: ObjectIdentifier, value: x509.ExtensionType, critical: bool) -> None:
        if oid in layer:
            raise InvalidArgument(f"ApiPassthrough sets the extension {oid.dotted_string} more than once.")
        layer[oid] = (value, critical)

    if extensions.get("KeyUsage"):
        put(KU, subjects.build_key_usage(extensions["KeyUsage"]), True)
    if extensions.get("ExtendedKeyUsage"):
        usages: list[ObjectIdentifier] = []
        for item in extensions["ExtendedKeyUsage"]:
            kind, custom = item.get("ExtendedKeyUsageType"), item.get("ExtendedKeyUsageObjectIdentifier")
            if (kind is None) == (custom is None):
                raise InvalidArgument(
                    "Each ExtendedKeyUsage needs exactly one of ExtendedKeyUsageType or "
                    "ExtendedKeyUsageObjectIdentifier."
                )
            if kind is not None and kind not in profiles.EKU_TYPES:
                raise InvalidArgument(
                    f"ExtendedKeyUsageType {kind!r} is not one of {', '.join(profiles.EKU_TYPES)}."
                )
            if kind is not None:
                oid = profiles.EKU_TYPES[kind]
            else:
                oid = subjects.parse_oid(custom, "ExtendedKeyUsageObjectIdentifier")
            if oid not in usages:
                usages.append(oid)
        put(ExtensionOID.EXTENDED_KEY_USAGE, x509.ExtendedKeyUsage(usages), False)
    if extensions.get("SubjectAlternativeNames"):
        names = [
            subjects.build_general_name(gn, f"SubjectAlternativeNames[{i}]")
            for i, gn in enumerate(extensions["SubjectAlternativeNames"])
        ]
        put(SAN, x509.SubjectAlternativeName(names), False)
    if extensions.get("CertificatePolicies"):
        policies, seen = [], set()
        for policy in extensions["CertificatePolicies"]:
            oid = subjects.parse_oid(policy.get("CertPolicyId"), "CertPolicyId")
            if oid in seen:
                raise InvalidArgument(f"CertificatePolicies lists {oid.dotted_string} more than once.")
            seen.add(oid)
            qualifiers = []
            for qualifier in policy.get("PolicyQualifiers") or []:
                if qualifier.get("PolicyQualifierId") != "CPS":
                    raise InvalidArgument("PolicyQualifierId must be CPS.")
                qualifiers.append((qualifier.get("Qualifier") or {}).get("CpsUri") or "")
            policies.append(x509.PolicyInformation(oid, qualifiers or None))
        put(ExtensionOID.CERTIFICATE_POLICIES, x509.CertificatePolicies(policies), False)
    for custom in extensions.get("CustomExtensions") or []:
        oid = subjects.parse_oid(custom.get("ObjectIdentifier"), "CustomExtension ObjectIdentifier")
        try:
            value = base64.b64decode(custom.get("Value") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            value = b""
        if not value:
            raise InvalidArgument(
                f"CustomExtension {oid.dotted_string}: Value must be base64 of a DER-encoded value."
            )
        put(oid, x509.UnrecognizedExtension(oid, value), bool(custom.get("Critical")))
    return layer


def check_key_usage(extensions: Layer, profile: Profile, key_alg: str) -> None:
    """Add a Blank CA's fallback KU; refuse KU bits the key or the certificate type cannot carry."""
    if KU not in extensions and profile.fallback_key_usage is not None:
        allowed = profiles.ALLOWED_KEY_USAGE[profiles.key_family(key_alg)]
        extensions[KU] = (key_usage(profile.fallback_key_usage & allowed), True)
    if KU not in extensions:
        if profile.ca:
            raise InvalidArgument("A CA certificate needs a KeyUsage with KeyCertSign.")
        return
    value, _ = extensions[KU]
    if not isinstance(value, x509.KeyUsage):
        raise InvalidArgument("Set key usage with the KeyUsage member, not as a custom extension.")
    bits = key_usage_bits(value)
    bad = bits - profiles.ALLOWED_KEY_USAGE[profiles.key_family(key_alg)]
    if bad:
        raise InvalidArgument(
            f"KeyUsage {', '.join(sorted(bad))} is not allowed for a {key_alg} key (RFC 5480 / RFC 5280)."
        )
    if "key_cert_sign" in bits and not profile.ca:
        raise InvalidArgument("KeyUsage KeyCertSign is allowed only in CA certificates; use a CA template.")
    if profile.ca and "key_cert_sign" not in bits:
        raise InvalidArgument("A CA certificate's KeyUsage must include KeyCertSign.")
    if not bits:
        raise InvalidArgument("KeyUsage must assert at least one bit.")
    if {"encipher_only", "decipher_only"} <= bits:
        raise InvalidArgument("KeyUsage may not assert both EncipherOnly and DecipherOnly.")


def conform(extensions: Layer, subject: x509.Name, profile: Profile, added: list[ObjectIdentifier]) -> None:
    """Subject/SAN rules and the criticality RFC 5280 requires, applied to the merged extensions.

    The per-extension rules (:func:`conform_entries`) run on ``added``, the entries the API and CSR
    layers contributed: the template's were conformed when its layer was built.
    """
    attributes = [attribute for rdn in subject.rdns for attribute in rdn]
    if not attributes:
        if SAN not in extensions:
            raise InvalidArgument("The CSR must contain a subject name or a subject alternative name.")
        if profile.ca:
            raise InvalidArgument("A CA certificate needs a non-empty subject name.")
    # RFC 5280 §4.1.2.6: an e-mail address in the subject must also be an rfc822Name in the SAN.
    emails = [a.value for a in attributes if a.oid == NameOID.EMAIL_ADDRESS]
    if emails and not isinstance(extensions.get(SAN, (None,))[0], x509.UnrecognizedExtension):
        names = list(extensions[SAN][0]) if SAN in extensions else []
        try:
            missing = [x509.RFC822Name(e) for e in emails if x509.RFC822Name(e) not in names]
        except ValueError as exc:
            raise InvalidArgument(f"The subject's e-mail address cannot be used: {exc}") from None
        if missing:
            extensions[SAN] = (x509.SubjectAlternativeName(names + missing), False)
    if SAN in extensions:  # RFC 5280 §4.2.1.6: critical exactly when the subject is empty
        extensions[SAN] = (extensions[SAN][0], not attributes)
    if added:
        conform_entries(extensions, added, profile)


def conform_entries(extensions: Layer, oids: list[ObjectIdentifier], profile: Profile) -> None:
    """The rules on single extensions (CA-only extensions, EKU timeStamping, fixed criticality) for the
    entries ``oids`` of ``extensions``."""
    if not profile.ca:
        for oid, label in _CA_ONLY.items():
            if oid in oids:
                raise InvalidArgument(f"{label} is allowed only in CA certificates; use a CA template.")
        if _EKU in oids:
            eku = extensions[_EKU][0]
            if isinstance(eku, x509.ExtendedKeyUsage) and ExtendedKeyUsageOID.TIME_STAMPING in eku:
                extensions[_EKU] = (eku, True)  # RFC 3161 §2.3
    for oid in oids:
        if oid in _FIXED_CRITICALITY:
            extensions[oid] = (extensions[oid][0], oid in _MUST_BE_CRITICAL)
