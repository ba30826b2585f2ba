"""Building and signing certificates (docs/wire-contract.md, "Templates"; docs/architecture.md, "Decisions").

Every certificate kind built here is also linted with pkilint (``lint_pkix_cert -s WARNING``) and
chain-verified (OpenSSL, or cryptography for ML-DSA, which OpenSSL 3.0 cannot verify).
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, mldsa, rsa
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
    ObjectIdentifier,
)

from pcaq.errors import InvalidArgument, MalformedCSR
from pcaq.pki import certificates, extension_rules, keys, profiles, validity
from pcaq.pki.certificates import Issuer, IssueRequest, build_certificate, check_csr, parse_csr
from tests.pki import openssl_verify, pkilint_findings, pkilint_findings_many

NOW = datetime.now(UTC).replace(microsecond=0)
CRL_URL = "http://pki.example.com/crl/5f0c3b9e-1111-4222-8333-944455556666.crl"
OCSP_URL = "http://ocsp.example.com"
DS, KE, KA, KCS, CRL = "digital_signature", "key_encipherment", "key_agreement", "key_cert_sign", "crl_sign"
PRIVATE_OID = ObjectIdentifier("1.3.6.1.4.1.55555.1.2")
DER_NULL = b"\x05\x00"

# Issuer kinds: (key algorithm, signing algorithm)
ISSUERS = {
    "RSA": ("RSA_2048", "SHA256WITHRSA"),
    "RSA_PSS": ("RSA_2048", "SHA384WITHRSA_PSS"),
    "P256": ("EC_prime256v1", "SHA256WITHECDSA"),
    "P384": ("EC_secp384r1", "SHA384WITHECDSA"),
    "P521": ("EC_secp521r1", "SHA512WITHECDSA"),
    "MLDSA65": ("ML_DSA_65", "ML_DSA_65"),
}


@functools.cache
def key(algorithm: str, n: int = 0):
    """A private key per (algorithm, n), generated once for the module."""
    return keys.generate_private_key(algorithm)


def name(cn: str | None) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


def make_csr(private_key, cn: str | None = "leaf.example.com", sans=("leaf.example.com",), extensions=()):
    """DER of a CSR; ``extensions`` is a list of (value, critical)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(name(cn))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), False)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical)
    ml_dsa = (mldsa.MLDSA44PrivateKey, mldsa.MLDSA65PrivateKey, mldsa.MLDSA87PrivateKey)
    algorithm = None if isinstance(private_key, ml_dsa + (ed25519.Ed25519PrivateKey,)) else hashes.SHA256()
    return builder.sign(private_key, algorithm).public_bytes(serialization.Encoding.DER)


def request(csr_der: bytes, template: str, signing_algorithm: str, days: int = 30, **kw) -> IssueRequest:
    return IssueRequest(
        csr_der=csr_der,
        signing_algorithm=signing_algorithm,
        template=template,
        not_before=NOW - timedelta(hours=1),
        not_after=NOW + timedelta(days=days),
        serial=int.from_bytes(csr_der[-16:], "big") >> 1 or 1,  # positive, differs per CSR
        **kw,
    )


@dataclass
class Chain:
    root: x509.Certificate
    root_issuer: Issuer
    sub: x509.Certificate
    sub_issuer: Issuer
    signing_algorithm: str


@functools.cache
def chain(kind: str) -> Chain:
    """A root (self-signed from its own CSR with RootCACertificate) and a PathLen0 subordinate."""
    key_alg, sig_alg = ISSUERS[kind]
    n = 1 if kind == "RSA_PSS" else 0
    root_key, sub_key = key(key_alg, 10 + n), key(key_alg, 20 + n)
    own_csr = make_csr(root_key, f"pcaq test root {kind}", sans=())
    root = build_certificate(
        request(own_csr, "RootCACertificate", sig_alg, 3650), Issuer(None, root_key, sig_alg, key_alg)
    )
    root_issuer = Issuer(root, root_key, sig_alg, key_alg)
    sub_req = request(
        make_csr(sub_key, f"pcaq test sub {kind}", sans=()),
        "SubordinateCACertificate_PathLen0",
        sig_alg,
        365,
        crl_url=CRL_URL,
        ocsp_url=OCSP_URL,
    )
    sub = build_certificate(sub_req, root_issuer)
    return Chain(root, root_issuer, sub, Issuer(sub, sub_key, sig_alg, key_alg), sig_alg)


def issue(template: str, csr_der: bytes, kind: str = "P256", via: str = "sub", **kw) -> x509.Certificate:
    c = chain(kind)
    issuer = c.sub_issuer if via == "sub" else c.root_issuer
    return build_certificate(request(csr_der, template, c.signing_algorithm, **kw), issuer)


def ext(cert: x509.Certificate, oid: ObjectIdentifier) -> x509.Extension | None:
    try:
        return cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None


def ku_bits(cert: x509.Certificate) -> set[str]:
    ku = ext(cert, ExtensionOID.KEY_USAGE)
    assert ku is not None and ku.critical
    return extension_rules.key_usage_bits(ku.value)


def eku(cert: x509.Certificate):
    e = ext(cert, ExtensionOID.EXTENDED_KEY_USAGE)
    return None if e is None else (list(e.value), e.critical)


def ski(cert: x509.Certificate) -> bytes:
    return ext(cert, ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest


def aki(cert: x509.Certificate) -> bytes | None:
    e = ext(cert, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    return None if e is None else e.value.key_identifier


def pem(cert: x509.Certificate) -> str:
    return certificates.certificate_pem(cert)


# --- parse_csr / check_csr -------------------------------------------------------------------


def test_parse_csr_accepts_pem_and_der():
    der = make_csr(key("EC_prime256v1"))
    pem_bytes = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    assert parse_csr(der).public_bytes(serialization.Encoding.DER) == der
    assert parse_csr(pem_bytes).public_bytes(serialization.Encoding.DER) == der


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n",
        "double",  # two PEM CSRs: exactly one is allowed
        "trailing",  # DER followed by junk
        "truncated",
    ],
)
def test_parse_csr_rejects_garbage(data):
    der = make_csr(key("EC_prime256v1"))
    one_pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    data = {"double": one_pem + one_pem, "trailing": der + b"\x00junk", "truncated": der[:-10]}.get(
        data, data
    )
    with pytest.raises(MalformedCSR, match="exactly one"):
        parse_csr(data)


