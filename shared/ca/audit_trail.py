"""The audit trail: every CA state change, issuance and revocation, appended to a Redis stream per CA
with who (the access key), what (the operation or event), when and the request id.

Every successful state-changing call (every operation but Get*, Describe* and List*) has one entry.
Each such call (IssueCertificate, the CA lifecycle and tag operations, RevokeCertificate,
permissions, policies, audit reports) hands its :class:`ApiCall` to the change, and the record store
appends the entry in the same atomic step as the change, so a Redis error can never keep the change
without its entry.
The outcome of key generation is appended by the step that stores the key (or marks the CA FAILED);
the outcome of each signing is appended by the commit that writes it (and a request given up after
its last attempt by the claim that gives it up), so a certificate is in the trail exactly when it is
in its record, with the request id of the IssueCertificate call that asked for it. ``pcaq audit --ca
ARN`` prints a CA's entries. Entries never hold key material, CSRs or certificates: only names, ARNs,
serials and short scalar parameters.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pcaq.archive import Archive
from pcaq.ca.arns import CaArn, parse_ca_arn
from pcaq.errors import PcaqError
from pcaq.platform.identity import Caller
from pcaq.records.audit_trail import CERTIFICATE_FAILED, CERTIFICATE_ISSUED, WORKER

log = logging.getLogger("pcaq.audit")

_READ_PREFIXES = ("Get", "Describe", "List")
# Scalar request parameters worth keeping (never blobs such as Csr or Certificate).
_PARAMS = (
    "Status",
    "CertificateSerial",
    "RevocationReason",
    "PermanentDeletionTimeInDays",
    "Principal",
    "SigningAlgorithm",
    "TemplateArn",
    "CertificateAuthorityType",
    "AuditReportResponseFormat",
)
_RESULTS = ("CertificateArn", "AuditReportId")
_MAX_VALUE = 256


def is_audited(operation: str) -> bool:
    """True for operations that change state (everything but Get*, Describe* and List*)."""
    return not operation.startswith(_READ_PREFIXES)


@dataclass(frozen=True)
class AuditEntry:
    """One line of a CA's audit trail."""

    entry_id: str
    when: float
    event: str
    who: str
    account: str
    request_id: str
    ca: str
    details: dict

    def line(self) -> str:
        """The entry as one human-readable line."""
        stamp = datetime.fromtimestamp(self.when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        extra = "".join(f" {k}={v}" for k, v in self.details.items())
        return f"{stamp} {self.event} who={self.who} account={self.account} request={self.request_id}{extra}"

    def as_json(self) -> str:
        """The entry as one JSON object."""
        return json.dumps(
            {
                "id": self.entry_id,
                "when": self.when,
                "event": self.event,
                "who": self.who,
                "account": self.account,
                "request_id": self.request_id,
                "ca": self.ca,
                "details": self.details,
            },
            sort_keys=True,
        )


def _fields(event: str, who: str, account: str, request_id: str, ca: str, details: dict, now: float) -> dict:
    return {
        "when": f"{now:.3f}",
        "event": event,
        "who": who,
        "account": account,
        "request_id": request_id,
        "ca": ca,
        "details": json.dumps(details, separators=(",", ":"), sort_keys=True),
    }


def _short(value: object) -> str:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = str(value)
    return text if len(text) <= _MAX_VALUE else text[: _MAX_VALUE - 3] + "..."


def api_details(params: dict, result: dict | None) -> dict:
    """The scalar facts of a call worth keeping: selected parameters, tag keys, resulting ARNs."""
    details = {name: _short(params[name]) for name in _PARAMS if params.get(name) is not None}
    config = params.get("CertificateAuthorityConfiguration")
    if isinstance(config, dict) and config.get("KeyAlgorithm"):
        details["KeyAlgorithm"] = _short(config["KeyAlgorithm"])
    if isinstance(params.get("Actions"), list):
        details["Actions"] = _short(params["Actions"])
    if isinstance(params.get("Tags"), list):
        details["TagKeys"] = _short([t.get("Key") for t in params["Tags"] if isinstance(t, dict)])
    for name in _RESULTS:
        if result and result.get(name):
            details[name] = _short(result[name])
    return details


# Recorded by the record store together with the change itself (see Issuance.issue and ApiCall).
_RECORDED_WITH_THE_CHANGE = frozenset(
    {
        "IssueCertificate",
        "CreateCertificateAuthority",
        "ImportCertificateAuthorityCertificate",
        "UpdateCertificateAuthority",
        "DeleteCertificateAuthority",
        "RestoreCertificateAuthority",
        "TagCertificateAuthority",
        "UntagCertificateAuthority",
        "RevokeCertificate",
        "CreatePermission",
        "DeletePermission",
        "PutPolicy",
        "DeletePolicy",
        "CreateCertificateAuthorityAuditReport",
    }
)


@dataclass(frozen=True)
class ApiCall:
    """A state-changing API call, handed to the operation that makes the change so that the record
    store appends the call's audit entry in the same atomic step as the change: both or neither."""

    operation: str
    caller: Caller
    request_id: str
    params: dict

    def fields(self, now: float, result: dict | None = None) -> dict[str, str]:
        """The call's audit entry; ``result`` holds what the call answers (e.g. the new CA's ARN)."""
        params = self.params
        ca = (
            params.get("CertificateAuthorityArn")
            or params.get("ResourceArn")  # PutPolicy and DeletePolicy name the CA so
            or (result or {}).get("CertificateAuthorityArn")
        )
        details = api_details(params, result)
        who = self.caller.access_key or "-"
        return _fields(self.operation, who, self.caller.account, self.request_id, ca, details, now)


def issue_fields(caller: Caller, request_id: str, params: dict, certificate_arn: str, now: float) -> dict:
    """The audit entry of an accepted IssueCertificate, appended in the same step as its record."""
    details = api_details(params, {"CertificateArn": certificate_arn})
    ca = params["CertificateAuthorityArn"]
    return _fields("IssueCertificate", caller.access_key or "-", caller.account, request_id, ca, details, now)


def worker_fields(ca_arn: CaArn, event: str, now: float, details: dict | None = None) -> dict[str, str]:
    """The audit entry of something the worker did to a CA on its own (e.g. generate its key)."""
    return _fields(event, WORKER, ca_arn.account, "-", str(ca_arn), details or {}, now)


def signing_fields(
    ca_arn: CaArn, serial_hex: str, issued: bool, payload: bytes, request_id: str, now: float
) -> dict:
    """The audit entry of one signing outcome (the certificate, or the refusal in ``payload``), for the
    commit to append if, and only if, that outcome is the one written (``Store.commit``)."""
    details = {"CertificateArn": ca_arn.certificate(serial_hex)}
    if not issued:
        details["Reason"] = _short(payload.decode("utf-8", "replace"))
    event = CERTIFICATE_ISSUED if issued else CERTIFICATE_FAILED
    return _fields(event, WORKER, ca_arn.account, request_id or "-", str(ca_arn), details, now)


class AuditTrail:
    """Appends audit entries through the record store (``Store.append_audit``)."""

    def __init__(self, store, clock=time.time, archive: Archive | None = None):
        self.store = store
        self.clock = clock
        self.archive = archive  # where entries that left Redis are read (None: Redis's only)

    def __repr__(self) -> str:
        return "AuditTrail()"

    def api_call(
        self, operation: str, caller: Caller, request_id: str, params: dict, result: dict | None
    ) -> None:
        """Record a successful state-changing API call whose change did not record it itself (none of
        today's operations: a fallback for a new one). A failure to record is logged, not raised: the
        change is already made, and an error answer would make the client repeat it."""
        if not is_audited(operation) or operation in _RECORDED_WITH_THE_CHANGE:
            return
        ca = params.get("CertificateAuthorityArn") or (result or {}).get("CertificateAuthorityArn")
        try:
            ca_id = parse_ca_arn(ca).ca_id
        except (PcaqError, TypeError):
            return
        fields = ApiCall(operation, caller, request_id, params).fields(self.clock(), result)
        try:
            self.store.append_audit([(ca_id, fields)])
        except Exception:  # noqa: BLE001 - see the docstring
            log.error("could not append %s (request %s) to the audit trail of %s", operation, request_id, ca)

    def entries(self, ca_arn: str, count: int | None = None) -> list[AuditEntry]:
        """The CA's entries, oldest first (the last ``count`` when given). InvalidArn for a bad ARN."""
        ca_id = parse_ca_arn(ca_arn).ca_id
        raw = self.store.read_audit(ca_id, count)
        if self.archive is not None and (count is None or len(raw) < count):
            # Older entries left Redis once archived: the archive holds those before Redis's oldest.
            older = self.archive.audit(
                ca_id, raw[0][0] if raw else None, None if count is None else count - len(raw)
            )
            raw = [(e.entry_id, e.fields) for e in older] + raw
        out = []
        for entry_id, fields in raw:
            try:
                details = json.loads(fields.get("details") or "{}")
            except ValueError:
                details = {}
            out.append(
                AuditEntry(
                    entry_id,
                    float(fields.get("when") or 0),
                    fields.get("event", "?"),
                    fields.get("who", "?"),
                    fields.get("account", "?"),
                    fields.get("request_id", "-"),
                    fields.get("ca", ca_arn),
                    details if isinstance(details, dict) else {},
                )
            )
        return out
