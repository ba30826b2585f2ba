"""CRLs: what a built CRL holds (checked with cryptography, ``openssl crl`` and pkilint's ``lint_crl``),
when one is rebuilt, and how the API serves it at ``/crl/<ca-id>.crl``."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.authority import Authority
from pcaq.records.revocations import RevokedEntry, StoredCrl
from pcaq.revocation import crl
from pcaq.worker.revocation_tasks import rebuild_crl, sweep_revocation
from tests.pki import lint_crl, openssl_crl_verifies
from tests.revocation_flow import ENABLED, issue_leaf, make_root, revoke

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def self_signed(key, algorithm) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CRL Test Root")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, algorithm)
    )


@pytest.fixture(scope="module")
def ec_ca():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, self_signed(key, hashes.SHA256()), "SHA256WITHECDSA"


@pytest.fixture(scope="module")
def rsa_pss_ca():
    key = rsa.generate_private_key(65537, 2048)
    return key, self_signed(key, hashes.SHA256()), "SHA256WITHRSA_PSS"


ENTRIES = [
    RevokedEntry("1a2b3c4d5e6f7a8b", NOW.timestamp() - 600, "KEY_COMPROMISE", NOW.timestamp() + 86400),
    RevokedEntry("7fffffffffffffffffffffffffffffff", NOW.timestamp() - 60, "A_A_COMPROMISE", 0),
    RevokedEntry("abc", NOW.timestamp() - 30, "UNSPECIFIED", NOW.timestamp() + 86400),
]


@pytest.mark.parametrize("ca", ["ec_ca", "rsa_pss_ca"])
def test_a_built_crl_is_a_signed_v2_crl_with_number_aki_and_reasons(ca, request):
    key, cert, algorithm = request.getfixturevalue(ca)
    built = crl.build_crl(cert, key, algorithm, ENTRIES, 42, NOW, NOW + dt.timedelta(days=3))
    der = built.public_bytes(serialization.Encoding.DER)
    loaded = x509.load_der_x509_crl(der)
    assert loaded.is_signature_valid(cert.public_key())
    assert loaded.issuer == cert.subject
    assert loaded.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    aki = loaded.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier == cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    assert loaded.next_update_utc - loaded.last_update_utc == dt.timedelta(days=3)
    by_serial = {r.serial_number: r for r in loaded}
    assert set(by_serial) == {int(e.serial_hex, 16) for e in ENTRIES}
    first = by_serial[0x1A2B3C4D5E6F7A8B]
    assert (
        first.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    assert first.revocation_date_utc.timestamp() == int(ENTRIES[0].revoked_at)
    with pytest.raises(x509.ExtensionNotFound):  # UNSPECIFIED: no reason code (RFC 5280 5.3.1)
        by_serial[0xABC].extensions.get_extension_for_class(x509.CRLReason)
    assert der[0] == 0x30 and openssl_crl_verifies(der, cert.public_bytes(serialization.Encoding.PEM))
    assert lint_crl(der) == []


def test_a_partitioned_crl_names_its_url_in_a_critical_idp(ec_ca):
    key, cert, algorithm = ec_ca
    url = "http://127.0.0.1:8080/crl/0b5c3a1e-1111-4222-8333-444455556666.crl"
    built = crl.build_crl(cert, key, algorithm, [], 1, NOW, NOW + dt.timedelta(days=1), url)
    idp = built.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name == [x509.UniformResourceIdentifier(url)]
    assert lint_crl(built.public_bytes(serialization.Encoding.DER)) == []


def test_an_expired_certificate_drops_out_one_crl_after_its_expiry():
    t = 1_700_000_000.0
    gone = RevokedEntry("a1", t - 100, "SUPERSEDED", t - 10)  # expired before the previous CRL
    last = RevokedEntry("a2", t - 100, "SUPERSEDED", t + 10)  # expired after it: listed once more
    live = RevokedEntry("a3", t - 100, "SUPERSEDED", t + 10_000)
    listed, dropped = crl.split_expired([gone, last, live], previous_this_update=t)
    assert listed == [last, live] and dropped == [gone]
    assert crl.split_expired([gone], previous_this_update=None) == ([gone], [])  # first CRL lists all


def _ca(revocation: dict) -> Authority:
    return Authority(
        arn=parse_ca_arn(f"arn:aws:acm-pca:us-east-1:111122223333:certificate-authority/{uuid.uuid4()}"),
        status="ACTIVE",
        type="ROOT",
        key_algorithm="EC_prime256v1",
        signing_algorithm="X",
        revocation_configuration=revocation,
        usage_mode="GENERAL_PURPOSE",
        version=1,
        certificate_pem="pem",
    )


def test_freshness():
    doc = _ca(ENABLED)
    cfg = crl.fingerprint(doc)
    good = StoredCrl(b"der", 3, 1000.0, 1000.0 + 3 * 86400, 5, 5, cfg)
    assert crl.freshness(good, doc, 2000.0) is crl.Freshness.FRESH
    assert crl.freshness(good, doc, 1000.0 + 2 * 86400) is crl.Freshness.AGING  # past half its life
    assert crl.freshness(good, doc, 1000.0 + 4 * 86400) is crl.Freshness.STALE  # expired
    missing = StoredCrl(None, 0, 0, 0, 0, 0, "")
    lagging = StoredCrl(b"der", 3, 1000.0, 1000.0 + 3 * 86400, 5, 6, cfg)
    assert crl.freshness(missing, doc, 2000.0) is crl.Freshness.STALE
    assert crl.freshness(lagging, doc, 2000.0) is crl.Freshness.STALE
    changed = _ca(json.loads(json.dumps(ENABLED)))
    changed.revocation_configuration["CrlConfiguration"]["ExpirationInDays"] = 9
    assert crl.freshness(good, changed, 2000.0) is crl.Freshness.STALE


# -- rebuilds and serving ---------------------------------------------------------------------------


def fetch(flow, ca_id: str):
    resp = flow.client.get(f"/crl/{ca_id}.crl")
    return resp.status_code, resp.data, resp.headers.get("Content-Type")


def ca_public_key(flow, arn):
    pem = flow.ok("GetCertificateAuthorityCertificate", {"CertificateAuthorityArn": arn})["Certificate"]
    return x509.load_pem_x509_certificate(pem.encode()).public_key()


def test_revocations_reach_the_served_crl(flow):
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    cert_arn, first = issue_leaf(flow, arn)
    leaf = x509.load_pem_x509_certificate(
        flow.ok("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})[
            "Certificate"
        ].encode()
    )
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"http://pcaq.test:8080/crl/{ca_id}.crl"  # the route below
    _, second = issue_leaf(flow, arn)
    assert revoke(flow, arn, first)[0] == 200
    assert rebuild_crl(flow.svc, ca_id) == 1
    status, der, ctype = fetch(flow, ca_id)
    assert status == 200 and ctype == "application/pkix-crl"
    served = x509.load_der_x509_crl(der)
    assert served.is_signature_valid(ca_public_key(flow, arn))
    entry = served.get_revoked_certificate_by_serial_number(int(first, 16))
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        is x509.ReasonFlags.key_compromise
    )
    assert flow.svc.store.dirty_crls(float("inf")) == []
    assert rebuild_crl(flow.svc, ca_id) is None  # nothing new: a repeated message builds nothing

    assert revoke(flow, arn, second, "SUPERSEDED")[0] == 200
    status, der, _ = fetch(flow, ca_id)  # no worker answers in time: the previous CRL is served
    assert (
        status == 200
        and x509.load_der_x509_crl(der).get_revoked_certificate_by_serial_number(int(second, 16)) is None
    )
    assert rebuild_crl(flow.svc, ca_id) == 2
    newer = x509.load_der_x509_crl(fetch(flow, ca_id)[1])
    assert newer.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert {r.serial_number for r in newer} == {int(first, 16), int(second, 16)}
    assert lint_crl(newer.public_bytes(serialization.Encoding.DER)) == []


def test_a_build_that_lost_a_race_is_not_stored_and_a_partial_one_keeps_the_ca_dirty(flow):
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    _, serial = issue_leaf(flow, arn)
    assert revoke(flow, arn, serial)[0] == 200
    store = flow.svc.store
    assert store.save_crl(ca_id, b"partial", 5, 1.0, 2.0, 0, "cfg", 1.5) == 1  # covers 0 of 1 revocation
    assert store.dirty_crls(float("inf")) == [ca_id]
    assert store.save_crl(ca_id, b"older", 4, 1.0, 2.0, 1, "cfg", 1.5) == 0
    assert store.stored_crl(ca_id).der == b"partial"
    assert store.save_crl(ca_id, b"complete", 6, 1.0, 2.0, 1, "cfg", 1.5) == 2
    assert store.dirty_crls(float("inf")) == []


def test_crls_without_revocations_the_sweeper_and_expiry(flow):
    arn, _ = make_root(flow)
    ca_id = arn.rsplit("/", 1)[1]
    assert fetch(flow, ca_id)[0] == 404  # CRLs not enabled
    assert fetch(flow, "not-a-ca-id")[0] == 404
    assert sweep_revocation(flow.svc) == 0
    flow.ok(
        "UpdateCertificateAuthority", {"CertificateAuthorityArn": arn, "RevocationConfiguration": ENABLED}
    )
    assert fetch(flow, ca_id)[0] == 503  # enabled, and no worker built one yet
    flow.svc.queue.calls.clear()
    assert sweep_revocation(flow.svc) == 1 and flow.svc.queue.calls == [("rebuild_crl", ca_id)]
    assert rebuild_crl(flow.svc, ca_id) == 1
    empty = x509.load_der_x509_crl(fetch(flow, ca_id)[1])
    assert len(empty) == 0 and empty.next_update_utc - empty.last_update_utc == dt.timedelta(days=3)
    assert sweep_revocation(flow.svc) == 0
    later = time.time() + 2 * 86400  # past half of the 3-day validity: rebuilt although nothing changed
    flow.svc.clock = flow.svc.store.clock = lambda: later
    assert sweep_revocation(flow.svc) == 1
    assert rebuild_crl(flow.svc, ca_id) == 2


def test_expired_revoked_certificates_leave_the_crl_after_one_more(flow):
    arn, _ = make_root(flow, ENABLED)
    ca_id = arn.rsplit("/", 1)[1]
    _, serial = issue_leaf(flow, arn)  # lives 7 days
    assert revoke(flow, arn, serial)[0] == 200
    assert rebuild_crl(flow.svc, ca_id) == 1
    # Day 8: the first CRL after the leaf's expiry still lists it; day 10 (past half of that CRL's
    # 3 days, so due for a rebuild): the next one does not, and the serial leaves the revoked set.
    for days, listed in ((8, True), (10, False)):
        at = time.time() + days * 86400
        flow.svc.clock = flow.svc.store.clock = lambda at=at: at
        assert rebuild_crl(flow.svc, ca_id) is not None
        der = flow.svc.store.stored_crl(ca_id).der
        assert (
            x509.load_der_x509_crl(der).get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
        ) is listed
    assert flow.svc.store.r.zcard(f"pcaq:revoked:{ca_id}") == 0


def test_omit_extension_keeps_the_cdp_out_of_new_certificates(flow):
    omit = {
        "CrlConfiguration": {
            "Enabled": True,
            "CrlDistributionPointExtensionConfiguration": {"OmitExtension": True},
        }
    }
    arn, _ = make_root(flow, omit)
    cert_arn, _ = issue_leaf(flow, arn)
    pem = flow.ok("GetCertificate", {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn})[
        "Certificate"
    ]
    with pytest.raises(x509.ExtensionNotFound):
        x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
            x509.CRLDistributionPoints
        )
    assert rebuild_crl(flow.svc, arn.rsplit("/", 1)[1]) == 1  # the CRL itself is still published