@pytest.mark.parametrize(
    "algorithm",
    [
        "RSA_2048",
        "RSA_4096",
        "EC_prime256v1",
        "EC_secp384r1",
        "EC_secp521r1",
        "ML_DSA_44",
        "ML_DSA_65",
        "ML_DSA_87",
    ],
)
def test_check_csr_accepts_the_key_policy(algorithm):
    check_csr(parse_csr(make_csr(key(algorithm))))


def test_check_csr_rejects_a_bad_self_signature():
    der = bytearray(make_csr(key("RSA_2048")))
    der[-1] ^= 0x01  # inside the RSA signature value
    csr = parse_csr(bytes(der))
    with pytest.raises(MalformedCSR, match="signature"):
        check_csr(csr)


@pytest.mark.parametrize(
    ("make_key", "reason"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "1024 bits"),
        (lambda: rsa.generate_private_key(3, 2048), "exponent 3"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "secp256k1"),
        (lambda: ec.generate_private_key(ec.SECP224R1()), "secp224r1"),
        (lambda: ed25519.Ed25519PrivateKey.generate(), "not supported"),
        (lambda: dsa.generate_private_key(2048), "not supported"),
    ],
)
def test_check_csr_refuses_other_keys_with_a_reason(make_key, reason):
    private_key = make_key()
    csr = parse_csr(make_csr(private_key))
    with pytest.raises(InvalidArgument) as err:
        check_csr(csr)
    assert reason in err.value.message and "P-256" in err.value.message


def test_build_refuses_a_weak_csr_key():
    with pytest.raises(InvalidArgument, match="1024 bits"):
        issue("EndEntityCertificate", make_csr(rsa.generate_private_key(65537, 1024)))


# --- roots, subordinates, path lengths -------------------------------------------------------


@pytest.mark.parametrize("kind", list(ISSUERS))
def test_root_self_signed_from_its_own_csr(kind):
    root = chain(kind).root
    assert root.issuer == root.subject == name(f"pcaq test root {kind}")
    bc = ext(root, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    assert ku_bits(root) == {DS, KCS, CRL}
    assert ski(root) == x509.SubjectKeyIdentifier.from_public_key(root.public_key()).digest
    assert aki(root) is None
    assert ext(root, ExtensionOID.CRL_DISTRIBUTION_POINTS) is None
    assert ext(root, ExtensionOID.AUTHORITY_INFORMATION_ACCESS) is None
    assert eku(root) is None
    root.verify_directly_issued_by(root)


@pytest.mark.parametrize("kind", list(ISSUERS))
def test_subordinate_pathlen0(kind):
    c = chain(kind)
    bc = ext(c.sub, ExtensionOID.BASIC_CONSTRAINTS)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ku_bits(c.sub) == {DS, KCS, CRL}
    assert aki(c.sub) == ski(c.root)
    assert ski(c.sub) == x509.SubjectKeyIdentifier.from_public_key(c.sub.public_key()).digest
    cdp = ext(c.sub, ExtensionOID.CRL_DISTRIBUTION_POINTS).value
    assert [n.value for n in cdp[0].full_name] == [CRL_URL]
    aia = ext(c.sub, ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value
    assert [(a.access_method, a.access_location.value) for a in aia] == [
        (AuthorityInformationAccessOID.OCSP, OCSP_URL)
    ]
    c.sub.verify_directly_issued_by(c.root)


def test_root_template_signs_only_the_ca_own_csr():
    root_key = key("EC_prime256v1", 10)
    with pytest.raises(InvalidArgument, match="own CSR"):
        build_certificate(
            request(make_csr(key("EC_prime256v1", 99), "other"), "RootCACertificate", "SHA256WITHECDSA"),
            Issuer(None, root_key, "SHA256WITHECDSA", "EC_prime256v1"),
        )


def test_root_renewal_with_an_existing_certificate_is_self_signed_again():
    c = chain("P256")
    own = make_csr(key("EC_prime256v1", 10), "pcaq test root P256", sans=())
    renewed = build_certificate(request(own, "RootCACertificate", "SHA256WITHECDSA", 900), c.root_issuer)
    assert renewed.issuer == renewed.subject == c.root.subject and aki(renewed) is None
    renewed.verify_directly_issued_by(renewed)


def test_non_root_template_needs_a_ca_certificate():
    issuer = Issuer(None, key("EC_prime256v1", 10), "SHA256WITHECDSA", "EC_prime256v1")
    with pytest.raises(InvalidArgument, match="no certificate yet"):
        build_certificate(
            request(make_csr(key("EC_prime256v1")), "EndEntityCertificate", "SHA256WITHECDSA"), issuer
        )


@functools.cache
def sub_with_pathlen(n: int) -> Issuer:
    c = chain("P256")
    k = key("EC_prime256v1", 40 + n)
    cert = build_certificate(
        request(
            make_csr(k, f"pcaq sub pathlen {n}", sans=()),
            f"SubordinateCACertificate_PathLen{n}",
            "SHA256WITHECDSA",
            300,
        ),
        c.root_issuer,
    )
    return Issuer(cert, k, "SHA256WITHECDSA", "EC_prime256v1")


@pytest.mark.parametrize(
    ("issuer_pathlen", "template", "ok"),
    [
        (1, "SubordinateCACertificate_PathLen0", True),
        (1, "SubordinateCACertificate_PathLen1", False),
        (1, "SubordinateCACertificate_PathLen3_APIPassthrough", False),
        (2, "BlankSubordinateCACertificate_PathLen1_CSRPassthrough", True),
        (2, "BlankSubordinateCACertificate_PathLen2_CSRPassthrough", False),
        (0, "SubordinateCACertificate_PathLen0", False),
        (0, "EndEntityCertificate", True),
    ],
)
def test_path_length_must_fit_under_the_issuer(issuer_pathlen, template, ok):
    issuer = sub_with_pathlen(issuer_pathlen)
    assert ext(issuer.certificate, ExtensionOID.BASIC_CONSTRAINTS).value.path_length == issuer_pathlen
    req = request(make_csr(key("EC_prime256v1", 50), "child CA", sans=()), template, "SHA256WITHECDSA")
    if ok:
        assert build_certificate(req, issuer).issuer == issuer.certificate.subject
    else:
        with pytest.raises(InvalidArgument, match=f"path length constraint is {issuer_pathlen}"):
            build_certificate(req, issuer)


def test_aki_without_issuer_ski_is_sha1_of_the_issuer_key():
    ca_key = key("EC_prime256v1", 60)
    ca_name = name("CA without SKI")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=100))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    issuer = Issuer(ca_cert, ca_key, "SHA256WITHECDSA", "EC_prime256v1")
    cert = build_certificate(
        request(make_csr(key("EC_prime256v1")), "EndEntityCertificate", "SHA256WITHECDSA"), issuer
    )
    assert aki(cert) == x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest


