"""What the console's pages draw from: decoded certificates and the charts (pure functions)."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from pcaq.api.console import charts
from pcaq.api.console.decoding import brief, decode
from pcaq.api.console.display import colon_serial, days_left, when
from pcaq.records.series import Minute


def _der(sans: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.com")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x3AF1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=10))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"n{i}.example.com") for i in range(sans)]), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP,
                        x509.UniformResourceIdentifier("http://o.test/ocsp"),
                    )
                ]
            ),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_certificate_is_decoded_with_readable_names():
    der = _der(200)
    decoded = decode(der)
    assert decoded.common_name == "svc.example.com" and decoded.public_key == "EC secp256r1"
    assert decoded.signature_algorithm == "ECDSA_WITH_SHA256"
    assert len(decoded.names) == 200 and decoded.names[0] == "DNS: n0.example.com"
    extensions = dict(decoded.extensions)
    assert extensions["Extended key usage"] == "SERVER_AUTH"
    assert extensions["Authority information access"] == "OCSP: http://o.test/ocsp"
    assert decoded.pem.startswith("-----BEGIN CERTIFICATE-----")
    assert brief(der) == ("svc.example.com", decoded.not_after) and brief(None) == ("", None)


def test_times_and_serials_as_the_pages_write_them():
    assert colon_serial("3af1") == "3a:f1" and colon_serial("af1") == "0a:f1"
    assert when(0) == "1970-01-01 00:00 UTC" and when(None) == "-"
    assert days_left(10 * 86400, now=0) == 10 and days_left(None) is None


def test_the_issued_chart_shows_a_burst_and_the_pending_chart_carries_its_last_sample():
    minutes = [Minute(60 * i) for i in range(60)]
    minutes[-1].issued = {5: 40, 6: 80}
    minutes[-2].pending = {10: 7}
    line = charts.issued_per_second(minutes)
    assert line.total == 120 and line.peak == 80 and not line.empty
    assert len(line.points.split()) == 360
    assert charts.issued_per_second([Minute(0)]).empty
    pending = charts.pending(minutes, now_pending=3)
    assert pending.peak == 7 and pending.latest == 3


def test_failures_and_latency_bars():
    minute = Minute(0, failures={"MalformedCSR": 3, "Abandoned": 1}, latency_buckets={1: 4, 13: 1})
    minute.latency_count, minute.latency_sum = 5, 2000.1
    bars = charts.failures([minute, Minute(60, failures={"MalformedCSR": 1})])
    assert [(label, n) for label, n, _ in bars.bars] == [("MalformedCSR", 4), ("Abandoned", 1)]
    latency, mean = charts.latency([minute])
    assert [label for label, _, _ in latency.bars] == ["<= 0.05 s", "> 1800 s"]
    assert mean == 2000.1 / 5


def test_key_usage_is_shown_bit_by_bit_with_encipher_only_under_key_agreement():
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ka.example.com")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def shown(usage: x509.KeyUsage) -> str:
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=1))
            .add_extension(usage, True)
            .sign(key, hashes.SHA256())
        )
        return dict(decode(cert.public_bytes(serialization.Encoding.DER)).extensions)["Key usage (critical)"]

    assert (
        shown(x509.KeyUsage(True, False, False, False, False, False, False, False, False))
        == "digital_signature"
    )
    agreement = x509.KeyUsage(False, False, False, False, True, False, False, True, False)
    assert shown(agreement) == "key_agreement, encipher_only"
