"""Asynchronous issuance end to end: IssueCertificate answers at once, workers sign, GetCertificate polls."""

from __future__ import annotations

import base64
import datetime as dt
import threading

import pytest
from botocore.exceptions import ClientError, WaiterError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.acmpca import (
    WAIT,
    activate_root,
    create_ca,
    error_code,
    fetch,
    issue,
    make_csr,
)
from tests.pki import openssl_verify, pkilint_findings_many

pytestmark = pytest.mark.integration


def activate_subordinate(pca, parent_arn, parent_signing, template="SubordinateCACertificate_PathLen0"):
    arn = create_ca(pca, "SUBORDINATE")
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
    cert_arn = issue(pca, parent_arn, csr.encode(), parent_signing, template, {"Value": 5, "Type": "YEARS"})
    _, pem, chain = fetch(pca, parent_arn, cert_arn)
    pca.import_certificate_authority_certificate(
        CertificateAuthorityArn=arn, Certificate=pem.encode(), CertificateChain=chain.encode()
    )
    return arn, pem


@pytest.fixture(scope="module")
def root(pca):
    return activate_root(pca, years=30)


def ext(cert, cls):
    return cert.extensions.get_extension_for_class(cls)


def test_root_activation_and_a_leaf(pca, root):
    arn, root_pem = root
    ca = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]
    assert ca["Status"] == "ACTIVE"
    root_cert = x509.load_pem_x509_certificate(root_pem.encode())
    assert (
        ext(root_cert, x509.BasicConstraints).critical
        and ext(root_cert, x509.BasicConstraints).value.path_length is None
    )
    with pytest.raises(x509.ExtensionNotFound):
        ext(root_cert, x509.AuthorityKeyIdentifier)

    cert_arn = issue(pca, arn, make_csr())
    assert cert_arn.startswith(arn + "/certificate/")
    serial_hex = cert_arn.rsplit("/", 1)[1]
    cert, pem, chain = fetch(pca, arn, cert_arn)
    assert format(cert.serial_number, "x") == serial_hex
    assert cert.serial_number.bit_length() >= 64 and cert.serial_number > 0
    assert x509.load_pem_x509_certificate(chain.encode()) == root_cert
    openssl_verify(pem, [], root_pem)


def test_seed_example_with_the_aws_cli(aws, pca, tmp_path):
    arn, root_pem = activate_root(pca, key="RSA_2048", signing="SHA256WITHRSA")
    csr_file = tmp_path / "cert.csr"
    csr_file.write_bytes(make_csr(rsa.generate_private_key(65537, 2048)))
    args = (
        "--certificate-authority-arn",
        arn,
        "--csr",
        f"fileb://{csr_file}",
        "--signing-algorithm",
        "SHA256WITHRSA",
    )
    out = aws.json(
        "issue-certificate", *args, "--validity", 'Value=365,Type="DAYS"', "--idempotency-token", "1234"
    )
    again = aws.json(
        "issue-certificate", *args, "--validity", 'Value=365,Type="DAYS"', "--idempotency-token", "1234"
    )
    assert out["CertificateArn"] == again["CertificateArn"]
    aws(
        "wait",
        "certificate-issued",
        "--certificate-authority-arn",
        arn,
        "--certificate-arn",
        out["CertificateArn"],
    )
    got = aws.json(
        "get-certificate", "--certificate-authority-arn", arn, "--certificate-arn", out["CertificateArn"]
    )
    cert = x509.load_pem_x509_certificate(got["Certificate"].encode())
    life = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=364) < life <= dt.timedelta(days=365)
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment  # RSA subject key
    openssl_verify(got["Certificate"], [], root_pem)
    assert pkilint_findings_many([got["Certificate"]]) == [[]]


@pytest.mark.parametrize(
    ("template", "eku", "eku_critical"),
    [
        ("EndEntityCertificate", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}, False),
        ("EndEntityClientAuthCertificate", {ExtendedKeyUsageOID.CLIENT_AUTH}, False),
        ("EndEntityServerAuthCertificate", {ExtendedKeyUsageOID.SERVER_AUTH}, False),
        ("CodeSigningCertificate", {ExtendedKeyUsageOID.CODE_SIGNING}, True),
        ("OCSPSigningCertificate", {ExtendedKeyUsageOID.OCSP_SIGNING}, True),
    ],
)
def test_base_templates(pca, root, template, eku, eku_critical):
    arn, root_pem = root
    cert, pem, _ = fetch(pca, arn, issue(pca, arn, make_csr(), template=template))
    bc = ext(cert, x509.BasicConstraints)
    assert bc.value.ca is False
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment  # EC key: RFC 5480
    got = ext(cert, x509.ExtendedKeyUsage)
    assert set(got.value) == eku and got.critical is eku_critical
    root_cert = x509.load_pem_x509_certificate(root_pem.encode())
    assert (
        ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(root_cert, x509.SubjectKeyIdentifier).value.digest
    )
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
        cert.public_key()
    )
    assert pkilint_findings_many([pem]) == [[]]