def test_signing_algorithm_must_fit_the_ca_key():
    with pytest.raises(InvalidArgument, match="does not fit"):
        build_certificate(
            request(make_csr(key("EC_prime256v1")), "EndEntityCertificate", "SHA256WITHRSA"),
            chain("P256").sub_issuer,
        )


def test_issuer_caches_sign_kwargs():
    issuer = chain("RSA_PSS").sub_issuer
    assert issuer.sign_kwargs("SHA384WITHRSA_PSS") is issuer.sign_kwargs("SHA384WITHRSA_PSS")


# --- end-entity templates --------------------------------------------------------------------

EE_TEMPLATES = {
    # base name: (EKU OIDs, EKU critical, KU for RSA, KU for EC/ML-DSA)
    "EndEntityCertificate": (
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        False,
        {DS, KE},
        {DS},
    ),
    "EndEntityClientAuthCertificate": ([ExtendedKeyUsageOID.CLIENT_AUTH], False, {DS, KE}, {DS}),
    "EndEntityServerAuthCertificate": ([ExtendedKeyUsageOID.SERVER_AUTH], False, {DS, KE}, {DS}),
    "CodeSigningCertificate": ([ExtendedKeyUsageOID.CODE_SIGNING], True, {DS}, {DS}),
    "OCSPSigningCertificate": ([ExtendedKeyUsageOID.OCSP_SIGNING], True, {DS}, {DS}),
}
FAMILIES = ["", "_CSRPassthrough", "_APIPassthrough", "_APICSRPassthrough"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("base", list(EE_TEMPLATES))
@pytest.mark.parametrize("subject_key", ["RSA_2048", "EC_prime256v1", "EC_secp384r1", "ML_DSA_65"])
def test_end_entity_templates(base, family, subject_key):
    eku_oids, eku_critical, rsa_ku, other_ku = EE_TEMPLATES[base]
    k = key(subject_key, 1)
    cert = issue(base + family, make_csr(k), crl_url=CRL_URL, ocsp_url=OCSP_URL)
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert not bc.critical and not bc.value.ca and bc.value.path_length is None
    assert ku_bits(cert) == (rsa_ku if subject_key.startswith("RSA") else other_ku)
    assert eku(cert) == (eku_oids, eku_critical)
    assert ski(cert) == x509.SubjectKeyIdentifier.from_public_key(k.public_key()).digest
    assert aki(cert) == ski(chain("P256").sub)
    assert ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS) is not None
    assert ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName) == [
        "leaf.example.com"
    ]
    assert cert.subject == name("leaf.example.com") and cert.issuer == chain("P256").sub.subject
    cert.verify_directly_issued_by(chain("P256").sub)


def test_serial_dates_and_public_key_come_from_the_request():
    k = key("EC_prime256v1", 2)
    req = request(make_csr(k), "EndEntityCertificate", "SHA256WITHECDSA", 12)
    cert = build_certificate(req, chain("P256").sub_issuer)
    assert cert.serial_number == req.serial
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (req.not_before, req.not_after)
    assert cert.public_key() == k.public_key()


def test_cdp_and_aia_only_when_given():
    cert = issue("EndEntityCertificate", make_csr(key("EC_prime256v1")))
    assert ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS) is None
    assert ext(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS) is None
    only_crl = issue("EndEntityCertificate", make_csr(key("EC_prime256v1")), crl_url=CRL_URL)
    assert ext(only_crl, ExtensionOID.CRL_DISTRIBUTION_POINTS) is not None
    assert ext(only_crl, ExtensionOID.AUTHORITY_INFORMATION_ACCESS) is None


@pytest.mark.parametrize(
    ("validity_arg", "expected"),
    [
        ({"Value": 10, "Type": "DAYS"}, NOW + timedelta(days=10)),
        ({"Value": 2, "Type": "MONTHS"}, None),
        ({"Value": 1, "Type": "YEARS"}, None),
        (
            {"Value": int((NOW + timedelta(days=50)).timestamp()), "Type": "ABSOLUTE"},
            NOW + timedelta(days=50),
        ),
        (
            {"Value": int((NOW + timedelta(days=40)).strftime("%y%m%d%H%M%S")), "Type": "END_DATE"},
            NOW + timedelta(days=40),
        ),
        (
            {"Value": int((NOW + timedelta(days=41)).strftime("%Y%m%d%H%M%S")), "Type": "END_DATE"},
            NOW + timedelta(days=41),
        ),
    ],
)
def test_every_validity_type_reaches_the_certificate(validity_arg, expected):
    c = chain("P256")
    start, end = validity.compute_window(
        validity_arg, None, NOW, c.sub.not_valid_after_utc, c.sub.not_valid_before_utc, False
    )
    if expected is not None:
        assert end == expected
    req = request(make_csr(key("EC_prime256v1")), "EndEntityCertificate", "SHA256WITHECDSA")
    req.not_before, req.not_after = start, end
    cert = build_certificate(req, c.sub_issuer)
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (start, end)
    assert start == max(NOW - timedelta(hours=1), c.sub.not_valid_before_utc)


# --- passthrough precedence: template > API > CSR ---------------------------------------------

