"""OCSP (RFC 6960): CertID hashes, signed answers (checked with cryptography, ``openssl ocsp`` and pkilint's
``lint_ocsp_response``), and the responder at ``/ocsp`` with its cache and the worker's signing."""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, mldsa, rsa
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from pcaq.platform.queue import Queue
from pcaq.revocation import ocsp, urgent
from pcaq.worker.urgent import serve as serve_urgent
from tests.pki import lint_ocsp
from tests.revocation_flow import ENABLED, issue_leaf, make_root, revoke

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
Status = x509_ocsp.OCSPResponseStatus
SHA256 = hashes.SHA256()


def openssl_status(response: bytes, ca_pem: bytes, leaf_pem: bytes) -> str:
    """What ``openssl ocsp -respin`` prints about the leaf, after verifying the answer."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, data in (("resp.der", response), ("ca.pem", ca_pem), ("leaf.pem", leaf_pem)):
            paths[name] = os.path.join(tmp, name)
            with open(paths[name], "wb") as f:
                f.write(data)
        run = subprocess.run(
            [
                "openssl",
                "ocsp",
                "-respin",
                paths["resp.der"],
                "-issuer",
                paths["ca.pem"],
                "-cert",
                paths["leaf.pem"],
            ]
            + ["-CAfile", paths["ca.pem"], "-no_nonce"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert "Response verify OK" in run.stderr + run.stdout, run.stderr
    return run.stdout


def certificate(subject: str, key, issuer_cert=None, issuer_key=None, algorithm=SHA256) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_cert.subject if issuer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=issuer_cert is None, path_length=None), critical=True)
    )
    if issuer_cert is None:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    return builder.sign(issuer_key or key, algorithm)


@pytest.fixture(scope="module")
def ca():
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate("OCSP Test Root", key)
    leaf = certificate("leaf.example.com", ec.generate_private_key(ec.SECP256R1()), cert, key)
    return key, cert, leaf


@pytest.mark.parametrize("kind", ["ec", "rsa", "mldsa"])
@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()])
def test_issuer_hashes_match_the_certids_clients_compute(kind, algorithm):
    key = {
        "ec": lambda: ec.generate_private_key(ec.SECP384R1()),
        "rsa": lambda: rsa.generate_private_key(65537, 1024 + 1024),
        "mldsa": mldsa.MLDSA44PrivateKey.generate,
    }[kind]()
    sign_with = None if kind == "mldsa" else hashes.SHA256()
    issuer = certificate("Issuer", key, algorithm=sign_with)
    leaf = certificate("leaf", ec.generate_private_key(ec.SECP256R1()), issuer, key, algorithm=sign_with)
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, algorithm).build()
    assert ocsp.issuer_key_hashes(issuer.public_key())[algorithm.name] == request.issuer_key_hash
    assert ocsp.issuer_name_hash(issuer.subject, algorithm.name) == request.issuer_name_hash


@pytest.mark.parametrize(
    ("answer", "printed"),
    [
        (ocsp.Answer("good"), ": good"),
        (ocsp.Answer("revoked", NOW.timestamp() - 90, "KEY_COMPROMISE"), "Reason: keyCompromise"),
        (ocsp.Answer("revoked", NOW.timestamp() - 90, "UNSPECIFIED"), ": revoked"),
        (ocsp.Answer("unknown"), ": unknown"),
    ],
)
def test_signed_answers(ca, answer, printed):
    key, cert, leaf = ca
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, cert, hashes.SHA1()).build()
    cert_id = ("sha1", request.issuer_name_hash, request.issuer_key_hash, leaf.serial_number)
    der = ocsp.build_response(cert, key, "SHA256WITHECDSA", cert_id, answer, NOW, NOW + dt.timedelta(days=1))
    loaded = x509_ocsp.load_der_ocsp_response(der)
    assert loaded.response_status is Status.SUCCESSFUL
    assert loaded.serial_number == leaf.serial_number and loaded.issuer_key_hash == request.issuer_key_hash
    assert loaded.certificate_status.name.lower() == answer.status
    assert (
        loaded.responder_key_hash
        == cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    assert loaded.next_update_utc - loaded.this_update_utc == dt.timedelta(days=1)
    cert.public_key().verify(loaded.signature, loaded.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    if answer.status == "revoked":
        assert loaded.revocation_time_utc.timestamp() == int(answer.revoked_at)
        assert loaded.revocation_reason == (
            None if answer.reason == "UNSPECIFIED" else x509.ReasonFlags.key_compromise
        )
    pem = serialization.Encoding.PEM
    assert printed in openssl_status(der, cert.public_bytes(pem), leaf.public_bytes(pem))
    assert lint_ocsp(der) == []


def test_unsigned_answers_and_unreadable_requests():
    assert ocsp.parse_request(b"\x30\x03\x02\x01\x00") is None
    assert ocsp.parse_request(b"") is None
    for status in (Status.MALFORMED_REQUEST, Status.UNAUTHORIZED, Status.TRY_LATER):
        assert x509_ocsp.load_der_ocsp_response(ocsp.unsuccessful(status)).response_status is status


def test_a_cached_answer_is_refused_when_the_record_changed(flow):
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    _, serial = issue_leaf(flow, arn)
    store = flow.svc.store
    assert store.cache_ocsp(ca_id, "sha1", serial, b"good-answer", 60, "good")
    assert revoke(flow, arn, serial)[0] == 200
    assert store.cached_ocsp(ca_id, "sha1", serial) == (None, None)  # dropped by the revocation
    assert not store.cache_ocsp(ca_id, "sha1", serial, b"stale-good", 60, "good")  # signed before it
    assert store.cache_ocsp(ca_id, "sha1", serial, b"revoked-answer", 60, "revoked")


# -- the responder -------------------------------------------------------------------------------


@pytest.fixture
def inline_worker(flow, monkeypatch):
    """The API's wake-up message runs the worker's urgent jobs at once (as a worker that answers in
    time); the serials it signed answers about are listed."""
    signed: list[str] = []

    def serve_now(self):
        jobs = flow.svc.store.take_urgent(100)
        signed.extend(urgent.decode(raw).serial_hex for raw in jobs)
        serve_urgent(flow.svc, jobs)

    monkeypatch.setattr(Queue, "serve_urgent", serve_now)
    return signed


def leaf_and_issuer(flow, arn, cert_arn):
    got = flow.ok("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})
    leaf = x509.load_pem_x509_certificate(got["Certificate"].encode())
    return leaf, x509.load_pem_x509_certificate(got["CertificateChain"].encode())


def ask(flow, request: x509_ocsp.OCSPRequest, method: str = "POST") -> x509_ocsp.OCSPResponse:
    der = request.public_bytes(serialization.Encoding.DER)
    if method == "POST":
        resp = flow.client.post("/ocsp", data=der, headers={"Content-Type": ocsp.REQUEST_TYPE})
    else:
        resp = flow.client.get("/ocsp/" + base64.b64encode(der).decode())
    assert resp.status_code == 200 and resp.headers["Content-Type"] == ocsp.RESPONSE_TYPE
    return x509_ocsp.load_der_ocsp_response(resp.data)


def test_the_responder_answers_good_then_revoked_from_its_cache(flow, inline_worker):
    arn, _ = make_root(flow, ENABLED)
    cert_arn, serial = issue_leaf(flow, arn)
    leaf, issuer = leaf_and_issuer(flow, arn, cert_arn)
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [
        d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP
    ] == ["http://pcaq.test:8080/ocsp"]
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    first = ask(flow, request)
    assert first.certificate_status is x509_ocsp.OCSPCertStatus.GOOD
    issuer.public_key().verify(first.signature, first.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    again = ask(flow, request, "GET")
    assert again.certificate_status is x509_ocsp.OCSPCertStatus.GOOD and inline_worker == [serial]  # cached

    assert revoke(flow, arn, serial, "CESSATION_OF_OPERATION")[0] == 200
    revoked = ask(flow, request, "GET")
    assert revoked.certificate_status is x509_ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason is x509.ReasonFlags.cessation_of_operation
    assert inline_worker == [serial, serial]
    sha256 = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256()).build()
    assert ask(flow, sha256).certificate_status is x509_ocsp.OCSPCertStatus.REVOKED


def test_unknown_serials_unknown_issuers_and_malformed_requests(flow, inline_worker):
    arn, _ = make_root(flow, ENABLED)
    cert_arn, _ = issue_leaf(flow, arn)
    leaf, issuer = leaf_and_issuer(flow, arn, cert_arn)
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    unknown = x509_ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        request.issuer_name_hash, request.issuer_key_hash, 0xDEADBEEF, hashes.SHA1()
    )
    assert ask(flow, unknown.build()).certificate_status is x509_ocsp.OCSPCertStatus.UNKNOWN
    stranger = x509_ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        request.issuer_name_hash, b"\x01" * 20, leaf.serial_number, hashes.SHA1()
    )
    assert ask(flow, stranger.build()).response_status is Status.UNAUTHORIZED
    bad = flow.client.post("/ocsp", data=b"not an OCSP request")
    assert x509_ocsp.load_der_ocsp_response(bad.data).response_status is Status.MALFORMED_REQUEST
    bad = flow.client.get("/ocsp/%%%not-base64")
    assert x509_ocsp.load_der_ocsp_response(bad.data).response_status is Status.MALFORMED_REQUEST


def test_no_answer_while_ocsp_is_off_and_try_later_without_a_worker(flow):
    arn, _ = make_root(flow)  # OCSP off
    cert_arn, _ = issue_leaf(flow, arn)
    leaf, issuer = leaf_and_issuer(flow, arn, cert_arn)
    request = x509_ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    assert ask(flow, request).response_status is Status.UNAUTHORIZED
    flow.ok(
        "UpdateCertificateAuthority", {"CertificateAuthorityArn": arn, "RevocationConfiguration": ENABLED}
    )
    assert ask(flow, request).response_status is Status.TRY_LATER  # nobody signs within 20 ms
