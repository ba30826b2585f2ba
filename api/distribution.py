"""What pcaq publishes over plain HTTP besides the API (these URLs are not SigV4-signed API calls):

- ``GET /crl/<ca-id>.crl``: the CA's current CRL, DER (``application/pkix-crl``); the URL issued
  certificates name in their CRL Distribution Point.
- ``POST /ocsp`` (body: a DER OCSP request) and ``GET /ocsp/<base64 of the DER request>``: the OCSP
  responder (RFC 6960 appendix A) that issued certificates name in their AIA extension.
- ``GET|HEAD /s3/<bucket>/<key>``: audit reports, at the S3 key CreateCertificateAuthorityAuditReport
  returned (the local stand-in for S3; path-style, so an S3 client with ``endpoint_url=<api>/s3`` can
  fetch them too). With credentials configured the request must be SigV4-signed for service ``s3``
  by a key of the CA's account; in open development mode it is not checked.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import unquote
from xml.sax.saxutils import escape

from cryptography.x509.ocsp import OCSPResponseStatus
from flask import Blueprint, Response, request, send_file

from pcaq.api import wire
from pcaq.api.sigv4 import SigV4Verifier
from pcaq.ca.audit_reports import object_path
from pcaq.ca.authority import Authority
from pcaq.errors import AuthenticationFailed, NotFound, Unavailable
from pcaq.platform.credentials import Credentials
from pcaq.platform.queue import Queue
from pcaq.platform.settings import Settings
from pcaq.records import STORE_DOWN, Store
from pcaq.revocation.crl import CrlPublisher
from pcaq.revocation.ocsp import RESPONSE_TYPE, Responder, unsuccessful

_CA_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_OCSP_REQUEST = 16 * 1024  # a one-certificate request is a few hundred bytes
_REPORT_TYPES = {".json": "application/json", ".csv": "text/csv"}


def _text(status: int, message: str, **headers: str) -> Response:
    return Response(message + "\n", status, {"Content-Type": "text/plain; charset=utf-8", **headers})


def _s3_error(status: int, code: str, message: str, resource: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource></Error>"
    )
    return Response(body, status, {"Content-Type": "application/xml"})


def _ocsp_response(der: bytes, max_age: int | None) -> Response:
    headers = {"Content-Type": RESPONSE_TYPE}
    if max_age:  # RFC 5019 §6: let HTTP caches keep a signed answer as long as we do
        headers["Cache-Control"] = f"max-age={max_age}, public, no-transform, must-revalidate"
    return Response(der, 200, headers)


def _raw_tail(prefix: str) -> str:
    """The request path after ``prefix``, as sent (merged slashes and '+' kept), percent-decoded."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or request.path
    path = raw.split("?", 1)[0]
    return unquote(path[path.index(prefix) + len(prefix) :]) if prefix in path else ""


def _decode_get_request(encoded: str) -> bytes:
    """The DER request of an OCSP GET (base64, standard or URL-safe alphabet); b'' if undecodable."""
    text = "".join(encoded.split())
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return b""


def distribution_blueprint(
    settings: Settings, store: Store, queue: Queue, credentials: Credentials
) -> Blueprint:
    """The routes above, bound to the app's store, queue and credentials."""
    bp = Blueprint("distribution", __name__)
    publisher = CrlPublisher(store, queue, settings)
    responder = Responder(store, queue, settings)
    s3_verifier = None if credentials.open_mode else SigV4Verifier(credentials.get, service="s3")

    @bp.get("/crl/<ca_id>.crl")
    def crl(ca_id: str) -> Response:
        if not _CA_ID.fullmatch(ca_id):
            return _text(404, f"No CRL is published at this URL: {ca_id[:64]!r} is not a CA id.")
        try:
            der = publisher.current(ca_id)
        except NotFound as exc:
            return _text(404, exc.message)
        except Unavailable as exc:
            return _text(503, exc.message, **{"Retry-After": "2"})
        except STORE_DOWN:
            return _text(
                503, "The service's data store is not reachable right now; retry.", **{"Retry-After": "5"}
            )
        return Response(der, 200, {"Content-Type": "application/pkix-crl", "Cache-Control": "no-cache"})

    def answer(der: bytes) -> Response:
        try:
            return _ocsp_response(*responder.respond(der))
        except STORE_DOWN:
            return _ocsp_response(unsuccessful(OCSPResponseStatus.TRY_LATER), None)

    @bp.post("/ocsp")
    @bp.post("/ocsp/")
    def ocsp_post() -> Response:
        body = request.get_data(cache=False)  # the Content-Type is not checked: some clients omit it
        return answer(body if len(body) <= _MAX_OCSP_REQUEST else b"")

    @bp.get("/ocsp/<path:encoded>", merge_slashes=False)
    def ocsp_get(encoded: str) -> Response:
        raw = _raw_tail("/ocsp/") or encoded
        return answer(_decode_get_request(raw) if len(raw) <= 2 * _MAX_OCSP_REQUEST else b"")

    @bp.route("/s3/<bucket>/<path:key>", methods=["GET", "HEAD"], merge_slashes=False)
    def s3_object(bucket: str, key: str) -> Response:
        resource = f"/{bucket}/{key}"
        path = object_path(settings.effective_audit_dir, bucket, key)
        if path is None:
            return _s3_error(400, "InvalidArgument", "The bucket or key is not valid.", resource)
        if s3_verifier is not None:
            try:
                account = s3_verifier.verify(
                    wire.http_request(request.environ, request.get_data())
                ).credential.account
            except AuthenticationFailed as exc:
                return _s3_error(403, "AccessDenied", exc.message, resource)
            parts = key.split("/")
            try:
                ca = (
                    Authority.read(store, parts[1])
                    if len(parts) == 3 and parts[0] == "audit-report"
                    else None
                )
            except STORE_DOWN:
                return _s3_error(503, "ServiceUnavailable", "Please reduce your request rate.", resource)
            if ca is None or ca.arn.account != account:  # the ARN names the owner's account
                return _s3_error(403, "AccessDenied", "Access Denied", resource)
        if not path.is_file():
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.", resource)
        mimetype = _REPORT_TYPES.get(path.suffix, "application/octet-stream")
        return send_file(path, mimetype=mimetype, conditional=True, etag=True, max_age=0)

    return bp