CSR_EXTRAS = [
    (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
    (x509.UnrecognizedExtension(PRIVATE_OID, DER_NULL), False),
    (x509.BasicConstraints(ca=True, path_length=None), True),
    (x509.SubjectKeyIdentifier(b"\x01" * 20), False),
]
KU_DS_KA = x509.KeyUsage(True, False, False, False, True, False, False, False, False)
KU_DS_KE = x509.KeyUsage(True, False, True, False, False, False, False, False, False)


def csr_with_extras(subject_key: str = "EC_prime256v1") -> bytes:
    """A CSR asking for EKU, KU (DS+KA for EC, DS+KE for RSA), a private extension, CA:TRUE and an SKI."""
    ku = KU_DS_KE if subject_key.startswith("RSA") else KU_DS_KA
    return make_csr(key(subject_key, 3), extensions=[*CSR_EXTRAS, (ku, False)])


def test_base_template_copies_only_subject_san_and_key_from_the_csr():
    cert = issue("EndEntityCertificate", csr_with_extras())
    assert ext(cert, PRIVATE_OID) is None
    assert eku(cert)[0] == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not ext(cert, ExtensionOID.BASIC_CONSTRAINTS).value.ca
    assert ski(cert) != b"\x01" * 20


def test_csr_passthrough_copies_what_the_template_leaves_open():
    cert = issue("EndEntityCertificate_CSRPassthrough", csr_with_extras())
    assert ext(cert, PRIVATE_OID).value.value == DER_NULL and not ext(cert, PRIVATE_OID).critical
    assert eku(cert)[0] == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]  # template's
    assert ku_bits(cert) == {DS}  # template's (EC key)
    assert not ext(cert, ExtensionOID.BASIC_CONSTRAINTS).value.ca  # never the CSR's CA:TRUE
    assert ski(cert) == x509.SubjectKeyIdentifier.from_public_key(key("EC_prime256v1", 3).public_key()).digest


def test_blank_csr_passthrough_takes_key_usages_from_the_csr():
    cert = issue("BlankEndEntityCertificate_CSRPassthrough", csr_with_extras())
    assert ku_bits(cert) == {DS, KA}  # and critical, although the CSR asked non-critical
    assert eku(cert) == ([ExtendedKeyUsageOID.EMAIL_PROTECTION], False)
    bc = ext(cert, ExtensionOID.BASIC_CONSTRAINTS)
    assert not bc.value.ca and not bc.critical
    critical_bc = issue(
        "BlankEndEntityCertificate_CriticalBasicConstraints_CSRPassthrough", csr_with_extras()
    )
    assert ext(critical_bc, ExtensionOID.BASIC_CONSTRAINTS).critical


def test_api_passthrough_is_ignored_by_other_templates():
    api = {"Subject": {"CommonName": "api.example.com"}, "Extensions": {"KeyUsage": {"KeyAgreement": True}}}
    for template in ("BlankEndEntityCertificate_CSRPassthrough", "EndEntityCertificate"):
        cert = issue(template, csr_with_extras(), api_passthrough=api)
        assert cert.subject == name("leaf.example.com")
        assert KA not in ku_bits(cert) or template.startswith("Blank")  # the Blank one has it from the CSR
        assert ku_bits(cert) != {KA}


def test_api_beats_csr_and_template_beats_api():
    api = {
        "Subject": {"CommonName": "api.example.com", "Organization": "API Org", "Country": "US"},
        "Extensions": {
            "KeyUsage": {"DigitalSignature": True},
            "ExtendedKeyUsage": [{"ExtendedKeyUsageType": "CLIENT_AUTH"}],
            "SubjectAlternativeNames": [{"DnsName": "api.example.com"}, {"IpAddress": "192.0.2.7"}],
        },
    }
    blank = issue("BlankEndEntityCertificate_APICSRPassthrough", csr_with_extras(), api_passthrough=api)
    assert blank.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "api.example.com"
    assert blank.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "API Org"
    assert ku_bits(blank) == {DS}  # API over the CSR's DS+KA
    assert eku(blank) == ([ExtendedKeyUsageOID.CLIENT_AUTH], False)  # API over the CSR's emailProtection
    san = ext(blank, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.com"]  # API over the CSR's SAN
    assert ext(blank, PRIVATE_OID) is not None  # the CSR still fills what neither template nor API set

    server = issue("EndEntityServerAuthCertificate_APICSRPassthrough", csr_with_extras(), api_passthrough=api)
    assert eku(server) == ([ExtendedKeyUsageOID.SERVER_AUTH], False)  # template over API and CSR
    assert ku_bits(server) == {DS}

    api_only = issue("BlankEndEntityCertificate_APIPassthrough", csr_with_extras(), api_passthrough=api)
    assert ext(api_only, PRIVATE_OID) is None  # no CSR passthrough


def test_csr_subject_and_san_are_used_when_the_api_gives_none():
    cert = issue(
        "BlankEndEntityCertificate_APIPassthrough",
        make_csr(key("RSA_2048", 1)),
        api_passthrough={"Extensions": {"KeyUsage": {"DigitalSignature": True, "KeyEncipherment": True}}},
    )
    assert cert.subject == name("leaf.example.com")
    assert ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName) == [
        "leaf.example.com"
    ]
    assert ku_bits(cert) == {DS, KE}


def test_custom_extensions_and_policies():
    api = {
        "Extensions": {
            "CertificatePolicies": [
                {"CertPolicyId": "2.23.140.1.2.1"},
                {
                    "CertPolicyId": "1.3.6.1.4.1.55555.7",
                    "PolicyQualifiers": [
                        {"PolicyQualifierId": "CPS", "Qualifier": {"CpsUri": "https://pki.example.com/cps"}}
                    ],
                },
            ],
            "CustomExtensions": [
                {
                    "ObjectIdentifier": PRIVATE_OID.dotted_string,
                    "Value": base64.b64encode(b"\x0c\x02hi").decode(),
                    "Critical": True,
                },
                {"ObjectIdentifier": "1.3.6.1.4.1.55555.1.3", "Value": base64.b64encode(DER_NULL).decode()},
                # the template sets EKU, so this one is dropped
                {
                    "ObjectIdentifier": "2.5.29.37",
                    "Value": base64.b64encode(
                        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]).public_bytes()
                    ).decode(),
                },
            ],
        }
    }
    cert = issue("EndEntityCertificate_APIPassthrough", make_csr(key("EC_prime256v1")), api_passthrough=api)
    custom = ext(cert, PRIVATE_OID)
    assert custom.critical and custom.value.value == b"\x0c\x02hi"
    second = ext(cert, ObjectIdentifier("1.3.6.1.4.1.55555.1.3"))
    assert not second.critical and second.value.value == DER_NULL
    assert eku(cert)[0] == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    policies = ext(cert, ExtensionOID.CERTIFICATE_POLICIES).value
    assert [p.policy_identifier.dotted_string for p in policies] == ["2.23.140.1.2.1", "1.3.6.1.4.1.55555.7"]
    assert policies[1].policy_qualifiers == ["https://pki.example.com/cps"]


