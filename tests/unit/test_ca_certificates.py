"""The CA's own CSR and the import rules for its certificate (shared/pki/ca_certificates.py)."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from pcaq.errors import CertificateMismatch, InvalidArgument, InvalidRequest, MalformedCertificate
from pcaq.pki import ca_certificates as cac
from pcaq.pki import keys, subjects

NOW = datetime.datetime.now(datetime.UTC)
SIGNER = {"EC_prime256v1": "SHA256WITHECDSA", "RSA_2048": "SHA256WITHRSA_PSS", "ML_DSA_44": "ML_DSA_44"}


@pytest.fixture(scope="module")
def key_of():
    cache: dict[str, object] = {}

    def get(label: str, alg: str = "EC_prime256v1"):
        if label not in cache:
            cache[label] = keys.generate_private_key(alg)
        return cache[label]

    return get


def config(key_alg: str = "EC_prime256v1", sig_alg: str | None = None, **extra) -> dict:
    return {
        "KeyAlgorithm": key_alg,
        "SigningAlgorithm": sig_alg or SIGNER[key_alg],
        "Subject": {"Country": "US", "Organization": "Example", "CommonName": "Example CA"},
        **extra,
    }


def make_cert(
    cn: str,
    public_key,
    issuer_key,
    issuer: x509.Certificate | None = None,
    *,
    ca: bool = True,
    pathlen: int | None = None,
    bc: str = "critical",
    key_usage: x509.KeyUsage | None = None,
    extra: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    sig_alg: str | None = None,
) -> x509.Certificate:
    """A CA certificate for tests; self-issued when ``issuer`` is None."""
    name = subjects.build_name({"Country": "US", "CommonName": cn})
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if bc != "absent":
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen), bc == "critical")
    builder = builder.add_extension(
        key_usage
        or x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    for ext, critical in extra:
        builder = builder.add_extension(ext, critical)
    alg = sig_alg or SIGNER[keys.key_algorithm_of(issuer_key.public_key())]
    return builder.sign(issuer_key, **keys.sign_kwargs(alg))


def pem(*certs: x509.Certificate) -> bytes:
    return cac.chain_pem(list(certs)).encode()


def full_chain(pki) -> bytes:
    return pem(pki["inter"], pki["root"])


def spki_pem(key) -> str:
    return keys.public_key_pem(key)


@pytest.fixture(scope="module")
def pki(key_of):
    """root -> intermediate -> (the CA being imported, keyed 'sub')."""
    root = make_cert("Root", key_of("root").public_key(), key_of("root"))
    inter = make_cert("Intermediate", key_of("inter").public_key(), key_of("root"), root)
    sub = make_cert("Sub", key_of("sub").public_key(), key_of("inter"), inter)
    return {"root": root, "inter": inter, "sub": sub}


# --- build_ca_csr ------------------------------------------------------------------------------


@pytest.mark.parametrize("key_alg", list(SIGNER))
def test_ca_csr_requests_critical_ca_true_and_verifies(key_of, key_alg):
    key = key_of(f"csr-{key_alg}", key_alg)
    csr = cac.build_ca_csr(key, config(key_alg))
    assert csr.is_signature_valid
    bc = csr.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    assert [e.oid for e in csr.extensions] == [ExtensionOID.BASIC_CONSTRAINTS]
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Example CA"
    assert keys.public_key_pem(csr.public_key()) == keys.public_key_pem(key)


def test_rsa_pss_ca_csr_uses_pss(key_of):
    csr = cac.build_ca_csr(key_of("csr-RSA_2048", "RSA_2048"), config("RSA_2048", "SHA384WITHRSA_PSS"))
    assert csr.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    assert csr.signature_hash_algorithm.name == "sha384"


def test_ca_csr_carries_key_usage_and_sia(key_of):
    cfg = config(
        CsrExtensions={
            "KeyUsage": {"KeyCertSign": True, "CRLSign": True, "DigitalSignature": True},
            "SubjectInformationAccess": [
                {
                    "AccessMethod": {"AccessMethodType": "CA_REPOSITORY"},
                    "AccessLocation": {"UniformResourceIdentifier": "rsync://repo.test/ca/"},
                }
            ],
        }
    )
    csr = cac.build_ca_csr(key_of("csr-ec"), cfg)
    ku = csr.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.key_encipherment
    sia = csr.extensions.get_extension_for_class(x509.SubjectInformationAccess)
    assert not sia.critical
    assert sia.value[0].access_location.value == "rsync://repo.test/ca/"
    assert csr.is_signature_valid


def test_ca_csr_refuses_mismatches_and_empty_subject(key_of):
    key = key_of("csr-ec")
    with pytest.raises(InvalidArgument, match="RSA_2048"):
        cac.build_ca_csr(key, config("EC_prime256v1") | {"KeyAlgorithm": "RSA_2048"})
    with pytest.raises(InvalidArgument, match="SHA256WITHECDSA"):
        cac.build_ca_csr(key, config("EC_prime256v1", "SHA256WITHRSA"))
    with pytest.raises(InvalidArgument, match="Subject"):
        cac.build_ca_csr(key, config() | {"Subject": {}})


# --- validate_import: ROOT ---------------------------------------------------------------------


def test_root_self_signed_is_accepted_as_pem_or_der(key_of, pki):
    root = pki["root"]
    for blob in (pem(root), root.public_bytes(serialization.Encoding.DER)):
        for chain in (None, b"", b"\n"):
            cert, certs = cac.validate_import("ROOT", spki_pem(key_of("root")), blob, chain)
            assert cert == root and certs == []


def test_root_with_chain_is_refused(key_of, pki):
    with pytest.raises(InvalidRequest, match="CertificateChain"):
        cac.validate_import("ROOT", spki_pem(key_of("root")), pem(pki["root"]), pem(pki["root"]))


def test_root_given_an_issued_certificate_is_refused(key_of, pki):
    with pytest.raises(InvalidRequest, match="self-signed"):
        cac.validate_import("ROOT", spki_pem(key_of("sub")), pem(pki["sub"]), None)


def test_root_with_a_forged_self_signature_is_malformed(key_of):
    # Same name as issuer and subject, but signed by another key.
    forged = make_cert("Root", key_of("root").public_key(), key_of("other"))
    with pytest.raises(MalformedCertificate, match="signature"):
        cac.validate_import("ROOT", spki_pem(key_of("root")), pem(forged), None)


def test_wrong_key_is_a_certificate_mismatch(key_of, pki):
    with pytest.raises(CertificateMismatch):
        cac.validate_import("ROOT", spki_pem(key_of("other")), pem(pki["root"]), None)
    with pytest.raises(CertificateMismatch):
        cac.validate_import("SUBORDINATE", spki_pem(key_of("other")), pem(pki["sub"]), full_chain(pki))


@pytest.mark.parametrize(
    "blob",
    [
        b"garbage",
        b"",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"\x30\x03\x02\x01\x01",
    ],
)
def test_garbage_certificate_is_malformed(key_of, blob):
    with pytest.raises(MalformedCertificate):
        cac.validate_import("ROOT", spki_pem(key_of("root")), blob, None)


def test_two_certificates_in_certificate_are_malformed(key_of, pki):
    with pytest.raises(MalformedCertificate, match="exactly one"):
        cac.validate_import("ROOT", spki_pem(key_of("root")), pem(pki["root"], pki["inter"]), None)


def test_unknown_ca_type_is_refused(key_of, pki):
    with pytest.raises(InvalidArgument):
        cac.validate_import("INTERMEDIATE", spki_pem(key_of("root")), pem(pki["root"]), None)


# --- validate_import: extension rules ----------------------------------------------------------


def _aia() -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier("http://o.test")
            )
        ]
    )


def test_critical_aia_is_malformed(key_of):
    cert = make_cert("Root", key_of("root").public_key(), key_of("root"), extra=((_aia(), True),))
    with pytest.raises(MalformedCertificate, match="authorityInfoAccess"):
        cac.validate_import("ROOT", spki_pem(key_of("root")), pem(cert), None)


def test_non_critical_aia_and_critical_whitelisted_extensions_are_fine(key_of):
    nc = x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.com")], excluded_subtrees=None)
    cert = make_cert("Root", key_of("root").public_key(), key_of("root"), extra=((_aia(), False), (nc, True)))
    assert cac.validate_import("ROOT", spki_pem(key_of("root")), pem(cert), None)[0] == cert


def test_critical_unknown_extension_is_named(key_of):
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    cert = make_cert("Root", key_of("root").public_key(), key_of("root"), extra=((ext, True),))
    with pytest.raises(MalformedCertificate, match=r"1\.3\.6\.1\.4\.1\.99999\.1"):
        cac.validate_import("ROOT", spki_pem(key_of("root")), pem(cert), None)


@pytest.mark.parametrize(("bc", "ca"), [("noncritical", True), ("absent", True), ("critical", False)])
def test_basic_constraints_must_be_critical_ca_true(key_of, bc, ca):
    cert = make_cert("Root", key_of("root").public_key(), key_of("root"), bc=bc, ca=ca)
    with pytest.raises(MalformedCertificate, match="Basic Constraints"):
        cac.validate_import("ROOT", spki_pem(key_of("root")), pem(cert), None)


def test_key_usage_without_key_cert_sign_is_malformed(key_of):
    ku = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    cert = make_cert("Root", key_of("root").public_key(), key_of("root"), key_usage=ku)
    with pytest.raises(MalformedCertificate, match="keyCertSign"):
        cac.validate_import("ROOT", spki_pem(key_of("root")), pem(cert), None)


# --- validate_import: SUBORDINATE --------------------------------------------------------------


def test_subordinate_with_full_chain_is_accepted(key_of, pki):
    cert, certs = cac.validate_import(
        "SUBORDINATE", spki_pem(key_of("sub")), pem(pki["sub"]), pem(pki["inter"], pki["root"])
    )
    assert cert == pki["sub"] and certs == [pki["inter"], pki["root"]]


def test_subordinate_directly_under_root_and_der_chain(key_of, pki):
    sub = make_cert("Sub2", key_of("sub").public_key(), key_of("root"), pki["root"])
    der_root = pki["root"].public_bytes(serialization.Encoding.DER)
    cert, certs = cac.validate_import("SUBORDINATE", spki_pem(key_of("sub")), pem(sub), der_root)
    assert certs == [pki["root"]]


def test_mixed_algorithms_chain_pss_root_ml_dsa_sub(key_of):
    root_key = key_of("csr-RSA_2048", "RSA_2048")
    sub_key = key_of("ml-sub", "ML_DSA_44")
    root = make_cert("PSS Root", root_key.public_key(), root_key)
    csr = cac.build_ca_csr(sub_key, config("ML_DSA_44"))
    sub = make_cert("ML Sub", csr.public_key(), root_key, root)
    assert cac.validate_import("SUBORDINATE", spki_pem(sub_key), pem(sub), pem(root))[1] == [root]


@pytest.mark.parametrize("chain", [None, b"", b"  \n"])
def test_subordinate_without_chain_is_refused(key_of, pki, chain):
    with pytest.raises(InvalidRequest, match="CertificateChain"):
        cac.validate_import("SUBORDINATE", spki_pem(key_of("sub")), pem(pki["sub"]), chain)


def test_subordinate_given_self_signed_is_refused(key_of, pki):
    with pytest.raises(InvalidRequest, match="self-signed"):
        cac.validate_import("SUBORDINATE", spki_pem(key_of("root")), pem(pki["root"]), pem(pki["root"]))


def test_chain_containing_the_certificate_is_malformed(key_of, pki):
    with pytest.raises(MalformedCertificate, match="certificate 1 is the certificate being imported"):
        cac.validate_import(
            "SUBORDINATE", spki_pem(key_of("sub")), pem(pki["sub"]), pem(pki["sub"]) + full_chain(pki)
        )


def test_chain_in_wrong_order_names_the_position(key_of, pki):
    with pytest.raises(MalformedCertificate, match="certificate 1 .*did not issue the imported"):
        reversed_chain = pem(pki["root"], pki["inter"])
        cac.validate_import("SUBORDINATE", spki_pem(key_of("sub")), pem(pki["sub"]), reversed_chain)


def test_chain_without_its_root_is_malformed(key_of, pki):
    with pytest.raises(MalformedCertificate, match="not a self-signed root"):
        cac.validate_import("SUBORDINATE", spki_pem(key_of("sub")), pem(pki["sub"]), pem(pki["inter"]))


def test_chain_link_with_bad_signature_names_the_position(key_of, pki):
    # An "intermediate" with the right name but signed by a key that is not the root's.
    fake_inter = make_cert("Intermediate", key_of("inter").public_key(), key_of("other"), pki["root"])
    message = "certificate 2 .*did not issue CertificateChain certificate 1"
    with pytest.raises(MalformedCertificate, match=message):
        cac.validate_import(
            "SUBORDINATE", spki_pem(key_of("sub")), pem(pki["sub"]), pem(fake_inter, pki["root"])
        )


def test_garbage_chain_is_malformed(key_of, pki):
    with pytest.raises(MalformedCertificate, match="CertificateChain"):
        cac.validate_import("SUBORDINATE", spki_pem(key_of("sub")), pem(pki["sub"]), b"not a chain")


def test_non_ca_in_chain_is_malformed(key_of, pki):
    leafish = make_cert("Intermediate", key_of("inter").public_key(), key_of("root"), pki["root"], ca=False)
    sub = make_cert("Sub", key_of("sub").public_key(), key_of("inter"), leafish)
    with pytest.raises(MalformedCertificate, match="not a CA"):
        cac.validate_import("SUBORDINATE", spki_pem(key_of("sub")), pem(sub), pem(leafish, pki["root"]))


def test_path_length_is_enforced(key_of):
    root_key, inter_key, sub_key = key_of("root"), key_of("inter"), key_of("sub")
    root0 = make_cert("Root0", root_key.public_key(), root_key, pathlen=0)
    inter = make_cert("Inter", inter_key.public_key(), root_key, root0)
    sub = make_cert("Sub", sub_key.public_key(), inter_key, inter)
    message = r"certificate 2 .*allows 0 CA certificate\(s\) below it but the path has 2"
    with pytest.raises(MalformedCertificate, match=message):
        cac.validate_import("SUBORDINATE", spki_pem(sub_key), pem(sub), pem(inter, root0))

    # Two CA certificates (the intermediate and the imported CA) sit below the root: 1 is too few, 2 fits.
    root1 = make_cert("Root1", root_key.public_key(), root_key, pathlen=1)
    inter1 = make_cert("Inter", inter_key.public_key(), root_key, root1)
    sub1 = make_cert("Sub", sub_key.public_key(), inter_key, inter1)
    with pytest.raises(MalformedCertificate, match="allows 1"):
        cac.validate_import("SUBORDINATE", spki_pem(sub_key), pem(sub1), pem(inter1, root1))
    root2 = make_cert("Root2", root_key.public_key(), root_key, pathlen=2)
    inter2 = make_cert("Inter", inter_key.public_key(), root_key, root2)
    sub2 = make_cert("Sub", sub_key.public_key(), inter_key, inter2)
    assert cac.validate_import("SUBORDINATE", spki_pem(sub_key), pem(sub2), pem(inter2, root2))[0] == sub2


def test_intermediate_with_pathlen_zero_cannot_have_a_ca_below(key_of, pki):
    inter_key, sub_key = key_of("inter"), key_of("sub")
    inter0 = make_cert("Inter", inter_key.public_key(), key_of("root"), pki["root"], pathlen=0)
    sub = make_cert("Sub", sub_key.public_key(), inter_key, inter0)
    with pytest.raises(MalformedCertificate, match="certificate 1 .*allows 0"):
        cac.validate_import("SUBORDINATE", spki_pem(sub_key), pem(sub), pem(inter0, pki["root"]))
    # The same intermediate with pathlen 1 leaves room for the imported CA.
    inter1 = make_cert("Inter", inter_key.public_key(), key_of("root"), pki["root"], pathlen=1)
    sub1 = make_cert("Sub", sub_key.public_key(), inter_key, inter1)
    cert, _ = cac.validate_import("SUBORDINATE", spki_pem(sub_key), pem(sub1), pem(inter1, pki["root"]))
    assert cert == sub1


def test_pem_helpers_round_trip(pki):
    text = cac.chain_pem([pki["inter"], pki["root"]])
    assert x509.load_pem_x509_certificates(text.encode()) == [pki["inter"], pki["root"]]
    assert x509.load_pem_x509_certificate(cac.certificate_pem(pki["sub"]).encode()) == pki["sub"]


@pytest.mark.parametrize("encoding", [serialization.Encoding.DER, serialization.Encoding.PEM])
def test_a_certificate_with_an_invalid_version_is_malformed(key_of, pki, encoding):
    der = bytearray(pki["root"].public_bytes(serialization.Encoding.DER))
    at = der.find(bytes([0xA0, 0x03, 0x02, 0x01, 0x02]))  # [0] EXPLICIT INTEGER 2 (v3)
    der[at + 4] = 7  # cryptography raises InvalidVersion, which is not a ValueError
    blob = bytes(der)
    if encoding == serialization.Encoding.PEM:
        blob = x509_pem(blob)
    with pytest.raises(MalformedCertificate):
        cac.validate_import("ROOT", spki_pem(key_of("root")), blob, None)


def x509_pem(der: bytes) -> bytes:
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"
