"""The certificate authority lifecycle (docs/wire-contract.md, "CA lifecycle"): creation, states, import, deletion, tags.

A CA is one JSON document in the record store. Its public part is exactly the ``CertificateAuthority``
output shape; what callers must never see (the CSR, certificate, chain, tags, the state before
deletion) sits under ``internal``. Only this service reads and changes the document as such; what
:meth:`Authorities.load` returns, and what every other reader works with, is the typed, read-only
:class:`pcaq.ca.authority.Authority`.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from time import monotonic

from pcaq.ca import key_policy, revocation_config, tags
from pcaq.ca.arns import CaArn, new_ca_arn, parse_ca_arn
from pcaq.ca.audit_trail import ApiCall
from pcaq.ca.authority import (
    ACTIVE,
    CREATING,
    DELETED,
    DISABLED,
    FAILED,
    PENDING_CERTIFICATE,
    Authority,
    seen_status,
)
from pcaq.errors import InProgress, InvalidArgument, InvalidNextToken, InvalidState, NotFound, RequestFailed
from pcaq.platform import wakeups
from pcaq.platform.identity import Caller
from pcaq.platform.queue import CREATE_CA_KEY_TASK, Queue
from pcaq.platform.settings import Settings
from pcaq.records import Store

MAX_CAS_PER_PAGE = 100  # AWS accepts MaxResults up to 1000 but answers at most 100
_MAX_PAGE_OFFSET = 10**9  # far past any real list; a larger offset would overflow Redis's ZRANGE (a 500)
# FIPS_140_3_LEVEL_3_OR_HIGHER is taken once botocore's model lists it (its schema check comes first).
SUPPORTED_SECURITY_STANDARDS = (
    "FIPS_140_2_LEVEL_2_OR_HIGHER",
    "FIPS_140_2_LEVEL_3_OR_HIGHER",
    "FIPS_140_3_LEVEL_3_OR_HIGHER",
)
# The China regions keep CA keys to the Chinese standard only: there CreateCertificateAuthority accepts
# CCPC_LEVEL_1_OR_HIGHER alone, and the default (FIPS level 3) is refused (the model's documentation of
# KeyStorageSecurityStandard; AWS's China documentation).
_STANDARDS_OF_PARTITION = {"aws-cn": ("CCPC_LEVEL_1_OR_HIGHER",)}
DEFAULT_SECURITY_STANDARD = "FIPS_140_2_LEVEL_3_OR_HIGHER"


def _now() -> float:
    return round(time.time(), 3)


def effective_status(doc: dict, now: float | None = None) -> str:
    """The status callers see of a stored CA document (see :meth:`Authority.effective_status`)."""
    return seen_status(doc["Status"], doc.get("NotAfter"), now or time.time())


def public_view(doc: dict) -> dict:
    """The ``CertificateAuthority`` output structure of a stored CA document."""
    view = {k: v for k, v in doc.items() if k != "internal"}
    view["Status"] = effective_status(doc)
    return view


def encode_page_token(offset: int) -> str:
    """An opaque pagination token."""
    return base64.urlsafe_b64encode(f"pcaq-page:{offset}".encode()).decode()


def decode_page_token(token: str | None) -> int:
    """The offset inside a token made by :func:`encode_page_token`; InvalidNextToken otherwise."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        prefix, _, offset = text.partition(":")
        if prefix != "pcaq-page" or not offset.isdigit() or int(offset) > _MAX_PAGE_OFFSET:
            raise ValueError
        return int(offset)
    except ValueError as exc:
        raise InvalidNextToken("The NextToken is not one this service issued.") from exc