def test_every_eku_type_and_a_custom_oid():
    types = list(profiles.EKU_TYPES)
    api = {
        "Extensions": {
            "KeyUsage": {"DigitalSignature": True},
            "ExtendedKeyUsage": [{"ExtendedKeyUsageType": t} for t in types]
            + [
                {"ExtendedKeyUsageObjectIdentifier": "1.3.6.1.4.1.55555.9"},
                {"ExtendedKeyUsageType": "SERVER_AUTH"},
            ],
        }
    }
    cert = issue(
        "BlankEndEntityCertificate_APIPassthrough", make_csr(key("EC_prime256v1")), api_passthrough=api
    )
    oids, critical = eku(cert)
    assert oids == [profiles.EKU_TYPES[t] for t in types] + [ObjectIdentifier("1.3.6.1.4.1.55555.9")]
    assert critical  # TIME_STAMPING is among them (RFC 3161); without it the EKU is not critical
    api["Extensions"]["ExtendedKeyUsage"] = [{"ExtendedKeyUsageType": "DOCUMENT_SIGNING"}]
    cert = issue(
        "BlankEndEntityCertificate_APIPassthrough", make_csr(key("EC_prime256v1")), api_passthrough=api
    )
    assert eku(cert) == ([ObjectIdentifier("1.3.6.1.5.5.7.3.36")], False)


@pytest.mark.parametrize(
    ("extensions", "match"),
    [
        (
            {
                "ExtendedKeyUsage": [
                    {"ExtendedKeyUsageType": "SERVER_AUTH", "ExtendedKeyUsageObjectIdentifier": "1.2.3"}
                ]
            },
            "exactly one",
        ),
        ({"ExtendedKeyUsage": [{"ExtendedKeyUsageType": "TELEPATHY"}]}, "TELEPATHY"),
        ({"CustomExtensions": [{"ObjectIdentifier": "1.2.3.4", "Value": "***"}]}, "base64"),
        ({"CustomExtensions": [{"ObjectIdentifier": "1.2.3.4", "Value": "BQA="}] * 2}, "more than once"),
        (
            {
                "KeyUsage": {"DigitalSignature": True},
                "CustomExtensions": [{"ObjectIdentifier": "2.5.29.15", "Value": "AwIHgA=="}],
            },
            "more than once",
        ),
        ({"CustomExtensions": [{"ObjectIdentifier": "not-an-oid", "Value": "BQA="}]}, "object identifier"),
        ({"CertificatePolicies": [{"CertPolicyId": "1.2.3"}, {"CertPolicyId": "1.2.3"}]}, "more than once"),
        (
            {
                "CertificatePolicies": [
                    {
                        "CertPolicyId": "1.2.3",
                        "PolicyQualifiers": [{"PolicyQualifierId": "UNOTICE", "Qualifier": {"CpsUri": "x"}}],
                    }
                ]
            },
            "CPS",
        ),
        ({"KeyUsage": {"KeyEncipherment": True}}, "key_encipherment is not allowed for a EC_prime256v1 key"),
        ({"KeyUsage": {"DigitalSignature": True, "KeyCertSign": True}}, "only in CA certificates"),
    ],
)
def test_bad_api_extensions_are_invalid_argument(extensions, match):
    with pytest.raises(InvalidArgument, match=match):
        issue(
            "BlankEndEntityCertificate_APIPassthrough",
            make_csr(key("EC_prime256v1")),
            api_passthrough={"Extensions": extensions},
        )


def test_ml_dsa_subject_keys_carry_signature_bits_only():
    with pytest.raises(InvalidArgument, match="key_agreement"):
        issue(
            "BlankEndEntityCertificate_APIPassthrough",
            make_csr(key("ML_DSA_65")),
            api_passthrough={"Extensions": {"KeyUsage": {"KeyAgreement": True}}},
        )
    sub = issue(
        "SubordinateCACertificate_PathLen0", make_csr(key("ML_DSA_44"), "ML-DSA sub", sans=()), via="root"
    )
    assert ku_bits(sub) == {DS, KCS, CRL}


def test_blank_ca_templates_need_key_cert_sign():
    csr = make_csr(key("EC_prime256v1", 4), "blank sub", sans=())
    fallback = issue("BlankSubordinateCACertificate_PathLen1_APIPassthrough", csr, via="root")
    assert ku_bits(fallback) == {DS, KCS, CRL}
    assert ext(fallback, ExtensionOID.BASIC_CONSTRAINTS).value.path_length == 1
    with pytest.raises(InvalidArgument, match="must include KeyCertSign"):
        issue(
            "BlankSubordinateCACertificate_PathLen1_APIPassthrough",
            csr,
            via="root",
            api_passthrough={"Extensions": {"KeyUsage": {"DigitalSignature": True}}},
        )
    chosen = issue(
        "BlankSubordinateCACertificate_PathLen1_APIPassthrough",
        csr,
        via="root",
        api_passthrough={"Extensions": {"KeyUsage": {"KeyCertSign": True, "CRLSign": True}}},
    )
    assert ku_bits(chosen) == {KCS, CRL}


def test_blank_end_entity_without_any_key_usage_has_none():
    cert = issue("BlankEndEntityCertificate_CSRPassthrough", make_csr(key("EC_prime256v1")))
    assert ext(cert, ExtensionOID.KEY_USAGE) is None and eku(cert) is None


# --- subject and SAN rules ------------------------------------------------------------------


def test_no_subject_and_no_san_is_refused():
    with pytest.raises(InvalidArgument) as err:
        issue("EndEntityCertificate", make_csr(key("EC_prime256v1"), None, sans=()))
    assert err.value.message == "The CSR must contain a subject name or a subject alternative name."


def test_empty_subject_makes_the_san_critical():
    cert = issue("EndEntityCertificate", make_csr(key("RSA_2048", 1), None))
    assert len(cert.subject) == 0 and ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).critical
    api_san = issue(
        "EndEntityCertificate_APIPassthrough",
        make_csr(key("EC_prime256v1"), None, sans=()),
        api_passthrough={"Extensions": {"SubjectAlternativeNames": [{"DnsName": "only-san.example.com"}]}},
    )
    assert ext(api_san, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).critical


