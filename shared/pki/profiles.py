"""Certificate templates as declarative profiles (docs/wire-contract.md, "Templates").

Each AWS template name maps to one :class:`Profile` row; ``pcaq.pki.certificates`` applies a profile
without knowing template names. Adding a template is adding a row to ``_BASE_ROWS`` or
``_BLANK_ROWS`` (the passthrough families are generated from those rows).

Key usage follows RFC 5280 / RFC 5480 rather than AWS's template text (docs/architecture.md): a profile lists the
bits it wants, and :func:`key_usage_for` keeps only those the subject key's family may carry, so an EC
or ML-DSA end-entity key gets ``digital_signature`` without ``key_encipherment``; RSA keeps both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from pcaq.errors import InvalidArgument

DEFAULT_TEMPLATE = "EndEntityCertificate"

# The nine KeyUsage bits, spelled as ``cryptography.x509.KeyUsage`` keyword arguments, in DER bit order.
KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)

# Bits a public key of each family may assert. RSA: RFC 3279 §2.3.1 (no key agreement, so no
# encipherOnly/decipherOnly either). EC: RFC 5480 §3 (no key or data encipherment). ML-DSA:
# signature-only (RFC 9881: digitalSignature, nonRepudiation, keyCertSign, cRLSign).
ALLOWED_KEY_USAGE = {
    "RSA": frozenset(KEY_USAGE_BITS) - {"key_agreement", "encipher_only", "decipher_only"},
    "EC": frozenset(KEY_USAGE_BITS) - {"key_encipherment", "data_encipherment"},
    "ML_DSA": frozenset({"digital_signature", "content_commitment", "key_cert_sign", "crl_sign"}),
}

# ApiPassthrough ExtendedKeyUsageType -> OID.
EKU_TYPES: dict[str, ObjectIdentifier] = {
    "SERVER_AUTH": ExtendedKeyUsageOID.SERVER_AUTH,
    "CLIENT_AUTH": ExtendedKeyUsageOID.CLIENT_AUTH,
    "CODE_SIGNING": ExtendedKeyUsageOID.CODE_SIGNING,
    "EMAIL_PROTECTION": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "TIME_STAMPING": ExtendedKeyUsageOID.TIME_STAMPING,
    "OCSP_SIGNING": ExtendedKeyUsageOID.OCSP_SIGNING,
    "SMART_CARD_LOGIN": ObjectIdentifier("1.3.6.1.4.1.311.20.2.2"),
    "DOCUMENT_SIGNING": ObjectIdentifier("1.3.6.1.5.5.7.3.36"),
    "CERTIFICATE_TRANSPARENCY": ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4"),
}


@dataclass(frozen=True)
class Profile:
    """What one template fixes. ``None`` for ``key_usage``/``eku`` means "the template leaves it open"."""

    name: str
    ca: bool
    path_length: int | None
    bc_critical: bool
    key_usage: frozenset[str] | None
    eku: tuple[ObjectIdentifier, ...] | None
    eku_critical: bool = False
    csr_passthrough: bool = False
    api_passthrough: bool = False
    is_root: bool = False
    include_cdp: bool = True
    include_aia: bool = True
    # Blank templates: KU when neither the API nor the CSR supplies one (a CA certificate must carry
    # KU with keyCertSign, RFC 5280 §4.2.1.3); None means the certificate goes without KU.
    fallback_key_usage: frozenset[str] | None = None


_EE_KU = frozenset({"digital_signature", "key_encipherment"})
_SIGN_KU = frozenset({"digital_signature"})
_CA_KU = frozenset({"digital_signature", "key_cert_sign", "crl_sign"})
_EKU = ExtendedKeyUsageOID


def _row(name, ca, path_length, bc_critical, key_usage, eku, eku_critical=False, **kw) -> Profile:
    return Profile(name, ca, path_length, bc_critical, key_usage, eku, eku_critical, **kw)


# Templates with a fixed key usage (§8.2 "Base templates"); each also exists in the passthrough families
# listed by _FAMILIES, except the root, whose passthrough variants are listed explicitly below.
_BASE_ROWS = (
    _row("EndEntityCertificate", False, None, False, _EE_KU, (_EKU.SERVER_AUTH, _EKU.CLIENT_AUTH)),
    _row("EndEntityClientAuthCertificate", False, None, False, _EE_KU, (_EKU.CLIENT_AUTH,)),
    _row("EndEntityServerAuthCertificate", False, None, False, _EE_KU, (_EKU.SERVER_AUTH,)),
    _row("CodeSigningCertificate", False, None, False, _SIGN_KU, (_EKU.CODE_SIGNING,), True),
    _row("OCSPSigningCertificate", False, None, False, _SIGN_KU, (_EKU.OCSP_SIGNING,), True),
    *(_row(f"SubordinateCACertificate_PathLen{n}", True, n, True, _CA_KU, None) for n in range(4)),
)

# Blank templates: only Basic Constraints is fixed; KU and EKU come from the API and/or the CSR.
# They exist only in passthrough families (a Blank base template would carry no KU source at all).
_BLANK_ROWS = (
    _row("BlankEndEntityCertificate", False, None, False, None, None),
    _row("BlankEndEntityCertificate_CriticalBasicConstraints", False, None, True, None, None),
    *(
        _row(
            f"BlankSubordinateCACertificate_PathLen{n}", True, n, True, None, None, fallback_key_usage=_CA_KU
        )
        for n in range(4)
    ),
)

# Family suffix -> (csr_passthrough, api_passthrough).
_FAMILIES = {
    "_CSRPassthrough": (True, False),
    "_APIPassthrough": (False, True),
    "_APICSRPassthrough": (True, True),
}

# A self-signed root cannot be revoked: no CDP, no OCSP pointer (§8.2).
_ROOT = {"is_root": True, "include_cdp": False, "include_aia": False}
_ROOT_ROWS = (
    _row("RootCACertificate", True, None, True, _CA_KU, None, **_ROOT),
    _row(
        "RootCACertificate_APIPassthrough",
        True,
        None,
        True,
        _CA_KU,
        None,
        api_passthrough=True,
        **_ROOT,
    ),
)


def _with_family(row: Profile, suffix: str) -> Profile:
    csr, api = _FAMILIES[suffix]
    return dataclasses.replace(row, name=row.name + suffix, csr_passthrough=csr, api_passthrough=api)


def _catalogue() -> dict[str, Profile]:
    rows = list(_BASE_ROWS) + list(_ROOT_ROWS)
    rows += [_with_family(row, suffix) for row in _BASE_ROWS + _BLANK_ROWS for suffix in _FAMILIES]
    return {row.name: row for row in rows}


PROFILES: dict[str, Profile] = _catalogue()


def get_profile(template_name: str) -> Profile:
    """The profile of a template name (without ``/V1``); InvalidArgument if there is no such template."""
    try:
        return PROFILES[template_name]
    except (KeyError, TypeError):
        raise InvalidArgument(f"The template {template_name} does not exist.") from None


def key_family(key_algorithm: str) -> str:
    """``"RSA"``, ``"EC"`` or ``"ML_DSA"`` for a ``keys.key_algorithm_of`` name such as ``EC_secp384r1``."""
    for family in ("RSA", "EC", "ML_DSA"):
        if key_algorithm.startswith(family + "_"):
            return family
    raise InvalidArgument(f"Unsupported subject key algorithm {key_algorithm}; use an RSA, EC or ML-DSA key.")


def key_usage_for(profile: Profile, key_algorithm: str) -> frozenset[str] | None:
    """The KU bits the profile sets for a subject key of ``key_algorithm`` (RFC 5480); None for Blank."""
    if profile.key_usage is None:
        return None
    return profile.key_usage & ALLOWED_KEY_USAGE[key_family(key_algorithm)]
