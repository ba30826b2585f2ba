"""The raw HTTP request of an API call, read straight from the WSGI environ.

``POST /`` is the hot path (every IssueCertificate and GetCertificate goes through it), so it does not
build a Flask/Werkzeug request: reading the body and two headers from the environ costs a few
microseconds, a request context about a hundred on the machines we measure on. The other routes
(health, metrics, CRL, OCSP, S3) stay on Flask.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from pcaq.api.sigv4 import HttpRequest

# WSGI keeps these two without the HTTP_ prefix.
_UNPREFIXED = {"CONTENT_TYPE": "content-type", "CONTENT_LENGTH": "content-length"}


class BodyTooLarge(Exception):
    """The request body is over the configured limit (HTTP 413)."""


def read_body(environ: Mapping, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes; BodyTooLarge past it.

    With a Content-Length the server's stream ends at the body, so exactly that many bytes are read.
    Without one (chunked), only a stream the server marks as terminated is read, and one byte past
    the limit tells a body that is too large from one that just fits.
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            size = int(length)
        except ValueError:
            return b""
        if size > limit:
            raise BodyTooLarge(f"The request body is larger than {limit} bytes.")
        return stream.read(size) if size > 0 else b""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if not (chunked or environ.get("wsgi.input_terminated")):
        return b""
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise BodyTooLarge(f"The request body is larger than {limit} bytes.")
    return body


def headers_of(environ: Mapping) -> dict[str, str]:
    """All request headers, names in lower case (servers already join repeated headers with ',')."""
    out: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out[key[5:].replace("_", "-").lower()] = value
        elif key in _UNPREFIXED and value:
            out[_UNPREFIXED[key]] = value
    return out


def http_request(environ: Mapping, body: bytes) -> HttpRequest:
    """What SigV4 covers of the request: method, path and query as sent, headers and body."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if not raw.startswith("/"):  # absolute-form request target (through a proxy)
            parts = urlsplit(raw)
            raw_path, raw_query = parts.path or "/", parts.query
        else:
            raw_path, _, raw_query = raw.partition("?")
    else:
        # PEP 3333 hands the path over as latin-1; clients sign it as UTF-8.
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "/")
        raw_path = path.encode("latin-1", "replace").decode("utf-8", "replace")
        raw_query = environ.get("QUERY_STRING", "")
    return HttpRequest(environ.get("REQUEST_METHOD", "GET"), raw_path, raw_query, headers_of(environ), body)
