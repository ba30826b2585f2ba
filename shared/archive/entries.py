"""The one codec of an archived record: the JSON line the file archive stores and the row PostgreSQL
holds are both built from :class:`ArchivedRecord` here."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ArchivedRecord:
    """One finished certificate request, as the archive keeps it for good."""

    ca_id: str
    serial_hex: str
    issued: bool  # False: the request failed and ``failure`` says why
    certificate_der: bytes | None
    failure: str | None
    created_at: float
    finished_at: float
    not_after: float | None  # the certificate's Not After (None for a failed request)
    revoked_at: float | None
    reason: str | None

    @property
    def key(self) -> tuple[str, str]:
        """What makes two writes of a record one record."""
        return self.ca_id, self.serial_hex


def to_line(record: ArchivedRecord) -> str:
    """The record as one JSON line (no newline)."""
    doc = {
        "ca": record.ca_id,
        "serial": record.serial_hex,
        "s": "I" if record.issued else "F",
        "der": base64.b64encode(record.certificate_der).decode() if record.certificate_der else None,
        "e": record.failure,
        "t": record.created_at,
        "d": record.finished_at,
        "na": record.not_after,
        "rv": record.revoked_at,
        "rr": record.reason,
    }
    return json.dumps(doc, separators=(",", ":"))


def from_line(line: str | bytes) -> ArchivedRecord:
    """Inverse of :func:`to_line` (ValueError on a line that is not one)."""
    try:
        doc = json.loads(line)
        return ArchivedRecord(
            ca_id=str(doc["ca"]),
            serial_hex=str(doc["serial"]),
            issued=doc["s"] == "I",
            certificate_der=base64.b64decode(doc["der"]) if doc["der"] else None,
            failure=doc["e"],
            created_at=float(doc["t"]),
            finished_at=float(doc["d"]),
            not_after=None if doc["na"] is None else float(doc["na"]),
            revoked_at=None if doc["rv"] is None else float(doc["rv"]),
            reason=doc["rr"],
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an archived record: {exc}") from exc


def newer(old: ArchivedRecord, new: ArchivedRecord) -> ArchivedRecord:
    """Which of two writes of one record stands: the first, unless the second adds a revocation (the
    only change a finished record may see)."""
    if old.revoked_at is None and new.revoked_at is not None:
        return new
    return old


@dataclass(frozen=True)
class AuditRecord:
    """One entry of a CA's audit trail, as the archive keeps it (``entry_id``: its Redis stream id,
    ``<milliseconds>-<sequence>``, which orders a CA's entries)."""

    ca_id: str
    entry_id: str
    fields: dict[str, str]

    @property
    def order(self) -> tuple[int, int]:
        """The entry's place in its CA's trail."""
        return stream_order(self.entry_id)


def stream_order(entry_id: str) -> tuple[int, int]:
    """``(milliseconds, sequence)`` of a stream id (ValueError if it is not one)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def audit_to_line(record: AuditRecord) -> str:
    """The audit entry as one JSON line (no newline)."""
    return json.dumps({"ca": record.ca_id, "id": record.entry_id, "f": record.fields}, separators=(",", ":"))


def audit_from_line(line: str | bytes) -> AuditRecord:
    """Inverse of :func:`audit_to_line` (ValueError on a line that is not one)."""
    try:
        doc = json.loads(line)
        fields = {str(k): str(v) for k, v in doc["f"].items()}
        return AuditRecord(str(doc["ca"]), str(doc["id"]), fields)
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an archived audit entry: {exc}") from exc
