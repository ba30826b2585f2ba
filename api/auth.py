"""Who is calling: every API request is authenticated with SigV4 (``api/sigv4.py``) against the
configured credentials; the access key decides the account, the credential scope the region.

With no credentials configured (open development mode, which ``pcaq up`` allows on loopback only)
nothing is verified: the account is the configured one and the region is read from the credential
scope, if any, so that ARNs carry the region the client asked for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge

from api.sigv4 import HttpRequest, SigV4Verifier
from shared.credentials import OPEN_MODE_WARNING, Credentials
from shared.identity import Caller
from shared.settings import Settings

__all__ = ["OPEN_MODE_WARNING", "Authenticator", "caller_of", "http_request", "read_body"]

_SCOPE = re.compile(
    r"Credential=(?P<key>[^/,\s]{1,128})/\d{8}/(?P<region>[a-z0-9-]{1,32})/acm-pca/aws4_request"
)


def caller_of(request: Request, settings: Settings) -> Caller:
    """The assumed caller of ``request`` in open development mode (nothing is verified)."""
    match = _SCOPE.search(request.headers.get("Authorization", "")[:2048])
    region = match.group("region") if match else settings.region
    key = match.group("key") if match else None
    return Caller(account=settings.account_id, region=region, partition=settings.partition, access_key=key)


class Authenticator:
    """Turns a Flask request into an authenticated :class:`Caller`, or raises ``AuthenticationFailed``."""

    def __init__(self, settings: Settings, credentials: Credentials, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.credentials = credentials
        self.verifier = SigV4Verifier(credentials.get, clock=clock)

    def __repr__(self) -> str:
        return f"Authenticator({self.credentials!r})"

    @property
    def open_mode(self) -> bool:
        """True when requests are not authenticated (no credentials configured)."""
        return self.credentials.open_mode

    def caller(self, request: Request) -> Caller:
        """The authenticated caller of ``request`` (reads, and caches, the body for its hash)."""
        if self.open_mode:
            return caller_of(request, self.settings)
        verified = self.verifier.verify(http_request(request))
        return Caller(
            account=verified.credential.account,
            region=verified.region,
            partition=self.settings.partition,
            access_key=verified.credential.access_key,
        )


def http_request(request: Request) -> HttpRequest:
    """The parts of a Flask request SigV4 covers (body read once and cached for the handler)."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if not raw.startswith("/"):  # absolute-form request target (through a proxy)
            parts = urlsplit(raw)
            raw_path, raw_query = parts.path or "/", parts.query
        else:
            raw_path, _, raw_query = raw.partition("?")
    else:
        raw_path, raw_query = request.path, environ.get("QUERY_STRING", "")
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        lower = name.lower()
        headers[lower] = f"{headers[lower]},{value}" if lower in headers else value
    return HttpRequest(request.method, raw_path, raw_query, headers, read_body(request))


def read_body(request: Request) -> bytes:
    """The body, read once and cached for the handler; RequestEntityTooLarge past the size limit.

    Werkzeug stops a body without Content-Length (chunked) at the limit without complaint, which
    would hand a silently truncated body on: one byte more from the server's stream tells.
    """
    body = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(body) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
    return body
