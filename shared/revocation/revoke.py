"""RevokeCertificate (docs/revocation.md): serials as callers write them, RFC 5280 reason codes, and the
rules on what may be revoked. Also how the revocation services find every CA they serve.

A revocation is recorded atomically on the certificate record, in the CA's revoked set and in its
audit trail (``Store.revoke``); the CA's CRL is then rebuilt by a worker (``worker/revocation_tasks.py``) and
its cached OCSP answers are dropped in the same step.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509

from pcaq.ca.arns import parse_ca_arn
from pcaq.ca.audit_trail import ApiCall
from pcaq.ca.authorities import Authorities
from pcaq.ca.authority import ACTIVE, DELETED, DISABLED, Authority
from pcaq.errors import AlreadyProcessed, InProgress, InvalidRequest, InvalidState, LimitExceeded, NotFound
from pcaq.pki import keys
from pcaq.platform import wakeups
from pcaq.platform.credentials import load_credentials
from pcaq.platform.identity import Caller
from pcaq.platform.queue import CRL_TASK
from pcaq.platform.settings import Settings
from pcaq.records import Store
from pcaq.records import revocations as codes

# The RevocationReason enum -> RFC 5280 §5.3.1 CRLReason (the numeric codes are the ASN.1 values).
REASONS: dict[str, x509.ReasonFlags] = {
    "UNSPECIFIED": x509.ReasonFlags.unspecified,  # 0
    "KEY_COMPROMISE": x509.ReasonFlags.key_compromise,  # 1
    "CERTIFICATE_AUTHORITY_COMPROMISE": x509.ReasonFlags.ca_compromise,  # 2
    "AFFILIATION_CHANGED": x509.ReasonFlags.affiliation_changed,  # 3
    "SUPERSEDED": x509.ReasonFlags.superseded,  # 4
    "CESSATION_OF_OPERATION": x509.ReasonFlags.cessation_of_operation,  # 5
    "PRIVILEGE_WITHDRAWN": x509.ReasonFlags.privilege_withdrawn,  # 9
    "A_A_COMPROMISE": x509.ReasonFlags.aa_compromise,  # 10
}
MAX_REVOKED_PER_CA = 1_000_000  # unexpired revoked certificates per CA (AWS's quota)
_SEPARATORS = re.compile(r"[\s:]")
_HEX = re.compile(r"[0-9a-f]+")


def normalise_serial(text: str) -> str:
    """A serial as stored (lower-case hex, no leading zeros) from how a caller may write it: any case,
    with or without colons, spaces or a ``0x`` prefix. InvalidRequest if it is not hexadecimal."""
    cleaned = _SEPARATORS.sub("", text).lower()
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned or not _HEX.fullmatch(cleaned):
        raise InvalidRequest(
            f"CertificateSerial {text[:64]!r} is not a hexadecimal serial number "
            "(write it as openssl prints it, e.g. 3a:f1:... or 3af1...)."
        )
    return cleaned.lstrip("0") or "0"


def reason_flag(reason: str) -> x509.ReasonFlags | None:
    """The CRLReason to publish for a RevocationReason; None for UNSPECIFIED, whose reason code
    RFC 5280 §5.3.1 says should be left out rather than written."""
    flag = REASONS[reason]
    return None if flag is x509.ReasonFlags.unspecified else flag


def is_own_certificate(ca: Authority, cert: x509.Certificate) -> bool:
    """True if ``cert`` is a self-signed certificate of this CA's own key (a root's certificate)."""
    if cert.issuer != cert.subject:
        return False
    return keys.public_key_pem(cert.public_key()) == ca.public_key_pem


def served_accounts(settings: Settings) -> set[str]:
    """Every account that can own CAs here: the configured one and those of the credentials."""
    return {settings.account_id} | {c.account for c in load_credentials(settings).values()}


def all_ca_ids(store: Store, settings: Settings) -> list[str]:
    """The ids of every CA of the served accounts (a few hundred at most)."""
    return [
        i for account in sorted(served_accounts(settings)) for i in store.list_ca_ids(account, 0, 100_000)[0]
    ]


def all_authorities(store: Store, settings: Settings) -> Iterator[Authority]:
    """Every CA that is not deleted, across the served accounts."""
    for doc in store.get_cas(all_ca_ids(store, settings)):
        ca = Authority.of(doc)
        if ca.status != DELETED:
            yield ca


@dataclass
class Revocations:
    """RevokeCertificate, as the API calls it."""

    authorities: Authorities

    @property
    def store(self) -> Store:
        return self.authorities.store

    def revoke(
        self, caller: Caller, ca_arn: str, serial_text: str, reason: str, call: ApiCall | None = None
    ) -> None:
        """Revoke the certificate with this serial issued by the CA; the CRL is rebuilt soon after.
        The call's audit entry is recorded in the same atomic step as the revocation."""
        parsed = parse_ca_arn(ca_arn)
        ca = self.authorities.load(caller, parsed)
        status = ca.effective_status(self.store.clock())
        if status not in (ACTIVE, DISABLED):
            raise InvalidState(
                f"The certificate authority is {status}; certificates can be revoked only while it is "
                "ACTIVE or DISABLED."
            )
        serial_hex = normalise_serial(serial_text)
        ca_id = parsed.ca_id
        state = self.store.certificate_state(ca_id, serial_hex)
        if state is None:
            raise NotFound(f"Could not find a certificate with serial {serial_text[:64]} issued by {ca_arn}.")
        self._check_revocable(state, serial_text)
        cert = x509.load_der_x509_certificate(state.certificate_der)
        if is_own_certificate(ca, cert):
            raise InvalidRequest("A root CA's own self-signed certificate cannot be revoked.")
        now = self.store.clock()
        not_after = cert.not_valid_after_utc.timestamp()
        if not_after < now:
            raise InvalidRequest(
                f"The certificate with serial {serial_text[:64]} has expired; it cannot be revoked."
            )
        audit = call.fields(now) if call is not None else None
        code, letter = self.store.revoke(ca_id, serial_hex, now, reason, not_after, MAX_REVOKED_PER_CA, audit)
        if code == codes.ALREADY_REVOKED:
            raise AlreadyProcessed(f"The certificate with serial {serial_text[:64]} is already revoked.")
        if code == codes.TOO_MANY:
            raise LimitExceeded(
                f"The certificate authority has {MAX_REVOKED_PER_CA} unexpired revoked certificates, "
                "the most its CRL may list."
            )
        if code != codes.REVOKED:  # the record vanished or changed state between the read and now
            raise NotFound(f"Could not find a certificate with serial {serial_text[:64]} issued by {ca_arn}.")
        self._ask_for_crl(ca)

    @staticmethod
    def _check_revocable(state, serial_text: str) -> None:
        if state.status == "PENDING":
            raise InProgress("The certificate is still being issued; revoke it once it is issued.")
        if state.status == "FAILED":
            raise InvalidRequest("The certificate's issuance failed: there is no certificate to revoke.")
        if state.revoked_at is not None:
            raise AlreadyProcessed(f"The certificate with serial {serial_text[:64]} is already revoked.")

    def _ask_for_crl(self, ca: Authority) -> None:
        if not ca.crl_enabled:
            return  # the CA is marked dirty: a CRL enabled later lists this revocation anyway
        window_ms = self.authorities.settings.crl_rebuild_delay * 1000
        if self.store.request_crl_rebuild(ca.id, window_ms):  # the revocation stands; else the sweeper asks
            wakeups.wake(CRL_TASK, self.authorities.queue.rebuild_crl, ca.id)
