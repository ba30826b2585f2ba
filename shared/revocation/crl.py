"""Certificate revocation lists (docs/revocation.md, RFC 5280 §5): building one, and serving the current one.

A CA's CRL is built by a worker (the only place that holds CA keys) from the CA's revoked set and
stored in Redis as DER; the API serves it at ``GET /crl/<ca-id>.crl``. A CRL is a complete v2 CRL
with a CRL Number and an Authority Key Identifier; each entry carries its revocation date and, unless
the reason is UNSPECIFIED, a reason code. Next Update lies ``ExpirationInDays`` after This Update.

A CRL is rebuilt when a revocation is not in it yet, when its configuration or the CA certificate
changed, and when half of its validity has passed (so it never expires while the CA is in use).
An expired certificate stays listed until one CRL issued after its expiry has listed it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from cryptography import x509

from pcaq.ca import revocation_config
from pcaq.ca.authority import ACTIVE, DISABLED, Authority
from pcaq.errors import NotFound, Unavailable
from pcaq.pki import keys
from pcaq.platform import wakeups
from pcaq.platform.queue import CRL_TASK, Queue
from pcaq.platform.settings import Settings
from pcaq.records import Store
from pcaq.records.revocations import RevokedEntry, StoredCrl
from pcaq.revocation import urgent
from pcaq.revocation.revoke import REASONS, reason_flag


class Freshness(Enum):
    """How a stored CRL compares with what the CA needs."""

    FRESH = "fresh"  # serve it
    AGING = "aging"  # serve it, and have it rebuilt (half of its validity has passed)
    STALE = "stale"  # missing, expired, or lacking revocations or configuration: rebuild before serving


def crl_wanted(ca: Authority, now: float) -> bool:
    """True if the CA must publish a CRL now: CRLs enabled, a CA certificate, ACTIVE or DISABLED."""
    return (
        ca.crl_enabled and ca.certificate_pem is not None and ca.effective_status(now) in (ACTIVE, DISABLED)
    )


def fingerprint(ca: Authority) -> str:
    """What a CRL depends on besides revocations: the CRL settings and the CA certificate."""
    config = ca.crl_configuration
    relevant = {
        "days": config.get("ExpirationInDays", 7),
        "type": config.get("CrlType", "COMPLETE"),
        "cname": config.get("CustomCname", ""),
        "omit": config.get("CrlDistributionPointExtensionConfiguration", {}).get("OmitExtension", False),
        "ca": hashlib.sha256((ca.certificate_pem or "").encode()).hexdigest()[:16],
        "alg": ca.signing_algorithm,
    }
    return json.dumps(relevant, sort_keys=True, separators=(",", ":"))


def freshness(stored: StoredCrl, ca: Authority, now: float) -> Freshness:
    """Whether the stored CRL can be served as it is."""
    if stored.der is None or stored.next_update <= now or stored.built < stored.want:
        return Freshness.STALE
    if stored.config != fingerprint(ca):
        return Freshness.STALE
    if now >= refresh_time(stored.this_update, stored.next_update):
        return Freshness.AGING
    return Freshness.FRESH


def refresh_time(this_update: float, next_update: float) -> float:
    """When a CRL is rebuilt although nothing changed: half way through its validity."""
    return this_update + (next_update - this_update) / 2


def validity_window(ca: Authority, now: float) -> tuple[datetime, datetime]:
    """This Update (now, whole seconds) and Next Update (``ExpirationInDays`` later)."""
    this_update = datetime.fromtimestamp(int(now), UTC)
    return this_update, this_update + timedelta(days=int(ca.crl_configuration.get("ExpirationInDays", 7)))


def split_expired(
    entries: Iterable[RevokedEntry], previous_this_update: float | None
) -> tuple[list[RevokedEntry], list[RevokedEntry]]:
    """``(listed, dropped)``: an entry whose certificate expired before the previous CRL was issued
    has been listed by a CRL issued after its expiry (RFC 5280 §3.3), so it is dropped now."""
    listed, dropped = [], []
    for entry in entries:
        if previous_this_update and entry.not_after and entry.not_after < previous_this_update:
            dropped.append(entry)
        else:
            listed.append(entry)
    return listed, dropped


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())


def build_crl(
    ca_cert: x509.Certificate,
    private_key,
    signing_algorithm: str,
    entries: Iterable[RevokedEntry],
    number: int,
    this_update: datetime,
    next_update: datetime,
    partition_url: str | None = None,
) -> x509.CertificateRevocationList:
    """A signed v2 CRL: issuer = the CA certificate's subject, CRL Number, AKI, one entry per revoked
    serial (revocation date, reason code unless UNSPECIFIED). ``partition_url`` adds a critical
    Issuing Distribution Point naming that URL (CrlType PARTITIONED)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
    )
    if partition_url:
        idp = x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(partition_url)],
            relative_name=None,
            only_contains_user_certs=False,
            only_contains_ca_certs=False,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )
        builder = builder.add_extension(idp, critical=True)
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(entry.serial_hex, 16))
            .revocation_date(datetime.fromtimestamp(int(entry.revoked_at), UTC))
        )
        flag = reason_flag(entry.reason) if entry.reason in REASONS else None
        if flag is not None:
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(private_key, **keys.sign_kwargs(signing_algorithm))


def partition_url(ca: Authority, public_host: str) -> str | None:
    """The URL a PARTITIONED CRL names in its Issuing Distribution Point (None for COMPLETE)."""
    if ca.crl_configuration.get("CrlType") != "PARTITIONED":
        return None
    return revocation_config.crl_url(ca.revocation_configuration, ca.id, public_host)


@dataclass
class CrlPublisher:
    """The API's side: serve a CA's current CRL, asking a worker to rebuild it when it must."""

    store: Store
    queue: Queue
    settings: Settings

    def current(self, ca_id: str) -> bytes:
        """The DER CRL to serve. NotFound if the CA publishes none; Unavailable if one is due but no
        worker built it within ``responder_wait_ms``."""
        ca = Authority.read(self.store, ca_id)
        stored = self.store.stored_crl(ca_id)
        now = self.store.clock()
        if ca is None or not crl_wanted(ca, now):
            if stored.der is None:
                raise NotFound(f"The certificate authority {ca_id} publishes no CRL.")
            return stored.der  # CRLs were switched off (or the CA stopped): its last CRL stays up
        state = freshness(stored, ca, now)
        if state is Freshness.FRESH:
            return stored.der
        if state is Freshness.AGING:
            self._ask(ca_id)
            return stored.der
        try:
            urgent.ask_and_wait(
                self.store, self.queue, self.settings.responder_wait_ms / 1000, urgent.CRL, ca_id
            )
        except Exception:  # noqa: BLE001 - a broker outage: serve what there is
            pass
        latest = self.store.stored_crl(ca_id).der or stored.der
        if latest is None:
            raise Unavailable(f"The CRL of {ca_id} is being built; retry in a few seconds.")
        return latest

    def _ask(self, ca_id: str) -> None:
        if self.store.request_crl_rebuild(ca_id, self.settings.crl_rebuild_delay * 1000):
            wakeups.wake(CRL_TASK, self.queue.rebuild_crl, ca_id)  # else the sweeper refreshes aging CRLs
