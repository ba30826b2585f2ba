"""Revocation end to end on a running stack: RevokeCertificate with boto3 and the AWS CLI, the CRL at the
URL written into issued certificates (fetched over HTTP, checked with cryptography, ``openssl crl`` and
pkilint), and the OCSP responder named in their AIA (checked with ``openssl ocsp -url`` and pkilint)."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request

import pytest
import redis
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from bench.issuance import make_csrs, submit_all
from pcaq.records import keys
from tests.acmpca import create_ca, error_code, fetch, issue, make_csr
from tests.pki import lint_crl, lint_ocsp, openssl_crl_verifies
from tests.support import in_groups, wait_until

pytestmark = pytest.mark.integration

BACKLOG = 4000  # requests: a second or more of signing for the stack's workers on the machines we know

REVOCATION = {
    "CrlConfiguration": {"Enabled": True, "ExpirationInDays": 2},
    "OcspConfiguration": {"Enabled": True},
}


def activate(pca, ca_type="ROOT", parent=None, revocation=REVOCATION) -> tuple[str, str]:
    """An ACTIVE CA with CRLs and OCSP on: its ARN and certificate (PEM). A subordinate is signed by
    ``parent`` = (ARN, PEM)."""
    arn = create_ca(pca, ca_type, RevocationConfiguration=revocation)
    csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"].encode()
    if parent is None:
        _, pem, _ = fetch(
            pca,
            arn,
            issue(pca, arn, csr, template="RootCACertificate", validity={"Value": 5, "Type": "YEARS"}),
        )
        pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=pem.encode())
    else:
        cert_arn = issue(
            pca,
            parent[0],
            csr,
            template="SubordinateCACertificate_PathLen0",
            validity={"Value": 2, "Type": "YEARS"},
        )
        _, pem, chain = fetch(pca, parent[0], cert_arn)
        pca.import_certificate_authority_certificate(
            CertificateAuthorityArn=arn, Certificate=pem.encode(), CertificateChain=chain.encode()
        )
    return arn, pem


@pytest.fixture(scope="module")
def root(pca):
    return activate(pca)


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def crl_url(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value[0].full_name[0].value


def ocsp_url(cert: x509.Certificate) -> str:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP)


def openssl_crl_check(tmp_path, leaf_pem: str, root_pem: str) -> tuple[bool, str]:
    """``openssl verify -crl_check -crl_download``: fetches the CRL from the leaf's CDP URL."""
    (tmp_path / "check-leaf.pem").write_text(leaf_pem)
    (tmp_path / "check-root.pem").write_text(root_pem)
    run = subprocess.run(
        [
            "openssl",
            "verify",
            "-crl_check",
            "-crl_download",
            "-CAfile",
            tmp_path / "check-root.pem",
            tmp_path / "check-leaf.pem",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (run.stdout + run.stderr).strip()
    return run.returncode == 0, "OK" if output.endswith(": OK") else output


def test_revoked_serials_reach_the_crl_named_in_the_certificate(pca, aws, root, stack, tmp_path):
    arn, root_pem = root
    ca_id = arn.rsplit("/", 1)[1]
    cert_arn = issue(pca, arn, make_csr())
    leaf, _, _ = fetch(pca, arn, cert_arn)
    url = crl_url(leaf)
    assert url == f"{stack.endpoint_url}/crl/{ca_id}.crl"  # pcaq up names itself as the public host
    status, der = http_get(url)
    assert status == 200 and len(x509.load_der_x509_crl(der)) == 0  # built on demand, empty

    serial = format(leaf.serial_number, "X")
    colons = ":".join(
        serial.zfill(len(serial) + len(serial) % 2)[i : i + 2]
        for i in range(0, len(serial) + len(serial) % 2, 2)
    )
    pca.revoke_certificate(
        CertificateAuthorityArn=arn, CertificateSerial=colons, RevocationReason="KEY_COMPROMISE"
    )
    with pytest.raises(ClientError) as exc:
        pca.revoke_certificate(
            CertificateAuthorityArn=arn, CertificateSerial=serial.lower(), RevocationReason="SUPERSEDED"
        )
    assert error_code(exc) == "RequestAlreadyProcessedException"

    def revoked_crl():
        crl = x509.load_der_x509_crl(http_get(url)[1])
        return crl if crl.get_revoked_certificate_by_serial_number(leaf.serial_number) else None

    crl = wait_until(revoked_crl, timeout=15, interval=0.1, what="the revoked serial in the CRL")
    root_cert = x509.load_pem_x509_certificate(root_pem.encode())
    assert crl.is_signature_valid(root_cert.public_key()) and crl.issuer == root_cert.subject
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    assert (crl.next_update_utc - crl.last_update_utc).days == 2
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number >= 2
    der = crl.public_bytes(serialization.Encoding.DER)
    assert openssl_crl_verifies(der, root_pem.encode()) and lint_crl(der) == []
    assert fetch(pca, arn, cert_arn)[0] == leaf  # a revoked certificate can still be fetched
    # A real client that downloads the CRL from the certificate's CDP: openssl verify -crl_download.
    good, good_pem, _ = fetch(pca, arn, issue(pca, arn, make_csr()))
    assert openssl_crl_check(tmp_path, good_pem, root_pem) == (True, "OK")
    ok, message = openssl_crl_check(
        tmp_path, leaf.public_bytes(serialization.Encoding.PEM).decode(), root_pem
    )
    assert not ok and "certificate revoked" in message

    # The AWS CLI, another reason; the CA's own certificate and unknown serials are refused.
    other, _, _ = fetch(pca, arn, issue(pca, arn, make_csr()))
    aws("revoke-certificate", "--certificate-authority-arn", arn, "--certificate-serial",
        format(other.serial_number, "x"), "--revocation-reason", "SUPERSEDED")  # fmt: skip
    own = pca.describe_certificate_authority(CertificateAuthorityArn=arn)["CertificateAuthority"]["Serial"]
    for serial_text, code in ((own, "InvalidRequestException"), ("0123abcd", "ResourceNotFoundException")):
        with pytest.raises(ClientError) as exc:
            pca.revoke_certificate(
                CertificateAuthorityArn=arn, CertificateSerial=serial_text, RevocationReason="UNSPECIFIED"
            )
        assert error_code(exc) == code
    wait_until(lambda: x509.load_der_x509_crl(http_get(url)[1]).get_revoked_certificate_by_serial_number(other.serial_number),
               timeout=15, interval=0.1, what="the second serial in the CRL")  # fmt: skip


def openssl_ocsp(tmp_path, issuer_pem: str, leaf_pem: str, url: str, trust_pem: str, name: str) -> str:
    paths = {}
    for file, text in (("issuer.pem", issuer_pem), (f"{name}.pem", leaf_pem), ("trust.pem", trust_pem)):
        paths[file] = tmp_path / file
        paths[file].write_text(text)
    respout = tmp_path / "resp.der"
    run = subprocess.run(
        [
            "openssl",
            "ocsp",
            "-issuer",
            paths["issuer.pem"],
            "-cert",
            paths[f"{name}.pem"],
            "-url",
            url,
            "-CAfile",
            paths["trust.pem"],
            "-respout",
            respout,
            "-timeout",
            "20",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert "Response verify OK" in run.stderr + run.stdout, run.stdout + run.stderr
    assert lint_ocsp(respout.read_bytes()) == []
    return run.stdout


def test_ocsp_with_openssl_for_a_subordinate_ca(pca, root, tmp_path):
    root_arn, root_pem = root
    sub_arn, sub_pem = activate(pca, "SUBORDINATE", parent=root)
    cert_arn = issue(pca, sub_arn, make_csr())
    leaf, leaf_pem, _ = fetch(pca, sub_arn, cert_arn)
    url = ocsp_url(leaf)
    assert url.endswith("/ocsp")
    out = openssl_ocsp(tmp_path, sub_pem, leaf_pem, url, root_pem, "leaf")
    assert "leaf.pem: good" in out
    pca.revoke_certificate(
        CertificateAuthorityArn=sub_arn,
        CertificateSerial=format(leaf.serial_number, "x"),
        RevocationReason="AFFILIATION_CHANGED",
    )
    out = openssl_ocsp(tmp_path, sub_pem, leaf_pem, url, root_pem, "leaf")
    assert "leaf.pem: revoked" in out and "Reason: affiliationChanged" in out
    # The subordinate's own certificate, revoked by the root, shows in the root's answers and CRL.
    sub_cert = x509.load_pem_x509_certificate(sub_pem.encode())
    pca.revoke_certificate(
        CertificateAuthorityArn=root_arn, CertificateSerial=format(sub_cert.serial_number, "x"),
        RevocationReason="CERTIFICATE_AUTHORITY_COMPROMISE",
    )  # fmt: skip
    out = openssl_ocsp(tmp_path, root_pem, sub_pem, ocsp_url(sub_cert), root_pem, "sub")
    assert "sub.pem: revoked" in out and "Reason: cACompromise" in out


def test_ocsp_is_answered_while_a_backlog_is_drained(pca, root, stack):
    """Bulk issuance does not take OCSP down (shared/revocation/urgent.py): an answer that needs a worker is
    signed between two signatures of the drain, not after the backlog (before, its job queued behind
    the drain's slices of seconds and the client got tryLater after 3 s)."""
    root_arn, root_pem = root
    leaf, _, _ = fetch(pca, root_arn, issue(pca, root_arn, make_csr()))  # no answer about it cached yet
    request = ocsp.OCSPRequestBuilder().add_certificate(
        leaf, x509.load_pem_x509_certificate(root_pem.encode()), hashes.SHA1()
    )
    der = request.build().public_bytes(serialization.Encoding.DER)
    port = int(stack.endpoint_url.rsplit(":", 1)[1])
    csrs = make_csrs(BACKLOG)
    outbox = redis.Redis.from_url(stack.redis_url)
    worker_groups = {p.pgid for p in in_groups(stack.groups) if "celery" in p.cmdline}
    assert worker_groups
    for group in worker_groups:
        os.killpg(group, signal.SIGSTOP)
    try:
        submit_all(port, root_arn, "SHA256WITHECDSA", csrs)
        assert outbox.zcard(keys.PENDING_CERTS) >= BACKLOG
    finally:
        for group in worker_groups:
            os.killpg(group, signal.SIGCONT)
    wait_until(lambda: outbox.zcard(keys.PENDING_CERTS) < BACKLOG, 60, what="the drain to start")
    with urllib.request.urlopen(
        urllib.request.Request(
            f"{stack.endpoint_url}/ocsp", der, {"Content-Type": "application/ocsp-request"}
        ),
        timeout=30,
    ) as resp:
        answer = ocsp.load_der_ocsp_response(resp.read())
    still_pending = outbox.zcard(keys.PENDING_CERTS)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert still_pending > 0, "answered only once the backlog was signed"
    wait_until(lambda: outbox.zcard(keys.PENDING_CERTS) == 0, 120, what="the backlog to drain")