def test_passthrough_families_and_precedence(pca, root):
    arn, _ = root
    custom_oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")
    csr = make_csr(
        cn="from-csr",
        sans=("csr.example.com",),
        extensions=[(x509.UnrecognizedExtension(custom_oid, b"\x05\x00"), False)],
    )
    api = {
        "Subject": {"CommonName": "from-api", "Organization": "API Org"},
        "Extensions": {
            "SubjectAlternativeNames": [{"DnsName": "api.example.com"}],
            "KeyUsage": {"DigitalSignature": True, "KeyAgreement": True},
            "CustomExtensions": [
                {"ObjectIdentifier": "1.3.6.1.4.1.55555.2", "Value": base64.b64encode(b"\x05\x00").decode()}
            ],
        },
    }
    cn = lambda c: c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value  # noqa: E731
    sans = lambda c: ext(c, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)  # noqa: E731

    base, *_ = fetch(pca, arn, issue(pca, arn, csr, ApiPassthrough=api))
    assert cn(base) == "from-csr" and sans(base) == ["csr.example.com"]  # ApiPassthrough ignored
    with pytest.raises(x509.ExtensionNotFound):
        base.extensions.get_extension_for_oid(custom_oid)

    csr_pt, *_ = fetch(pca, arn, issue(pca, arn, csr, template="EndEntityCertificate_CSRPassthrough"))
    assert csr_pt.extensions.get_extension_for_oid(custom_oid).value.value == b"\x05\x00"

    api_pt, *_ = fetch(
        pca, arn, issue(pca, arn, csr, template="EndEntityCertificate_APIPassthrough", ApiPassthrough=api)
    )
    assert cn(api_pt) == "from-api" and sans(api_pt) == ["api.example.com"]
    assert api_pt.extensions.get_extension_for_oid(x509.ObjectIdentifier("1.3.6.1.4.1.55555.2"))
    ku = ext(api_pt, x509.KeyUsage).value  # template wins over the API's KeyUsage
    assert ku.digital_signature and not ku.key_agreement

    blank, pem, _ = fetch(
        pca,
        arn,
        issue(pca, arn, csr, template="BlankEndEntityCertificate_APICSRPassthrough", ApiPassthrough=api),
    )
    assert ext(blank, x509.KeyUsage).value.key_agreement  # Blank: KU from the API
    assert blank.extensions.get_extension_for_oid(custom_oid)  # and the CSR's extension too
    assert pkilint_findings_many([pem]) == [[]]

    crit, *_ = fetch(
        pca,
        arn,
        issue(pca, arn, csr, template="BlankEndEntityCertificate_CriticalBasicConstraints_CSRPassthrough"),
    )
    assert ext(crit, x509.BasicConstraints).critical and not ext(crit, x509.BasicConstraints).value.ca


