"""A certificate authority as its readers see it: a typed, read-only view of its stored document.

The record store keeps a CA as one JSON document (``pcaq.records.authorities``); only the CA service
(``pcaq.ca.authorities``) writes it. Everyone else (issuance, the worker, OCSP, CRLs, revocation,
audit reports) reads it through :class:`Authority`, built once per read: the CA certificate is parsed
only when first asked for, and then kept with the view.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pcaq.ca.arns import CaArn, parse_ca_arn

if TYPE_CHECKING:
    from cryptography import x509

    from pcaq.records import Store

CREATING = "CREATING"
PENDING_CERTIFICATE = "PENDING_CERTIFICATE"
ACTIVE = "ACTIVE"
DISABLED = "DISABLED"
DELETED = "DELETED"
EXPIRED = "EXPIRED"
FAILED = "FAILED"

_CRL_OFF: Mapping[str, Any] = {"Enabled": False}


def seen_status(status: str, not_after: float | None, now: float | None = None) -> str:
    """The status callers see: an ACTIVE or DISABLED CA past its Not After reads EXPIRED."""
    if status in (ACTIVE, DISABLED) and not_after and not_after < (now or time.time()):
        return EXPIRED
    return status


@dataclass(frozen=True)
class Authority:
    """One read of a CA document. Attributes that the document lacks (a CA still CREATING has no key,
    one PENDING_CERTIFICATE no certificate) are None."""

    arn: CaArn
    status: str  # as stored; see :meth:`effective_status`
    type: str  # ROOT or SUBORDINATE
    key_algorithm: str
    signing_algorithm: str
    revocation_configuration: Mapping[str, Any]  # normalised (``revocation_config.normalise``)
    usage_mode: str
    version: int  # bumped by every change; a submit checks it (``Store.submit_certificate``)
    configuration: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    not_before: float | None = None
    not_after: float | None = None
    restorable_until: float | None = None
    public_key_pem: str | None = None
    csr_pem: str | None = None
    certificate_pem: str | None = None
    chain_pem: str | None = None  # the certificates above the CA's own, for a subordinate CA
    tags: tuple[Mapping[str, str], ...] = ()
    key_storage: str = "SOFTWARE"  # where the CA's key is made and kept: SOFTWARE or PKCS11 (key_policy)
    # The CertificateAuthority output shape as stored (everything but the internal part).
    public: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, doc: Mapping[str, Any]) -> Authority:
        """The view of a stored CA document."""
        internal = doc.get("internal") or {}
        config = doc["CertificateAuthorityConfiguration"]
        return cls(
            arn=parse_ca_arn(doc["Arn"]),
            status=doc["Status"],
            type=doc["Type"],
            key_algorithm=config["KeyAlgorithm"],
            signing_algorithm=config["SigningAlgorithm"],
            revocation_configuration=doc.get("RevocationConfiguration") or {},
            usage_mode=doc.get("UsageMode", "GENERAL_PURPOSE"),
            configuration=config,
            version=internal.get("version", 0),
            not_before=doc.get("NotBefore"),
            not_after=doc.get("NotAfter"),
            restorable_until=doc.get("RestorableUntil"),
            public_key_pem=internal.get("public_key_pem"),
            csr_pem=internal.get("csr_pem"),
            certificate_pem=internal.get("certificate_pem"),
            chain_pem=internal.get("chain_pem"),
            tags=tuple(internal.get("tags", ())),
            key_storage=internal.get("key_storage", "SOFTWARE"),
            public={k: v for k, v in doc.items() if k != "internal"},
        )

    @classmethod
    def read(cls, store: Store, ca_id: str) -> Authority | None:
        """The CA's view as stored now, or None if there is no such CA."""
        doc = store.get_ca(ca_id)
        return None if doc is None else cls.of(doc)

    @property
    def id(self) -> str:
        """The CA's id (the UUID at the end of its ARN)."""
        return self.arn.ca_id

    @property
    def is_root(self) -> bool:
        """True for a ROOT CA."""
        return self.type == "ROOT"

    def effective_status(self, now: float | None = None) -> str:
        """The status callers see at ``now`` (EXPIRED once past Not After)."""
        return seen_status(self.status, self.not_after, now)

    def described(self, now: float | None = None) -> dict[str, Any]:
        """The ``CertificateAuthority`` output structure."""
        return {**self.public, "Status": self.effective_status(now)}

    @cached_property
    def certificate(self) -> x509.Certificate | None:
        """The CA certificate, parsed on first use (None before one is imported)."""
        if self.certificate_pem is None:
            return None
        from cryptography import x509  # only readers that sign or answer OCSP need it parsed

        return x509.load_pem_x509_certificate(self.certificate_pem.encode())

    @property
    def crl_configuration(self) -> Mapping[str, Any]:
        """The CA's CrlConfiguration (``{"Enabled": False}`` when none)."""
        return self.revocation_configuration.get("CrlConfiguration") or _CRL_OFF

    @property
    def crl_enabled(self) -> bool:
        """True if the CA's revocation configuration enables CRLs."""
        return bool(self.crl_configuration.get("Enabled"))

    @property
    def ocsp_enabled(self) -> bool:
        """True if the CA's revocation configuration enables OCSP."""
        return bool((self.revocation_configuration.get("OcspConfiguration") or {}).get("Enabled"))