@dataclass
class Authorities:
    """Operations on CAs, as the API calls them."""

    store: Store
    queue: Queue
    settings: Settings
    _cache: dict[str, tuple[Authority, float]] = field(default_factory=dict, repr=False)

    # -- lookup -----------------------------------------------------------------------------------

    def load(self, caller: Caller, arn: CaArn, max_age: float = 0.0) -> Authority:
        """The CA named by ``arn`` if the caller's account owns it in the caller's partition, else NotFound.

        Partitions are apart as in AWS (an ``aws-cn`` CA is not reachable through an ``aws`` region):
        an ARN of another partition names no CA the caller can see, like one of another account.

        With ``max_age`` > 0 a view read by this process at most that many seconds ago may answer
        (the hot paths: IssueCertificate checks its copy's version when it submits, see
        ``Store.submit_certificate``).
        """
        if arn.account != caller.account or arn.partition != caller.partition:
            raise NotFound(f"Could not find certificate authority {arn}.")
        cached = self._cache.get(arn.ca_id) if max_age > 0 else None
        if cached is not None and monotonic() - cached[1] <= max_age:
            ca: Authority | None = cached[0]
        else:
            ca = Authority.read(self.store, arn.ca_id)
            if ca is not None:
                if len(self._cache) >= 10_000:
                    self._cache.clear()  # bounded; refilled on demand
                self._cache[arn.ca_id] = (ca, monotonic())
        if ca is None or ca.arn != arn:
            raise NotFound(f"Could not find certificate authority {arn}.")
        if ca.status == DELETED and (ca.restorable_until or 0) < time.time():
            # Past its restoration window a deleted CA is gone for good.
            self.store.remove_ca(arn.ca_id, arn.account)
            raise NotFound(f"Could not find certificate authority {arn}.")
        return ca

    def _update(self, caller: Caller, arn: CaArn, change, call: ApiCall | None) -> dict | None:
        """Apply ``change`` (see ``Store.update_ca``), with the call's audit entry in the same step."""
        self.load(caller, arn)  # ownership and existence
        audit = call.fields(self.store.clock()) if call is not None else None
        return self.store.update_ca(arn.ca_id, change, audit)

    # -- create, describe, list -------------------------------------------------------------------

    def create(self, caller: Caller, params: dict, call: ApiCall | None = None) -> str:
        """Record a new CA in CREATING and queue its key generation; returns its ARN. The call's audit
        entry is recorded with the new CA (not on an idempotent repeat, which changes nothing)."""
        config = params["CertificateAuthorityConfiguration"]
        key_algorithm = config["KeyAlgorithm"]
        from pcaq.pki import keys, subjects  # imported here: crypto is loaded only where CAs are made

        if key_algorithm not in keys.KEY_ALGORITHMS:
            raise InvalidArgument(f"The key algorithm {key_algorithm} is not supported by this service.")
        keys.check_signing_algorithm(key_algorithm, config["SigningAlgorithm"])
        subjects.build_name(config["Subject"])  # refuse a bad subject now, not in the worker
        if not config["Subject"]:
            raise InvalidArgument("The CA subject must contain at least one attribute.")
        standard = params.get("KeyStorageSecurityStandard", DEFAULT_SECURITY_STANDARD)
        if standard not in _STANDARDS_OF_PARTITION.get(caller.partition, SUPPORTED_SECURITY_STANDARDS):
            raise InvalidArgument(
                "A certificate authority cannot be created in this region with the specified security standard."
            )
        storage = key_policy.key_storage(self.settings, key_algorithm)
        tag_list = tags.add([], params.get("Tags", []))
        arn = new_ca_arn(caller.partition, caller.region, caller.account)
        now = _now()
        doc = {
            "Arn": str(arn),
            "OwnerAccount": caller.account,
            "CreatedAt": now,
            "LastStateChangeAt": now,
            "Type": params["CertificateAuthorityType"],
            "Status": CREATING,
            "CertificateAuthorityConfiguration": config,
            "RevocationConfiguration": revocation_config.normalise(params.get("RevocationConfiguration")),
            "UsageMode": params.get("UsageMode", "GENERAL_PURPOSE"),
            "internal": {"tags": tag_list, "key_storage": storage},
        }
        if storage == key_policy.PKCS11:  # a software key meets no FIPS level: said only when true
            doc["KeyStorageSecurityStandard"] = standard
        token = params.get("IdempotencyToken")
        # The store scopes tokens by account; the region goes in too, else a token reused in another
        # region would answer with an ARN (that region, the first CA's id) naming no CA.
        scoped_token = f"{caller.region}/{token}" if token else None
        audit = call.fields(now, {"CertificateAuthorityArn": str(arn)}) if call is not None else None
        ca_id, created = self.store.create_ca(arn.ca_id, doc, caller.account, scoped_token, audit)
        if created:  # if the message is not sent, the sweeper re-queues CAs stuck in CREATING
            wakeups.wake(CREATE_CA_KEY_TASK, self.queue.create_ca_key, ca_id)
        return str(CaArn(arn.partition, arn.region, arn.account, ca_id))

    def describe(self, caller: Caller, arn: str) -> dict:
        """The CertificateAuthority structure."""
        return self.load(caller, parse_ca_arn(arn)).described(time.time())

    def list(self, caller: Caller, max_results: int | None, next_token: str | None, owner: str | None):
        """A page of the caller's CAs (those of its partition, which alone it can reach) and the token
        of the next page (or None)."""
        if owner == "OTHER_ACCOUNTS":
            return [], None  # nothing is shared across accounts here
        offset = decode_page_token(next_token)
        size = min(max_results or MAX_CAS_PER_PAGE, MAX_CAS_PER_PAGE)
        ids, total = self.store.list_ca_ids(caller.account, offset, size)
        now = time.time()
        docs = [
            d
            for d in self.store.get_cas(ids)
            if not (d["Status"] == DELETED and d.get("RestorableUntil", 0) < now)
            and d["Arn"].split(":", 2)[1] == caller.partition
        ]
        nxt = encode_page_token(offset + size) if offset + size < total else None
        return [public_view(d) for d in docs], nxt

    # -- key generation (called by the worker) ------------------------------------------------------

    def key_generated(
        self,
        ca_id: str,
        public_key_pem: str,
        csr_pem: str,
        sealed_key: bytes | None = None,
        audit: dict[str, str] | None = None,
    ) -> bool:
        """CREATING -> PENDING_CERTIFICATE once the worker made the key and the CA's CSR.

        The encrypted key (``sealed_key``, from ``KeyVault.seal``) and the ``audit`` entry are stored in
        the same atomic step as the change, and only if the CA is still CREATING at that moment: a CA
        deleted meanwhile (removed for good, see :meth:`delete`) keeps no key. Returns False when the
        CA is gone or no longer CREATING (nothing stored).
        """

        def done(doc: dict) -> None:
            doc["Status"] = PENDING_CERTIFICATE
            doc["internal"].update(public_key_pem=public_key_pem, csr_pem=csr_pem)

        return self._leave_creating(ca_id, done, audit, sealed_key)

    def creation_failed(self, ca_id: str, reason: str, audit: dict[str, str] | None = None) -> bool:
        """CREATING -> FAILED with a FailureReason, and the ``audit`` entry in the same step; False
        when the CA is gone or no longer CREATING (nothing changed)."""

        def failed(doc: dict) -> None:
            doc.update(Status=FAILED, FailureReason=reason)

        return self._leave_creating(ca_id, failed, audit)

    def _leave_creating(self, ca_id: str, apply, audit: dict | None, sealed_key: bytes | None = None) -> bool:
        def change(doc: dict) -> dict:
            if doc["Status"] != CREATING:
                raise InvalidState(f"The certificate authority is {doc['Status']}, no longer CREATING.")
            apply(doc)
            doc["LastStateChangeAt"] = _now()
            return doc

        try:
            self.store.update_ca(ca_id, change, audit, sealed_key)
            moved = True
        except (NotFound, InvalidState):  # deleted meanwhile, or a redelivered job: nothing to do
            moved = False
        self.store.ca_key_generated(ca_id)
        return moved

    # -- CSR and certificate ----------------------------------------------------------------------

    def csr(self, caller: Caller, arn: str) -> str:
        """The CA's CSR (PEM); RequestInProgress while the key is being made."""
        ca = self.load(caller, parse_ca_arn(arn))
        if ca.status == CREATING:
            raise InProgress("The certificate authority's key and CSR are still being created.")
        if ca.status == FAILED:
            raise RequestFailed("The certificate authority could not be created; delete it.")
        if ca.status == DELETED:
            raise InvalidState(f"The certificate authority {arn} is deleted.")
        return ca.csr_pem

    def certificate(self, caller: Caller, arn: str) -> tuple[str, str | None]:
        """The CA certificate (PEM) and the chain above it (PEM, None for a root)."""
        ca = self.load(caller, parse_ca_arn(arn))
        if ca.status == DELETED or ca.certificate_pem is None:
            raise InvalidState(
                f"The certificate authority {arn} is in status {ca.effective_status(time.time())} and has no certificate."
            )
        return ca.certificate_pem, ca.chain_pem

    def import_certificate(
        self,
        caller: Caller,
        arn: str,
        certificate: bytes,
        chain: bytes | None,
        call: ApiCall | None = None,
    ) -> None:
        """Install the CA certificate; the CA becomes ACTIVE unless it was DISABLED."""
        from pcaq.pki import ca_certificates

        ca_arn = parse_ca_arn(arn)
        ca = self.load(caller, ca_arn)
        if ca.status == CREATING:
            raise InProgress("The certificate authority's key and CSR are still being created.")
        if ca.status in (DELETED, FAILED):
            raise InvalidState(f"A certificate cannot be imported into a CA in status {ca.status}.")
        cert, chain_certs = ca_certificates.validate_import(ca.type, ca.public_key_pem, certificate, chain)
        cert_pem = ca_certificates.certificate_pem(cert)
        chain_pem = ca_certificates.chain_pem(chain_certs) if chain_certs else None

        def change(doc: dict) -> dict:
            if doc["Status"] not in (PENDING_CERTIFICATE, ACTIVE, DISABLED):
                raise InvalidState(f"A certificate cannot be imported into a CA in status {doc['Status']}.")
            new_status = DISABLED if doc["Status"] == DISABLED else ACTIVE
            if new_status != doc["Status"]:
                doc["LastStateChangeAt"] = _now()
            doc["Status"] = new_status
            doc["Serial"] = format(cert.serial_number, "x")
            doc["NotBefore"] = cert.not_valid_before_utc.timestamp()
            doc["NotAfter"] = cert.not_valid_after_utc.timestamp()
            doc["internal"]["certificate_pem"] = cert_pem
            if chain_pem:
                doc["internal"]["chain_pem"] = chain_pem
            else:
                doc["internal"].pop("chain_pem", None)
            return doc

        self._update(caller, ca_arn, change, call)

    # -- update, delete, restore -------------------------------------------------------------------

    def update(
        self,
        caller: Caller,
        arn: str,
        status: str | None,
        revocation: dict | None,
        call: ApiCall | None = None,
    ) -> None:
        """Switch ACTIVE <-> DISABLED and/or replace the revocation configuration (with the call's
        audit entry in the same step)."""
        if status is None and revocation is None:
            raise InvalidArgument("Give Status or RevocationConfiguration to update.")
        if status is not None and status not in (ACTIVE, DISABLED):
            raise InvalidArgument(f"Status can only be set to ACTIVE or DISABLED, not {status}.")
        normalised = revocation_config.normalise(revocation) if revocation is not None else None

        def change(doc: dict) -> dict:
            current = effective_status(doc)
            if current not in (ACTIVE, DISABLED):
                raise InvalidState(f"The certificate authority is in status {current} and cannot be updated.")
            if status is not None and status != doc["Status"]:
                doc["Status"] = status
                doc["LastStateChangeAt"] = _now()
            if normalised is not None:
                doc["RevocationConfiguration"] = normalised
            return doc

        self._update(caller, parse_ca_arn(arn), change, call)

    def delete(self, caller: Caller, arn: str, days: int | None, call: ApiCall | None = None) -> None:
        """Delete a CA: refused while ACTIVE; restorable for 7 to 30 days unless CREATING or FAILED.

        A CREATING or FAILED CA is removed at once, not restorable: it has no key (the worker stores
        the key only while the CA is CREATING, see :meth:`key_generated`), so a restored CA always has
        one. The status is judged inside the transaction, so a key stored meanwhile makes the CA
        PENDING_CERTIFICATE and restorable. The call's audit entry is written in the same step.
        """
        window = days or 30

        def change(doc: dict) -> dict | None:
            current = effective_status(doc)
            if current in (CREATING, FAILED):
                return None  # removed for good (Store.update_ca)
            if current == ACTIVE:
                raise InvalidState("An ACTIVE certificate authority cannot be deleted; disable it first.")
            if current == DELETED:
                raise InvalidState("The certificate authority is already deleted.")
            now = _now()
            doc["internal"]["status_before_delete"] = doc["Status"]
            doc.update(Status=DELETED, LastStateChangeAt=now, RestorableUntil=now + window * 86400)
            return doc

        self._update(caller, parse_ca_arn(arn), change, call)

    def restore(self, caller: Caller, arn: str, call: ApiCall | None = None) -> None:
        """Bring a DELETED CA back to the status it had before deletion (never CREATING: see
        :meth:`delete`), with the call's audit entry in the same step."""

        def change(doc: dict) -> dict:
            if doc["Status"] != DELETED:
                raise InvalidState(
                    f"Only a DELETED certificate authority can be restored; it is {doc['Status']}."
                )
            doc["Status"] = doc["internal"].pop("status_before_delete", PENDING_CERTIFICATE)
            doc.pop("RestorableUntil", None)
            doc["LastStateChangeAt"] = _now()
            return doc

        self._update(caller, parse_ca_arn(arn), change, call)

    # -- tags -------------------------------------------------------------------------------------

    def _check_taggable(self, doc: dict) -> None:
        if doc["Status"] == DELETED:
            raise InvalidState("The tags of a deleted certificate authority cannot be changed.")

    def tag(self, caller: Caller, arn: str, new: list[dict], call: ApiCall | None = None) -> None:
        """Add or overwrite tags."""

        def change(doc: dict) -> dict:
            self._check_taggable(doc)
            doc["internal"]["tags"] = tags.add(doc["internal"].get("tags", []), new)
            return doc

        self._update(caller, parse_ca_arn(arn), change, call)

    def untag(self, caller: Caller, arn: str, gone: list[dict], call: ApiCall | None = None) -> None:
        """Remove tags."""

        def change(doc: dict) -> dict:
            self._check_taggable(doc)
            doc["internal"]["tags"] = tags.remove(doc["internal"].get("tags", []), gone)
            return doc

        self._update(caller, parse_ca_arn(arn), change, call)

    def list_tags(self, caller: Caller, arn: str, max_results: int | None, next_token: str | None):
        """A page of the CA's tags and the next token (or None)."""
        all_tags = list(self.load(caller, parse_ca_arn(arn)).tags)
        offset = decode_page_token(next_token)
        size = max_results or 50
        nxt = encode_page_token(offset + size) if offset + size < len(all_tags) else None
        return all_tags[offset : offset + size], nxt