def test_san_is_not_critical_with_a_subject():
    critical_san = [(x509.SubjectAlternativeName([x509.DNSName("x.example.com")]), True)]
    cert = issue(
        "EndEntityCertificate",
        make_csr(key("EC_prime256v1"), "x.example.com", sans=(), extensions=critical_san),
    )
    assert not ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).critical


def test_ca_certificates_need_a_subject():
    with pytest.raises(InvalidArgument, match="non-empty subject"):
        issue("SubordinateCACertificate_PathLen0", make_csr(key("EC_prime256v1", 5), None), via="root")


def test_root_api_passthrough_takes_subject_and_aki_from_the_api():
    root_key = key("EC_prime256v1", 10)
    own_aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key())
    api = {
        "Subject": {"CommonName": "Renamed Root", "Organization": "Example"},
        "Extensions": {
            "CustomExtensions": [
                {"ObjectIdentifier": "2.5.29.35", "Value": base64.b64encode(own_aki.public_bytes()).decode()}
            ]
        },
    }
    cert = build_certificate(
        request(
            make_csr(root_key, "pcaq test root P256", sans=()),
            "RootCACertificate_APIPassthrough",
            "SHA256WITHECDSA",
            1000,
            api_passthrough=api,
        ),
        Issuer(None, root_key, "SHA256WITHECDSA", "EC_prime256v1"),
    )
    assert (
        cert.subject == cert.issuer
        and cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Renamed Root"
    )
    assert aki(cert) == ski(cert)
    cert.verify_directly_issued_by(cert)


def test_rfc_5280_criticality_overrides_the_request():
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier("http://pki.example.com/ca.cer"),
            )
        ]
    )
    cdp = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://pki.example.com/other.crl")], None, None, None
            )
        ]
    )
    csr = make_csr(key("EC_prime256v1"), extensions=[(aia, True), (cdp, True)])
    cert = issue("BlankEndEntityCertificate_CSRPassthrough", csr)
    assert ext(cert, ExtensionOID.AUTHORITY_INFORMATION_ACCESS).critical is False
    assert ext(cert, ExtensionOID.CRL_DISTRIBUTION_POINTS).critical is False
    # the template's CDP (and AIA) win over the CSR's when the CA has them
    with_urls = issue("BlankEndEntityCertificate_CSRPassthrough", csr, crl_url=CRL_URL, ocsp_url=OCSP_URL)
    assert [n.value for n in ext(with_urls, ExtensionOID.CRL_DISTRIBUTION_POINTS).value[0].full_name] == [
        CRL_URL
    ]
    assert (
        ext(with_urls, ExtensionOID.AUTHORITY_INFORMATION_ACCESS).value[0].access_location.value == OCSP_URL
    )


def test_time_stamping_eku_is_critical_in_end_entities():
    api = {
        "Extensions": {
            "KeyUsage": {"DigitalSignature": True},
            "ExtendedKeyUsage": [{"ExtendedKeyUsageType": "TIME_STAMPING"}],
        }
    }
    cert = issue(
        "BlankEndEntityCertificate_APIPassthrough", make_csr(key("EC_prime256v1")), api_passthrough=api
    )
    assert eku(cert) == ([ExtendedKeyUsageOID.TIME_STAMPING], True)


def test_subject_email_is_added_to_the_san():
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Alice"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@example.com"),
        ]
    )
    der = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key("EC_prime256v1"), hashes.SHA256())
    )
    cert = issue("EndEntityClientAuthCertificate", der.public_bytes(serialization.Encoding.DER))
    san = ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san.value.get_values_for_type(x509.RFC822Name) == ["alice@example.com"] and not san.critical
    with_san = issue(
        "EndEntityClientAuthCertificate", make_csr(key("EC_prime256v1"), "Alice", sans=("alice.example.com",))
    )
    assert (
        ext(with_san, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.RFC822Name) == []
    )


def test_rsa_keys_may_not_assert_key_agreement():
    csr = make_csr(key("RSA_2048", 1), extensions=[(KU_DS_KA, True)])
    with pytest.raises(InvalidArgument, match="key_agreement is not allowed for a RSA_2048 key"):
        issue("BlankEndEntityCertificate_CSRPassthrough", csr)
    assert ku_bits(issue("BlankEndEntityCertificate_CSRPassthrough", csr_with_extras("RSA_2048"))) == {DS, KE}


@pytest.mark.parametrize(
    "extension",
    [
        x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None),
        x509.PolicyConstraints(require_explicit_policy=0, inhibit_policy_mapping=None),
        x509.InhibitAnyPolicy(0),
    ],
)
def test_ca_only_extensions_are_refused_in_end_entities(extension):
    csr = make_csr(key("EC_prime256v1"), extensions=[(extension, True)])
    with pytest.raises(InvalidArgument, match="only in CA certificates"):
        issue("BlankEndEntityCertificate_CSRPassthrough", csr)
    ca = issue(
        "BlankSubordinateCACertificate_PathLen1_CSRPassthrough",
        make_csr(key("EC_prime256v1"), "CA", sans=(), extensions=[(extension, False)]),
        via="root",
    )
    assert ext(ca, extension.oid).critical == isinstance(extension, x509.NameConstraints)


def test_both_encipher_only_and_decipher_only_is_refused():
    api = {"Extensions": {"KeyUsage": {"KeyAgreement": True, "EncipherOnly": True, "DecipherOnly": True}}}
    with pytest.raises(InvalidArgument, match="both EncipherOnly and DecipherOnly"):
        issue("BlankEndEntityCertificate_APIPassthrough", make_csr(key("EC_prime256v1")), api_passthrough=api)


def test_names_are_copied_without_validation_like_aws():
    cert = issue(
        "EndEntityServerAuthCertificate",
        make_csr(key("EC_prime256v1"), "*.example.com", sans=("*.example.com",)),
    )
    assert ext(cert, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName) == [
        "*.example.com"
    ]


# --- pkilint and chain verification ---------------------------------------------------------


PASSTHROUGH_KEYS = ("RSA_2048", "EC_secp521r1")


