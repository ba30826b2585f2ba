"""Template catalogue (docs/wire-contract.md) and the RFC 5480 key-usage rule (docs/architecture.md)."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from pcaq.errors import InvalidArgument
from pcaq.pki import profiles
from pcaq.pki.profiles import DEFAULT_TEMPLATE, get_profile, key_family, key_usage_for

_PATHLEN = [f"SubordinateCACertificate_PathLen{n}" for n in range(4)]
_BLANK_SUB = [f"BlankSubordinateCACertificate_PathLen{n}" for n in range(4)]
_EE = [
    "CodeSigningCertificate",
    "EndEntityCertificate",
    "EndEntityClientAuthCertificate",
    "EndEntityServerAuthCertificate",
    "OCSPSigningCertificate",
]
_BLANK_EE = ["BlankEndEntityCertificate", "BlankEndEntityCertificate_CriticalBasicConstraints"]

# §8.2 "Full catalogue of template names", written out family by family.
CATALOGUE = {
    "Base": [*_EE, "RootCACertificate", *_PATHLEN],
    "_CSRPassthrough": [f"{n}_CSRPassthrough" for n in _BLANK_EE + _BLANK_SUB + _EE + _PATHLEN],
    "_APIPassthrough": [
        *(f"{n}_APIPassthrough" for n in _BLANK_EE + _EE + _PATHLEN + _BLANK_SUB),
        "RootCACertificate_APIPassthrough",
    ],
    "_APICSRPassthrough": [f"{n}_APICSRPassthrough" for n in _BLANK_EE + _EE + _PATHLEN + _BLANK_SUB],
}
ALL_NAMES = [name for names in CATALOGUE.values() for name in names]

DS, KE, KCS, CRL = "digital_signature", "key_encipherment", "key_cert_sign", "crl_sign"
SERVER = ExtendedKeyUsageOID.SERVER_AUTH


def test_catalogue_is_exactly_the_contract():
    assert len(ALL_NAMES) == len(set(ALL_NAMES)) == 56
    assert set(profiles.PROFILES) == set(ALL_NAMES)
    for name in ALL_NAMES:
        assert get_profile(name).name == name


@pytest.mark.parametrize(
    "name", ["NoSuchTemplate", "EndEntityCertificate/V1", "", "BlankEndEntityCertificate"]
)
def test_unknown_template_is_invalid_argument(name):
    with pytest.raises(InvalidArgument) as err:
        get_profile(name)
    assert err.value.message == f"The template {name} does not exist."


def test_default_template():
    assert DEFAULT_TEMPLATE == "EndEntityCertificate"
    assert get_profile(DEFAULT_TEMPLATE).key_usage == {DS, KE}


@pytest.mark.parametrize("family", list(CATALOGUE))
def test_passthrough_flags_follow_the_family(family):
    expected = {
        "Base": (False, False),
        "_CSRPassthrough": (True, False),
        "_APIPassthrough": (False, True),
        "_APICSRPassthrough": (True, True),
    }[family]
    for name in CATALOGUE[family]:
        p = get_profile(name)
        assert (p.csr_passthrough, p.api_passthrough) == expected, name


@pytest.mark.parametrize("name", ALL_NAMES)
def test_basic_constraints_and_root_flags(name):
    p = get_profile(name)
    is_root = name.startswith("RootCACertificate")
    assert p.is_root == is_root
    assert (p.include_cdp, p.include_aia) == (not is_root, not is_root)
    if "PathLen" in name:
        n = int(name.split("PathLen")[1][0])
        assert (p.ca, p.path_length, p.bc_critical) == (True, n, True)
    elif is_root:
        assert (p.ca, p.path_length, p.bc_critical) == (True, None, True)
        assert p.key_usage == {DS, KCS, CRL} and p.eku is None
    else:
        assert (p.ca, p.path_length) == (False, None)
        assert p.bc_critical == ("CriticalBasicConstraints" in name)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_blank_templates_leave_key_usage_open(name):
    p = get_profile(name)
    if name.startswith("Blank"):
        assert p.key_usage is None and p.eku is None
        assert p.fallback_key_usage == ({DS, KCS, CRL} if p.ca else None)
    else:
        assert p.key_usage is not None


@pytest.mark.parametrize(
    ("base", "ku", "eku", "critical"),
    [
        (
            "EndEntityCertificate",
            {DS, KE},
            (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            False,
        ),
        ("EndEntityClientAuthCertificate", {DS, KE}, (ExtendedKeyUsageOID.CLIENT_AUTH,), False),
        ("EndEntityServerAuthCertificate", {DS, KE}, (ExtendedKeyUsageOID.SERVER_AUTH,), False),
        ("CodeSigningCertificate", {DS}, (ExtendedKeyUsageOID.CODE_SIGNING,), True),
        ("OCSPSigningCertificate", {DS}, (ExtendedKeyUsageOID.OCSP_SIGNING,), True),
        ("SubordinateCACertificate_PathLen2", {DS, KCS, CRL}, None, False),
    ],
)
def test_base_rows_in_every_family(base, ku, eku, critical):
    for suffix in ("", "_CSRPassthrough", "_APIPassthrough", "_APICSRPassthrough"):
        p = get_profile(base + suffix)
        assert (p.key_usage, p.eku, p.eku_critical) == (ku, eku, critical)


@pytest.mark.parametrize(
    ("template", "key_algorithm", "expected"),
    [
        ("EndEntityCertificate", "RSA_2048", {DS, KE}),
        ("EndEntityCertificate", "RSA_4096", {DS, KE}),
        ("EndEntityCertificate", "EC_prime256v1", {DS}),
        ("EndEntityServerAuthCertificate_APIPassthrough", "EC_secp521r1", {DS}),
        ("EndEntityClientAuthCertificate", "ML_DSA_65", {DS}),
        ("CodeSigningCertificate", "RSA_3072", {DS}),
        ("SubordinateCACertificate_PathLen0", "EC_secp384r1", {DS, KCS, CRL}),
        ("SubordinateCACertificate_PathLen0", "ML_DSA_87", {DS, KCS, CRL}),
        ("RootCACertificate", "RSA_2048", {DS, KCS, CRL}),
    ],
)
def test_key_usage_follows_rfc_5480(template, key_algorithm, expected):
    assert key_usage_for(get_profile(template), key_algorithm) == expected


def test_key_usage_for_blank_is_none():
    assert key_usage_for(get_profile("BlankEndEntityCertificate_APIPassthrough"), "RSA_2048") is None


def test_allowed_key_usage_per_family():
    assert profiles.ALLOWED_KEY_USAGE["RSA"] == set(profiles.KEY_USAGE_BITS) - {
        "key_agreement",
        "encipher_only",
        "decipher_only",
    }
    assert (
        KE not in profiles.ALLOWED_KEY_USAGE["EC"]
        and "data_encipherment" not in profiles.ALLOWED_KEY_USAGE["EC"]
    )
    assert "key_agreement" in profiles.ALLOWED_KEY_USAGE["EC"]
    assert profiles.ALLOWED_KEY_USAGE["ML_DSA"] == {DS, "content_commitment", KCS, CRL}


def test_key_family():
    assert [key_family(a) for a in ("RSA_8192", "EC_secp256k1", "ML_DSA_44")] == ["RSA", "EC", "ML_DSA"]
    with pytest.raises(InvalidArgument):
        key_family("SM2")


def test_eku_type_mapping():
    assert set(profiles.EKU_TYPES) == {
        "SERVER_AUTH",
        "CLIENT_AUTH",
        "CODE_SIGNING",
        "EMAIL_PROTECTION",
        "TIME_STAMPING",
        "OCSP_SIGNING",
        "SMART_CARD_LOGIN",
        "DOCUMENT_SIGNING",
        "CERTIFICATE_TRANSPARENCY",
    }
    assert profiles.EKU_TYPES["SMART_CARD_LOGIN"] == ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")
    assert profiles.EKU_TYPES["DOCUMENT_SIGNING"] == ObjectIdentifier("1.3.6.1.5.5.7.3.36")
    assert profiles.EKU_TYPES["CERTIFICATE_TRANSPARENCY"] == ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")
    assert profiles.EKU_TYPES["TIME_STAMPING"] == ObjectIdentifier("1.3.6.1.5.5.7.3.8")


def test_profiles_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_profile("EndEntityCertificate").ca = True  # type: ignore[misc]
