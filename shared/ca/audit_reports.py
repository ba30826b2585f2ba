"""Audit reports (CreateCertificateAuthorityAuditReport, DescribeCertificateAuthorityAuditReport).

A report lists every certificate the CA issued, with its revocation if any, in AWS's JSON or CSV
form (fields as the AWS Private CA user guide shows them: awsAccountId, requestedByServicePrincipal,
certificateArn, serial, subject, notBefore, notAfter, issuedAt, revokedAt, revocationReason,
templateArn). A worker writes it to ``<PCAQ_AUDIT_DIR>/<bucket>/audit-report/<CA id>/<report id>.json``
(or ``.csv``): that folder stands in for S3, and the API serves it at ``GET /s3/<bucket>/<key>``.
A CA may make one report per ``PCAQ_AUDIT_REPORT_INTERVAL`` seconds (AWS: one per 30 minutes).
A report covers the CA's whole history: the certificates Redis holds, then those only the archive
holds (retention removed them from Redis).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from pcaq.archive import Archive
from pcaq.ca.arns import CaArn, parse_ca_arn
from pcaq.ca.audit_trail import ApiCall, AuditTrail
from pcaq.ca.authorities import Authorities
from pcaq.ca.authority import ACTIVE, DISABLED, EXPIRED, Authority
from pcaq.errors import InProgress, InvalidArgument, InvalidState, NotFound
from pcaq.pki import profiles
from pcaq.platform import wakeups
from pcaq.platform.identity import Caller
from pcaq.platform.queue import AUDIT_REPORT_TASK
from pcaq.records import Store
from pcaq.records.reports import IssuedRecord

FIELDS = (
    "awsAccountId",
    "requestedByServicePrincipal",
    "certificateArn",
    "serial",
    "subject",
    "notBefore",
    "notAfter",
    "issuedAt",
    "revokedAt",
    "revocationReason",
    "templateArn",
)
FORMATS = {"JSON": "json", "CSV": "csv"}
CREATING, SUCCESS, FAILED = "CREATING", "SUCCESS", "FAILED"
# A folder name that is also a valid S3 bucket name (no path tricks: no '/', no '..').
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")


def report_key(ca_id: str, report_id: str, response_format: str) -> str:
    """The S3 key of a report: ``audit-report/<CA id>/<report id>.json|csv``."""
    return f"audit-report/{ca_id}/{report_id}.{FORMATS[response_format]}"


def check_bucket(bucket: str) -> None:
    """InvalidArgument unless ``bucket`` is a plain S3 bucket name."""
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidArgument(
            f"S3BucketName {bucket[:64]!r} is not a valid bucket name: use 3 to 63 letters, digits, "
            "'.', '-' or '_', starting and ending with a letter or digit."
        )


def object_path(root: Path, bucket: str, key: str) -> Path | None:
    """Where the object ``bucket``/``key`` lives under ``root``, or None if the names would leave it."""
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        return None
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        return None
    return root.joinpath(bucket, *parts)


def _stamp(moment: datetime | float) -> str:
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def colon_serial(serial: int) -> str:
    """A serial as audit reports print it: lower-case hex bytes joined by colons."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def report_row(ca_arn: CaArn, record: IssuedRecord, template_arn: str | None) -> dict:
    """One certificate's line of a report (members without a value are left out)."""
    cert = x509.load_der_x509_certificate(record.certificate_der)
    row = {
        "awsAccountId": ca_arn.account,
        "certificateArn": ca_arn.certificate(record.serial_hex),
        "serial": colon_serial(cert.serial_number),
        "subject": cert.subject.rfc4514_string(),
        "notBefore": _stamp(cert.not_valid_before_utc),
        "notAfter": _stamp(cert.not_valid_after_utc),
        "issuedAt": _stamp(record.issued_at),
    }
    if record.revoked_at is not None:
        row["revokedAt"] = _stamp(record.revoked_at)
        row["revocationReason"] = record.reason or "UNSPECIFIED"
    if template_arn:
        row["templateArn"] = template_arn
    return row


def issued_templates(
    store: Store, ca_arn: str, partition: str, archive: Archive | None = None
) -> dict[str, str]:
    """Certificate ARN -> template ARN, from the IssueCertificate entries of the CA's audit trail (its
    older entries from the archive)."""
    default = f"arn:{partition}:acm-pca:::template/{profiles.DEFAULT_TEMPLATE}/V1"
    found = {}
    for entry in AuditTrail(store, archive=archive).entries(ca_arn):
        arn = entry.details.get("CertificateArn")
        if entry.event == "IssueCertificate" and arn:
            found[arn] = entry.details.get("TemplateArn") or default
    return found