@pytest.mark.parametrize("path_length", [0, 1, 2, 3])
def test_subordinate_templates(pca, root, path_length):
    arn, root_pem = root
    key = ec.generate_private_key(ec.SECP256R1())
    cert, pem, _ = fetch(
        pca,
        arn,
        issue(
            pca,
            arn,
            make_csr(key, cn=f"Sub {path_length}", sans=()),
            template=f"SubordinateCACertificate_PathLen{path_length}",
        ),
    )
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == path_length
    ku = ext(cert, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert pkilint_findings_many([pem]) == [[]]


def test_three_level_chain(pca, root):
    root_arn, root_pem = root
    sub_arn, sub_pem = activate_subordinate(pca, root_arn, "SHA256WITHECDSA")
    cert, pem, chain = fetch(
        pca, sub_arn, issue(pca, sub_arn, make_csr(rsa.generate_private_key(65537, 2048)))
    )
    chain_certs = x509.load_pem_x509_certificates(chain.encode())
    assert [c.subject for c in chain_certs] == [
        x509.load_pem_x509_certificate(sub_pem.encode()).subject,
        x509.load_pem_x509_certificate(root_pem.encode()).subject,
    ]
    openssl_verify(pem, [sub_pem], root_pem)
    assert pkilint_findings_many([pem, sub_pem]) == [[], []]
    # A path length 0 CA cannot make another CA.
    bad = issue(pca, sub_arn, make_csr(cn="Too deep", sans=()), template="SubordinateCACertificate_PathLen0")
    with pytest.raises(WaiterError):
        fetch(pca, sub_arn, bad)
    with pytest.raises(pca.exceptions.RequestFailedException):
        pca.get_certificate(CertificateAuthorityArn=sub_arn, CertificateArn=bad)


@pytest.mark.parametrize(
    ("key", "signing", "leaf_key", "leaf_signing"),
    [
        ("RSA_2048", "SHA256WITHRSA", lambda: rsa.generate_private_key(65537, 2048), "SHA384WITHRSA"),
        ("RSA_2048", "SHA256WITHRSA_PSS", lambda: rsa.generate_private_key(65537, 3072), "SHA256WITHRSA_PSS"),
        (
            "EC_prime256v1",
            "SHA256WITHECDSA",
            lambda: ec.generate_private_key(ec.SECP384R1()),
            "SHA256WITHECDSA",
        ),
        (
            "EC_secp384r1",
            "SHA384WITHECDSA",
            lambda: ec.generate_private_key(ec.SECP521R1()),
            "SHA384WITHECDSA",
        ),
        (
            "EC_secp521r1",
            "SHA512WITHECDSA",
            lambda: ec.generate_private_key(ec.SECP256R1()),
            "SHA512WITHECDSA",
        ),
        ("ML_DSA_65", "ML_DSA_65", lambda: mldsa.MLDSA65PrivateKey.generate(), "ML_DSA_65"),
    ],
)
def test_algorithms(pca, key, signing, leaf_key, leaf_signing):
    arn, root_pem = activate_root(pca, key=key, signing=signing)
    cert, pem, _ = fetch(pca, arn, issue(pca, arn, make_csr(leaf_key()), leaf_signing))
    root_cert = x509.load_pem_x509_certificate(root_pem.encode())
    cert.verify_directly_issued_by(root_cert)
    if leaf_signing.endswith("_PSS"):
        assert isinstance(cert.signature_algorithm_parameters, padding.PSS)
    if key.startswith("ML_DSA"):
        return  # OpenSSL 3.0 and pkilint do not know ML-DSA; the signature check above is the proof
    openssl_verify(pem, [], root_pem)
    assert pkilint_findings_many([pem, root_pem]) == [[], []]


@pytest.mark.parametrize(
    ("validity", "expected"),
    [
        ({"Value": 491231235959, "Type": "END_DATE"}, dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
        ({"Value": 20301231235959, "Type": "END_DATE"}, dt.datetime(2030, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
        ({"Value": 1924992000, "Type": "ABSOLUTE"}, dt.datetime(2031, 1, 1, tzinfo=dt.UTC)),
        ({"Value": 10, "Type": "DAYS"}, dt.timedelta(days=10)),
        ({"Value": 2, "Type": "MONTHS"}, dt.timedelta(days=59)),
        ({"Value": 1, "Type": "YEARS"}, dt.timedelta(days=365)),
    ],
)
def test_validity_types(pca, root, validity, expected):
    arn, _ = root
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert, *_ = fetch(pca, arn, issue(pca, arn, make_csr(), validity=validity))
    if isinstance(expected, dt.datetime):
        assert cert.not_valid_after_utc == expected
    else:
        assert expected <= cert.not_valid_after_utc - before <= expected + dt.timedelta(days=3)
    assert before - dt.timedelta(minutes=61) <= cert.not_valid_before_utc <= before - dt.timedelta(minutes=59)


def test_validity_not_before_and_ceiling(pca, root):
    arn, root_pem = root
    start = int(dt.datetime(2027, 1, 1, tzinfo=dt.UTC).timestamp())
    cert, *_ = fetch(
        pca,
        arn,
        issue(
            pca,
            arn,
            make_csr(),
            validity={"Value": 2, "Type": "YEARS"},
            ValidityNotBefore={"Value": start, "Type": "ABSOLUTE"},
        ),
    )
    assert cert.not_valid_before_utc == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(pca.exceptions.InvalidArgsException) as exc:
        issue(pca, arn, make_csr(), validity={"Value": 50, "Type": "YEARS"})
    assert "Not After" in str(exc.value) or "not after" in str(exc.value).lower()


def test_request_errors(pca, root):
    arn, _ = root
    with pytest.raises(pca.exceptions.MalformedCSRException):
        issue(pca, arn, b"this is not a CSR")
    with pytest.raises(pca.exceptions.MalformedCSRException):
        issue(pca, arn, b"")
    with pytest.raises(pca.exceptions.InvalidArgsException):
        issue(pca, arn, make_csr(), signing="SHA256WITHRSA")
    with pytest.raises(pca.exceptions.InvalidArgsException):
        issue(pca, arn, make_csr(), signing="SM3WITHSM2")
    with pytest.raises(pca.exceptions.InvalidArgsException):
        issue(pca, arn, make_csr(), template="NoSuchTemplate")
    with pytest.raises(ClientError) as exc:
        issue(pca, arn, make_csr(), IdempotencyToken="x" * 37)
    assert error_code(exc) == "ValidationException"
    with pytest.raises(ClientError) as exc:
        issue(pca, arn, make_csr(), validity={"Value": 3, "Type": "WEEKS"})
    assert error_code(exc) == "ValidationException"
    with pytest.raises(pca.exceptions.ResourceNotFoundException):
        pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=arn + "/certificate/abcdef0123")
    missing_ca = arn[:-12] + "000000000000"
    with pytest.raises(pca.exceptions.ResourceNotFoundException):
        issue(pca, missing_ca, make_csr())

    pending = create_ca(pca, "ROOT")
    with pytest.raises(pca.exceptions.InvalidStateException):
        issue(pca, pending, make_csr())  # only its own CSR with RootCACertificate while pending
    with pytest.raises(pca.exceptions.InvalidArgsException):
        issue(pca, pending, make_csr(), template="RootCACertificate")  # not its own key


def test_disabled_ca_cannot_issue(pca):
    arn, _ = activate_root(pca)
    pca.update_certificate_authority(CertificateAuthorityArn=arn, Status="DISABLED")
    with pytest.raises(pca.exceptions.InvalidStateException):
        issue(pca, arn, make_csr())


def test_worker_failures_become_request_failed(pca, root):
    arn, _ = root
    weak = issue(pca, arn, make_csr(rsa.generate_private_key(65537, 1024), alg=hashes.SHA256()))
    with pytest.raises(WaiterError):
        fetch(pca, arn, weak)
    with pytest.raises(pca.exceptions.RequestFailedException) as exc:
        pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=weak)
    assert "1024" in str(exc.value)

    # A CSR whose signature does not verify: flip a byte inside the signature.
    der = x509.load_pem_x509_csr(make_csr()).public_bytes(serialization.Encoding.DER)
    tampered = der[:-3] + bytes([der[-3] ^ 0x01]) + der[-2:]
    bad = issue(pca, arn, tampered)
    with pytest.raises(WaiterError):
        pca.get_waiter("certificate_issued").wait(
            CertificateAuthorityArn=arn, CertificateArn=bad, WaiterConfig=WAIT
        )
    with pytest.raises(pca.exceptions.RequestFailedException) as exc:
        pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=bad)
    assert "signature" in str(exc.value)


def test_ml_dsa_csr_is_accepted(pca, root):
    arn, _ = root
    cert, *_ = fetch(pca, arn, issue(pca, arn, make_csr(mldsa.MLDSA65PrivateKey.generate())))
    assert isinstance(cert.public_key(), mldsa.MLDSA65PublicKey)
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment


def test_idempotency_race(pca, root):
    arn, _ = root
    csr = make_csr()
    results: list[str] = []
    lock = threading.Lock()

    def one():
        got = issue(pca, arn, csr, IdempotencyToken="race-token")
        with lock:
            results.append(got)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and len(set(results)) == 1
    other = issue(pca, arn, csr, IdempotencyToken="race-token-2")
    assert other != results[0]
    fetch(pca, arn, results[0])


def test_every_template_in_the_catalogue_issues(pca, root):
    """Every template name is known and yields a certificate that pkilint finds clean."""
    from pcaq.pki.profiles import _catalogue

    arn, root_pem = root
    leaf_api = {
        "Extensions": {
            "KeyUsage": {"DigitalSignature": True},
            "ExtendedKeyUsage": [{"ExtendedKeyUsageType": "SERVER_AUTH"}],
        }
    }
    ca_api = {"Extensions": {"KeyUsage": {"DigitalSignature": True, "KeyCertSign": True, "CRLSign": True}}}
    names = [n for n in _catalogue() if not n.startswith("RootCACertificate")]
    arns = {}
    for name in names:
        csr = make_csr(cn=f"t-{name}"[:64], sans=() if "Subordinate" in name else ("t.example.com",))
        api = ca_api if "Subordinate" in name else leaf_api
        arns[name] = issue(pca, arn, csr, template=name, ApiPassthrough=api)
    pems = {name: fetch(pca, arn, a)[1] for name, a in arns.items()}
    findings = dict(zip(pems, pkilint_findings_many(list(pems.values())), strict=True))
    assert {k: v for k, v in findings.items() if v} == {}
    assert len(names) >= 40
