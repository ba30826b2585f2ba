"""The front half of issuance: cheap checks, a PENDING record, the enqueue; and reading results.

Only cheap work happens here (docs/architecture.md): the CSR is parsed but its signature is checked by the
worker, which also builds and signs the certificate.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization

from pcaq.archive import Archive, kept
from pcaq.ca import audit_trail
from pcaq.ca.arns import CaArn, parse_ca_arn, parse_certificate_arn, parse_template_arn
from pcaq.ca.authorities import Authorities
from pcaq.ca.authority import ACTIVE, PENDING_CERTIFICATE, Authority
from pcaq.errors import (
    ConcurrentModification,
    InProgress,
    InvalidArgument,
    InvalidState,
    NotFound,
    PcaqError,
    RequestFailed,
)
from pcaq.pki import certificates, keys, profiles, validity
from pcaq.platform import wakeups
from pcaq.platform.identity import Caller
from pcaq.platform.queue import DRAIN_TASK, Queue
from pcaq.records import CertificateRecord, Store
from pcaq.records.pending import PendingRequest
from pcaq.records.requests import CaChanged

ROOT_TEMPLATES = frozenset({"RootCACertificate", "RootCACertificate_APIPassthrough"})


def new_serial() -> int:
    """A random positive serial of up to 127 bits (>= 64 bits of entropy, DER at most 16 bytes)."""
    while True:
        serial = secrets.randbits(127)
        if serial >> 64:  # keep at least 64 significant bits
            return serial


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class Issuance:
    """IssueCertificate and GetCertificate."""

    store: Store
    queue: Queue
    authorities: Authorities
    archive: Archive | None = None  # where records that left Redis are read (None: nowhere)
    _spki_cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    def issue(self, caller: Caller, params: dict, request_id: str = "-") -> str:
        """Accept a certificate request; returns its ARN before any signing happens.

        The request's audit entry is written by the same atomic step as its record.
        """
        template = (
            parse_template_arn(params["TemplateArn"], caller.partition) if params.get("TemplateArn") else None
        )
        template = template or profiles.DEFAULT_TEMPLATE
        profile = profiles.get_profile(template)
        csr = certificates.parse_csr(params["Csr"])
        csr_der = csr.public_bytes(serialization.Encoding.DER)
        ca_arn = parse_ca_arn(params["CertificateAuthorityArn"])
        token = params.get("IdempotencyToken")
        # The checks run on this process's copy of the CA document; the submit refuses if the
        # document changed since (CaChanged), and the checks run again on a fresh copy.
        for fresh in (False, True, True):
            ca = self.authorities.load(caller, ca_arn, max_age=0.0 if fresh else float("inf"))
            try:
                request = self._checked_request(ca, template, profile, csr, csr_der, params, request_id)
            except PcaqError:
                if fresh:
                    raise
                continue  # a refusal based on a cached copy is confirmed on a fresh one
            try:
                submission = self._submit(ca_arn, caller, request, token, ca.version, params, request_id)
                break
            except CaChanged:
                continue
        else:
            raise ConcurrentModification("The certificate authority is changing; retry.")
        if submission.kicked:  # the record is in the outbox: if the drain is not asked for, the sweeper asks
            wakeups.wake(DRAIN_TASK, self.queue.drain)
        return ca_arn.certificate(submission.serial_hex)

    def _checked_request(
        self, ca: Authority, template: str, profile, csr, csr_der: bytes, params: dict, request_id: str
    ) -> bytes:
        """The cheap checks of IssueCertificate against one read of the CA; the encoded request."""
        status = ca.effective_status()
        if template in ROOT_TEMPLATES:
            if not ca.is_root:
                raise InvalidArgument(
                    f"The template {template} can only be used by a ROOT certificate authority."
                )
            if status not in (PENDING_CERTIFICATE, ACTIVE):
                raise InvalidState(
                    "The certificate authority is not in a valid state for issuing certificates."
                )
            if _spki(csr.public_key()) != self._spki_of(ca):
                raise InvalidArgument(
                    f"The template {template} signs only the certificate authority's own CSR."
                )
        elif status != ACTIVE:
            raise InvalidState("The certificate authority is not in a valid state for issuing certificates.")
        keys.check_signing_algorithm(ca.key_algorithm, params["SigningAlgorithm"])
        now = datetime.now(UTC).replace(microsecond=0)
        ca_not_after, ca_not_before = (None, None) if profile.is_root else (ca.not_after, ca.not_before)
        not_before, not_after = validity.compute_window(
            params["Validity"],
            params.get("ValidityNotBefore"),
            now,
            datetime.fromtimestamp(ca_not_after, UTC) if ca_not_after else None,
            datetime.fromtimestamp(ca_not_before, UTC) if ca_not_before else None,
            ca.usage_mode == "SHORT_LIVED_CERTIFICATE",
        )
        return PendingRequest(
            csr_der=csr_der,
            signing_algorithm=params["SigningAlgorithm"],
            template=template,
            not_before=not_before,
            not_after=not_after,
            api_passthrough=params.get("ApiPassthrough") or None,
            request_id=request_id,
        ).encode()

    def _submit(
        self,
        ca_arn: CaArn,
        caller: Caller,
        request: bytes,
        token: str | None,
        version: int,
        params: dict,
        request_id: str,
    ):
        while True:  # a serial collision (2^-64 odds per request) just draws again
            serial_hex = format(new_serial(), "x")
            arn = ca_arn.certificate(serial_hex)
            audit = audit_trail.issue_fields(caller, request_id, params, arn, self.store.clock())
            submission = self.store.submit_certificate(
                ca_arn.ca_id, caller.account, serial_hex, request, token, str(version), audit
            )
            if submission is not None:
                return submission

    def get(self, caller: Caller, ca_arn: str, certificate_arn: str) -> tuple[str, str | None]:
        """The issued certificate (PEM) and its chain (PEM, None for a root's own certificate)."""
        parsed = parse_ca_arn(ca_arn)
        ca = self.authorities.load(caller, parsed, max_age=2.0)  # polled hard: a 2 s old copy will do
        cert_ca, serial_hex = parse_certificate_arn(certificate_arn)
        if cert_ca != parsed:
            raise NotFound(f"Could not find certificate {certificate_arn} issued by {ca_arn}.")
        record = self.store.get_certificate(cert_ca.ca_id, serial_hex)
        if record is None:
            record = self._archived(cert_ca.ca_id, serial_hex)
        if record is None:
            raise NotFound(f"Could not find certificate {certificate_arn}.")
        if record.status == "PENDING":
            raise InProgress("The certificate is still being issued.")
        if record.status == "FAILED":
            raise RequestFailed(f"The certificate could not be issued: {record.failure}")
        der = record.certificate_der
        assert der is not None  # ISSUED records carry their certificate
        pem = certificates.der_to_pem(der)
        if ca.is_root and self._spki_of(ca) in der:
            return pem, None  # a root's own certificate (it carries the CA's key) has no chain above it
        if ca.certificate_pem is None:
            # A copy read before the CA's certificate was imported (up to 2 s old): the CA has
            # signed this one since, so the fresh document has the certificate for its chain.
            ca = self.authorities.load(caller, parsed)
        if ca.certificate_pem is None:
            return pem, None
        return pem, ca.certificate_pem + (ca.chain_pem or "")

    def _archived(self, ca_id: str, serial_hex: str) -> CertificateRecord | None:
        """The record from the archive, in Redis's shape (retention removed it from Redis)."""
        if self.archive is None:
            return None
        found = kept(self.archive, ca_id, serial_hex)
        if found is None:
            return None
        status = "ISSUED" if found.issued else "FAILED"
        return CertificateRecord(status, found.certificate_der, found.failure, found.created_at)

    def _spki_of(self, ca: Authority) -> bytes:
        pem = ca.public_key_pem
        spki = self._spki_cache.get(pem)
        if spki is None:
            if len(self._spki_cache) > 10_000:
                self._spki_cache.clear()
            spki = self._spki_cache[pem] = _spki(keys.load_public_key_pem(pem))
        return spki