def _lint_cases() -> dict[str, x509.Certificate]:
    """One certificate of each kind: every issuer algorithm, every template family, both key types."""
    cases: dict[str, x509.Certificate] = {}
    for kind in ISSUERS:
        c = chain(kind)
        cases[f"{kind} root"] = c.root
        cases[f"{kind} subordinate"] = c.sub
    for base in EE_TEMPLATES:
        for subject_key in ("RSA_2048", "EC_secp384r1"):
            cases[f"{base} {subject_key}"] = issue(base, make_csr(key(subject_key, 1)), crl_url=CRL_URL)
    for family in FAMILIES[1:]:
        for subject_key in PASSTHROUGH_KEYS:
            cases[f"EndEntityCertificate{family} {subject_key}"] = issue(
                "EndEntityCertificate" + family,
                csr_with_extras(subject_key),
                crl_url=CRL_URL,
                api_passthrough={"Subject": {"CommonName": "api.example.com", "Country": "DE"}},
            )
    api = {
        "Extensions": {
            "KeyUsage": {"DigitalSignature": True},
            "ExtendedKeyUsage": [{"ExtendedKeyUsageType": "EMAIL_PROTECTION"}],
        }
    }
    for blank in ("BlankEndEntityCertificate", "BlankEndEntityCertificate_CriticalBasicConstraints"):
        for family in FAMILIES[1:]:
            # RSA keys for one Blank row, EC for the other: each family is linted with both
            subject_key = "RSA_2048" if blank == "BlankEndEntityCertificate" else "EC_prime256v1"
            cases[blank + family] = issue(blank + family, csr_with_extras(subject_key), api_passthrough=api)
    for n in (1, 2, 3):
        cases[f"PathLen{n}"] = sub_with_pathlen(n).certificate
    cases["BlankSubordinateCACertificate_PathLen1"] = issue(
        "BlankSubordinateCACertificate_PathLen1_APICSRPassthrough",
        make_csr(key("RSA_2048", 4), "blank sub", sans=()),
        via="root",
        crl_url=CRL_URL,
    )
    cases["empty subject, critical SAN"] = issue("EndEntityCertificate", make_csr(key("RSA_2048", 1), None))
    cases["Blank EE without KU"] = issue(
        "BlankEndEntityCertificate_CSRPassthrough", make_csr(key("EC_prime256v1"))
    )
    cases["ML-DSA-65 leaf under EC"] = issue("EndEntityClientAuthCertificate", make_csr(key("ML_DSA_65", 1)))
    rich = {
        "Subject": {
            "Country": "US",
            "Organization": "Example",
            "OrganizationalUnit": "PKI",
            "State": "WA",
            "Locality": "Seattle",
            "CommonName": "rich.example.com",
        },
        "Extensions": {
            "KeyUsage": {"DigitalSignature": True, "NonRepudiation": True},
            "ExtendedKeyUsage": [{"ExtendedKeyUsageType": t} for t in profiles.EKU_TYPES],
            "SubjectAlternativeNames": [
                {"DnsName": "rich.example.com"},
                {"Rfc822Name": "pki@example.com"},
                {"UniformResourceIdentifier": "https://rich.example.com/"},
                {"IpAddress": "2001:db8::1"},
            ],
            "CertificatePolicies": [
                {
                    "CertPolicyId": "1.3.6.1.4.1.55555.7",
                    "PolicyQualifiers": [
                        {"PolicyQualifierId": "CPS", "Qualifier": {"CpsUri": "https://pki.example.com/cps"}}
                    ],
                }
            ],
            "CustomExtensions": [{"ObjectIdentifier": PRIVATE_OID.dotted_string, "Value": "BQA="}],
        },
    }
    email_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Alice"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@example.com"),
        ]
    )
    email_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(email_subject)
        .sign(key("RSA_2048", 1), hashes.SHA256())
    )
    cases["subject e-mail"] = issue(
        "EndEntityClientAuthCertificate", email_csr.public_bytes(serialization.Encoding.DER)
    )
    cases["time stamping"] = issue(
        "BlankEndEntityCertificate_APIPassthrough",
        make_csr(key("RSA_2048", 1)),
        api_passthrough={
            "Extensions": {
                "KeyUsage": {"DigitalSignature": True},
                "ExtendedKeyUsage": [{"ExtendedKeyUsageType": "TIME_STAMPING"}],
            }
        },
    )
    cases["rich API passthrough"] = issue(
        "BlankEndEntityCertificate_APIPassthrough",
        make_csr(key("EC_prime256v1")),
        api_passthrough=rich,
        crl_url=CRL_URL,
        ocsp_url=OCSP_URL,
    )
    return cases


LINT_NAMES = [
    # each signing algorithm is linted on the root and subordinate it signs (leaves: chain tests)
    *(f"{k} {what}" for k in ISSUERS for what in ("root", "subordinate")),
    *(f"{b} {s}" for b in EE_TEMPLATES for s in ("RSA_2048", "EC_secp384r1")),
    *(f"EndEntityCertificate{f} {k}" for f in FAMILIES[1:] for k in PASSTHROUGH_KEYS),
    *(
        b + f
        for b in ("BlankEndEntityCertificate", "BlankEndEntityCertificate_CriticalBasicConstraints")
        for f in FAMILIES[1:]
    ),
    "PathLen1",
    "PathLen2",
    "PathLen3",
    "BlankSubordinateCACertificate_PathLen1",
    "empty subject, critical SAN",
    "Blank EE without KU",
    "ML-DSA-65 leaf under EC",
    "subject e-mail",
    "time stamping",
    "rich API passthrough",
]


@pytest.fixture(scope="module")
def lint_results() -> dict[str, list[str]]:
    cases = _lint_cases()
    assert sorted(cases) == sorted(LINT_NAMES)
    return dict(zip(LINT_NAMES, pkilint_findings_many([pem(cases[n]) for n in LINT_NAMES]), strict=True))


@pytest.mark.parametrize("case", LINT_NAMES)
def test_pkilint_finds_nothing(lint_results, case):
    assert lint_results[case] == []


