"""Pending requests as the code before the versioned encoding wrote them (commit 8951178): requests like
these may sit in Redis across an upgrade, so the tests decode and sign them."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pcaq.records.pending import PendingRequest

# Written by encode_request of shared/ca/issuance.py before the encoding had a version (commit 8951178),
# for an IssueCertificate of a real P-256 CSR for legacy.example.com, 2026-12-03T08:00Z to
# 2026-12-10T08:00Z, with and without ApiPassthrough and the API request id. Requests like these may sit
# in Redis across an upgrade.
LEGACY_CSR = (
    "MIHWMH8CAQAwHTEbMBkGA1UEAwwSbGVnYWN5LmV4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAER94pG1C3hHLJ"
    "FHFaYUUjOrmP+iRsq5bsIv0MEpksNuSn0vsgaMnm74W+fzSWSuHprEhajPk7cDteVMEGSZX6RaAAMAoGCCqGSM49BAMCA0cAMEQC"
    "IAV3JuaJeDQH9stuM5btvG4zFrCAHwQdOA7bcc/Gh4PFAiBaSqDyT9k+1bNeYPjnJUpVvzjedq6/YinsLppDUU00XA=="
)
LEGACY_RID = "6f1c2a4e-9b7d-4c1e-8a3f-2d5e7b9c0a11"
LEGACY_FULL = (
    b'{"csr":"' + LEGACY_CSR.encode() + b'","alg":"SHA256WITHECDSA",'
    b'"tpl":"EndEntityCertificate_APIPassthrough","nb":1796284800,"na":1796889600,'
    b'"api":{"Extensions":{"KeyUsage":{"DigitalSignature":true}}},"rid":"' + LEGACY_RID.encode() + b'"}'
)
LEGACY_PLAIN = (
    b'{"csr":"' + LEGACY_CSR.encode() + b'","alg":"SHA256WITHECDSA",'
    b'"tpl":"EndEntityCertificate","nb":1796284800,"na":1796889600}'
)
NOT_BEFORE = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
NOT_AFTER = datetime(2026, 12, 10, 8, 0, tzinfo=UTC)
API = {"Extensions": {"KeyUsage": {"DigitalSignature": True}}}


def legacy_full_request() -> PendingRequest:
    """What LEGACY_FULL holds, as a PendingRequest."""
    return PendingRequest(
        csr_der=x509.load_pem_x509_csr(
            f"-----BEGIN CERTIFICATE REQUEST-----\n{LEGACY_CSR}\n-----END CERTIFICATE REQUEST-----\n".encode()
        ).public_bytes(serialization.Encoding.DER),
        signing_algorithm="SHA256WITHECDSA",
        template="EndEntityCertificate_APIPassthrough",
        not_before=NOT_BEFORE,
        not_after=NOT_AFTER,
        api_passthrough=API,
        request_id=LEGACY_RID,
    )
