"""The certificates of a CA: a list searchable by serial, common name and SAN and filtered by status,
one certificate's page with its PEM, and revocation after a confirmation that names the certificate.

Lists read the CA's indexes (shared/records/certificate_index.py) a page at a time from a cursor,
never the whole set, so a CA with a million certificates answers as fast as one with ten.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import TYPE_CHECKING

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from pcaq.api.console.decoding import brief, decode
from pcaq.api.console.pages_cas import ca_page, download, visible_ca
from pcaq.api.dispatch import new_request_id
from pcaq.archive import kept
from pcaq.ca.audit_trail import ApiCall
from pcaq.errors import InvalidRequest, NotFound
from pcaq.records.certificate_index import CertificateRow
from pcaq.revocation.revoke import REASONS, Revocations, normalise_serial

if TYPE_CHECKING:
    from pcaq.api.console import Services

PAGE_SIZE = 50
FILTERS = ("issued", "pending", "failed", "revoked", "expiring")
MAX_DAYS = 3650
_SERIAL = re.compile(r"(0x)?[0-9a-fA-F:]{1,64}")


def _days(raw: str | None) -> int:
    if not raw:
        return 30
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise InvalidRequest(f"Days must be a whole number from 1 to {MAX_DAYS}.")
    return int(raw)


def _index_cursor(raw: str | None) -> tuple[str, float] | None:
    if not raw:
        return None
    score, _, serial = raw.rpartition(":")
    try:
        if not serial or not re.fullmatch(r"[0-9a-f]{1,64}", serial):
            raise ValueError
        return serial, float(score)
    except ValueError:
        raise InvalidRequest("That page link is not valid; start from the first page.") from None


def _names_cursor(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return base64.urlsafe_b64decode(raw.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("That page link is not valid; start from the first page.") from None


def _row(record, matched: str = "") -> dict:
    cn, not_after = brief(record.certificate_der)
    status = "REVOKED" if record.revoked_at else record.status
    return {
        "serial": record.serial,
        "status": status,
        "cn": cn,
        "not_after": not_after,
        "matched": matched,
        "failure": record.failure,
    }


def _wanted(row: dict, status: str, days: int) -> bool:
    """Whether a search hit passes the status filter too."""
    if status == "expiring":
        return row["not_after"] is not None and row["not_after"] <= time.time() + days * 86400
    return not status or row["status"].lower() == status


def row_of(services: Services, ca_id: str, serial: str) -> CertificateRow | None:
    """One certificate request by serial: from Redis, else from the archive once retention removed it
    (as GetCertificate answers)."""
    found = services.store.certificate_rows(ca_id, [serial])[0]
    if found is not None or services.archive is None:
        return found
    found = kept(services.archive, ca_id, serial)
    if found is None:
        return None
    return CertificateRow(
        serial,
        "ISSUED" if found.issued else "FAILED",
        found.certificate_der,
        found.failure,
        found.created_at,
        found.finished_at,
        found.revoked_at,
        found.reason,
    )


def find(services: Services, ca_id: str, query: str, status: str, days: int, after: str | None):
    """One page of rows and the cursor of the next page (None at the end)."""
    store = services.store
    query = query.strip()
    if query:
        if _SERIAL.fullmatch(query) and not after:
            serial = normalise_serial(query)
            found = row_of(services, ca_id, serial)
            if found is not None:
                row = _row(found, "serial")
                return ([row] if _wanted(row, status, days) else []), None
        pairs = store.names_page(ca_id, query, PAGE_SIZE, _names_cursor(after))
        records = store.certificate_rows(ca_id, dict.fromkeys(serial for _, serial in pairs))
        by_serial = {r.serial: r for r in records if r is not None}
        rows, seen = [], set()
        for name, serial in pairs:
            if serial in by_serial and serial not in seen:
                seen.add(serial)
                row = _row(by_serial[serial], name)
                if _wanted(row, status, days):
                    rows.append(row)
        nxt = None
        if len(pairs) == PAGE_SIZE:
            name, serial = pairs[-1]
            nxt = base64.urlsafe_b64encode(f"{name}\0{serial}".encode()).decode()
        return rows, nxt
    kind = status or "issued"
    if kind == "expiring":
        now = time.time()
        page = store.index_page(
            ca_id, "expiry", PAGE_SIZE, _index_cursor(after), now, now + days * 86400, newest_first=False
        )
    else:
        page = store.index_page(ca_id, kind, PAGE_SIZE, _index_cursor(after))
    records = store.certificate_rows(ca_id, [serial for serial, _ in page])
    rows = [_row(r) for r in records if r is not None]
    nxt = f"{page[-1][1]!r}:{page[-1][0]}" if len(page) == PAGE_SIZE else None
    return rows, nxt


def register(bp: Blueprint, services: Services) -> None:
    """Add the certificate pages to the console's blueprint."""

    def certificate_of(ca_id: str, serial_text: str):
        ca = visible_ca(services, g.visitor.caller, ca_id)
        serial = normalise_serial(serial_text[:80])
        record = row_of(services, ca_id, serial)
        if record is None:
            raise NotFound(f"This CA has no certificate with serial {serial_text[:80]}.")
        return ca, serial, record

    @bp.get("/cas/<ca_id>/certificates")
    def certificates(ca_id: str) -> str:
        ca = visible_ca(services, g.visitor.caller, ca_id)
        query = request.args.get("q", "")[:256]
        status = request.args.get("status", "")
        if status and status not in FILTERS:
            raise InvalidRequest(f"Status must be one of {', '.join(FILTERS)}.")
        days = _days(request.args.get("days"))
        rows, nxt = find(services, ca_id, query, status, days, request.args.get("after"))
        return ca_page(
            "certificates.html",
            ca,
            ca_id,
            rows=rows,
            next_cursor=nxt,
            paged=bool(request.args.get("after")),
            query=query,
            status=status,
            days=days,
            filters=FILTERS,
        )

    @bp.get("/cas/<ca_id>/certificates/<serial>")
    def certificate(ca_id: str, serial: str) -> str:
        ca, serial, record = certificate_of(ca_id, serial)
        decoded = decode(record.certificate_der) if record.certificate_der else None
        return ca_page(
            "certificate.html",
            ca,
            ca_id,
            record=record,
            serial=serial,
            decoded=decoded,
            revoked_now=request.args.get("revoked") == "1",
        )

    @bp.get("/cas/<ca_id>/certificates/<serial>.pem")
    def certificate_pem(ca_id: str, serial: str) -> Response:
        _, serial, record = certificate_of(ca_id, serial)
        if not record.certificate_der:
            raise NotFound("This request has no certificate (it is pending or failed).")
        return download(decode(record.certificate_der).pem, f"{serial}.pem")

    @bp.route("/cas/<ca_id>/certificates/<serial>/revoke", methods=["GET", "POST"])
    def revoke(ca_id: str, serial: str) -> Response | str:
        ca, serial, record = certificate_of(ca_id, serial)
        arn = ca["Arn"]
        if request.method == "GET":
            decoded = decode(record.certificate_der) if record.certificate_der else None
            return render_template(
                "revoke.html", id=ca_id, serial=serial, decoded=decoded, reasons=list(REASONS), record=record
            )
        reason = request.form.get("reason", "")
        if reason not in REASONS:
            raise InvalidRequest(f"Choose a revocation reason: one of {', '.join(REASONS)}.")
        caller = g.visitor.caller
        services.throttle.check(caller.access_key, "RevokeCertificate")
        params = {"CertificateAuthorityArn": arn, "CertificateSerial": serial, "RevocationReason": reason}
        # RevokeCertificate as the API runs it, audited as that call (who: the signed-in access key)
        call = ApiCall("RevokeCertificate", caller, new_request_id(), params)
        Revocations(services.authorities).revoke(caller, arn, serial, reason, call)
        return redirect(url_for("console.certificate", ca_id=ca_id, serial=serial, revoked="1"), 303)