def test_pkilint_helper_reports_findings():
    # A certificate pcaq would never issue: CA:FALSE, self-issued, no AKI, single-label CDP host.
    k = key("EC_prime256v1", 7)
    bad = (
        x509.CertificateBuilder()
        .subject_name(name("bad"))
        .issuer_name(name("bad"))
        .public_key(k.public_key())
        .serial_number(12345)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
        .add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier("http://localhost/c.crl")], None, None, None
                    )
                ]
            ),
            critical=False,
        )
        .sign(k, hashes.SHA256())
    )
    findings = pkilint_findings(pem(bad))
    assert any("pkix.authority_key_identifier_extension_absent" in f for f in findings)
    assert any("pkix.invalid_uri_syntax" in f for f in findings)
    with pytest.raises(RuntimeError, match="lint_pkix_cert failed"):
        pkilint_findings("not a certificate")


@pytest.mark.parametrize("kind", list(ISSUERS))
def test_chain_verifies(kind):
    c = chain(kind)
    leaf = issue("EndEntityServerAuthCertificate", make_csr(key("RSA_2048", 1)), kind=kind)
    openssl_verify(pem(leaf), [pem(c.sub)], pem(c.root))
    openssl_verify(pem(c.sub), [], pem(c.root))


def test_openssl_verify_helper_fails_on_a_foreign_root():
    leaf = issue("EndEntityCertificate", make_csr(key("EC_prime256v1")), kind="P256")
    with pytest.raises(AssertionError, match="openssl verify failed"):
        openssl_verify(pem(leaf), [pem(chain("P256").sub)], pem(chain("P384").root))
    ml_leaf = issue("EndEntityCertificate", make_csr(key("EC_prime256v1")), kind="MLDSA65")
    with pytest.raises(Exception):  # noqa: B017 - cryptography raises InvalidSignature or ValueError
        openssl_verify(pem(ml_leaf), [pem(chain("MLDSA65").sub)], pem(chain("P256").root))


def test_der_to_pem_matches_cryptography():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pem")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certificates.der_to_pem(der) == cert.public_bytes(serialization.Encoding.PEM).decode()


def test_a_csr_with_an_invalid_version_is_malformed():
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "v")]))
        .sign(key, hashes.SHA256())
    )
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    version_at = der.find(bytes([0x02, 0x01, 0x00]))  # INTEGER 0, the first field of the request info
    der[version_at + 2] = 1  # cryptography raises InvalidVersion, which is not a ValueError
    with pytest.raises(MalformedCSR):
        parse_csr(bytes(der))


# --- what the hot path takes from the CSR and keeps per issuer -------------------------------


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + content


def _csr_with_compressed_point(private_key) -> bytes:
    """A CSR (DER) whose SubjectPublicKeyInfo carries the compressed point (cryptography writes
    uncompressed ones), signed by ``private_key``."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name("compressed"))
        .sign(private_key, hashes.SHA256())
    )
    public_key = private_key.public_key()
    uncompressed = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    at = 2 if uncompressed[1] < 0x80 else 2 + (uncompressed[1] & 0x7F)
    algorithm = uncompressed[at : at + 2 + uncompressed[at + 1]]  # the AlgorithmIdentifier SEQUENCE
    point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    compressed = _der(0x30, algorithm + _der(0x03, b"\x00" + point))
    info = csr.tbs_certrequest_bytes
    start = 2 if info[1] < 0x80 else 2 + (info[1] & 0x7F)
    info = _der(0x30, info[start:].replace(uncompressed, compressed))
    signature = private_key.sign(info, ec.ECDSA(hashes.SHA256()))
    ecdsa_with_sha256 = bytes.fromhex("300a06082a8648ce3d040302")
    return _der(0x30, info + ecdsa_with_sha256 + _der(0x03, b"\x00" + signature))


@pytest.mark.parametrize("algorithm", ["EC_prime256v1", "EC_secp384r1", "EC_secp521r1"])
def test_an_ec_ski_is_the_sha1_of_the_certificate_key_whatever_the_csr_point_form(algorithm):
    k = key(algorithm, 70)
    expected = x509.SubjectKeyIdentifier.from_public_key(k.public_key()).digest
    uncompressed = check_csr(parse_csr(make_csr(k)))
    compressed = check_csr(parse_csr(_csr_with_compressed_point(k)))
    assert uncompressed.public_key.public_numbers() == compressed.public_key.public_numbers()
    for der in (make_csr(k), _csr_with_compressed_point(k)):
        cert = issue("EndEntityCertificate", der)
        assert ski(cert) == expected == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
        cert.verify_directly_issued_by(chain("P256").sub)


@pytest.mark.parametrize("digest", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512(), hashes.SHA224()])
def test_ec_self_signatures_are_verified_for_every_hash(digest):
    k = key("EC_prime256v1", 71)
    csr = x509.CertificateSigningRequestBuilder().subject_name(name("hashes")).sign(k, digest)
    der = csr.public_bytes(serialization.Encoding.DER)
    check_csr(parse_csr(der))
    tampered = bytearray(der)
    tampered[der.find(b"hashes")] ^= 0x20  # in the subject: the signature no longer covers it
    with pytest.raises(MalformedCSR, match="signature"):
        check_csr(parse_csr(bytes(tampered)))
    foreign = bytearray(der)
    foreign[-8] ^= 0x01  # in the signature value
    with pytest.raises(MalformedCSR):
        check_csr(parse_csr(bytes(foreign)))


def test_template_layers_are_built_once_per_issuer_template_key_and_urls():
    issuer = chain("P256").sub_issuer
    profile = profiles.get_profile("EndEntityCertificate")
    layer = issuer.template_layer(profile, "EC_prime256v1", CRL_URL, OCSP_URL)
    assert issuer.template_layer(profile, "EC_prime256v1", CRL_URL, OCSP_URL) is layer
    assert issuer.template_layer(profile, "EC_prime256v1", None, OCSP_URL) is not layer
    assert issuer.template_layer(profile, "RSA_2048", CRL_URL, OCSP_URL) is not layer
    assert layer.ku_checked
    # The layer's extensions reach the builder DER-encoded; the certificate carries the same values.
    cert = issue(
        "EndEntityCertificate", make_csr(key("EC_prime256v1", 72)), crl_url=CRL_URL, ocsp_url=OCSP_URL
    )
    for oid, (value, critical) in layer.entries.items():
        if oid != ExtensionOID.SUBJECT_KEY_IDENTIFIER:
            assert ext(cert, oid).value == value and ext(cert, oid).critical == critical
    assert [e.oid for e in cert.extensions][: len(layer.entries)] == list(layer.entries)