def whole_history(store: Store, archive: Archive | None, ca_id: str) -> Iterator[IssuedRecord]:
    """Every certificate the CA issued, each once: Redis's records first (they are the newest word on
    a revocation), then the archive's that Redis no longer holds."""
    seen: set[str] = set()
    for issued in store.issued_certificates(ca_id):
        seen.add(issued.serial_hex)
        yield issued
    if archive is None:
        return
    for old in archive.issued(ca_id):
        if old.serial_hex not in seen and old.certificate_der is not None:
            yield IssuedRecord(
                old.serial_hex, old.certificate_der, old.finished_at, old.revoked_at, old.reason
            )


def write_report(
    store: Store, root: Path, ca_id: str, report_id: str, archive: Archive | None = None
) -> Path:
    """Write the report file (atomically: a temporary file renamed into place); returns its path."""
    record = store.get_audit_report(ca_id, report_id)
    ca = Authority.read(store, ca_id)
    if record is None or ca is None:
        raise FileNotFoundError(f"audit report {report_id} of {ca_id} or its CA is gone")
    ca_arn = ca.arn
    templates = issued_templates(store, str(ca_arn), ca_arn.partition, archive)
    rows = (
        report_row(ca_arn, issued, templates.get(ca_arn.certificate(issued.serial_hex)))
        for issued in whole_history(store, archive, ca_id)
    )
    path = object_path(root, record.bucket, record.key)
    if path is None:
        raise ValueError(f"report key {record.key!r} does not name a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            for chunk in _csv_chunks(rows) if record.response_format == "CSV" else _json_chunks(rows):
                out.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_chunks(rows: Iterator[dict]) -> Iterator[str]:
    yield "["
    for i, row in enumerate(rows):
        yield ("," if i else "") + "\n  " + json.dumps(row, separators=(",", ":"))
    yield "\n]\n"


def _csv_chunks(rows: Iterator[dict]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


@dataclass
class AuditReports:
    """The two audit report operations, as the API calls them."""

    authorities: Authorities

    def create(
        self, caller: Caller, ca_arn: str, bucket: str, response_format: str, call: ApiCall | None = None
    ) -> tuple[str, str]:
        """Accept a report request: ``(AuditReportId, S3Key)``; a worker writes the file. The call's
        audit entry is recorded in the same step as the request."""
        parsed = parse_ca_arn(ca_arn)
        ca = self.authorities.load(caller, parsed)
        store = self.authorities.store
        status = ca.effective_status(store.clock())
        if status not in (ACTIVE, DISABLED, EXPIRED):
            raise InvalidState(f"The certificate authority is {status}; it has no certificates to report on.")
        if response_format not in FORMATS:
            raise InvalidArgument("AuditReportResponseFormat must be JSON or CSV.")
        check_bucket(bucket)
        ca_id = parsed.ca_id
        report_id = str(uuid.uuid4())
        key = report_key(ca_id, report_id, response_format)
        interval = self.authorities.settings.audit_report_interval
        now = store.clock()
        audit = call.fields(now, {"AuditReportId": report_id, "S3Key": key}) if call is not None else None
        if not store.start_audit_report(ca_id, report_id, bucket, key, response_format, now, interval, audit):
            raise InProgress(
                f"An audit report of this certificate authority was made in the last {interval // 60} "
                "minutes; one report per CA is allowed in that time."
            )
        # The report is pending: if its message is not sent, the sweeper queues it again.
        wakeups.wake(AUDIT_REPORT_TASK, self.authorities.queue.audit_report, ca_id, report_id)
        return report_id, key

    def describe(self, caller: Caller, ca_arn: str, report_id: str) -> dict:
        """The DescribeCertificateAuthorityAuditReport output."""
        parsed = parse_ca_arn(ca_arn)
        self.authorities.load(caller, parsed)
        record = self.authorities.store.get_audit_report(parsed.ca_id, report_id)
        if record is None:
            raise NotFound(f"Could not find audit report {report_id} of {ca_arn}.")
        return {
            "AuditReportStatus": record.status,
            "S3BucketName": record.bucket,
            "S3Key": record.key,
            "CreatedAt": record.created_at,
        }
