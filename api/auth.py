"""Who is calling: every API request is authenticated with SigV4 (``api/sigv4.py``) against the
configured credentials; the access key decides the account, the credential scope the region (and
with it the partition ARNs carry, unless ``PCAQ_PARTITION`` names one).

With no credentials configured (open development mode, which ``pcaq up`` allows on loopback only)
nothing is verified: the account is the configured one and the region is read from the credential
scope, if any, so that ARNs carry the region the client asked for.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from pcaq.api import wire
from pcaq.api.sigv4 import SigV4Verifier
from pcaq.platform.credentials import OPEN_MODE_WARNING, Credentials
from pcaq.platform.identity import Caller
from pcaq.platform.settings import Settings

__all__ = ["OPEN_MODE_WARNING", "Authenticator", "caller_of"]

_SCOPE = re.compile(
    r"Credential=(?P<key>[^/,\s]{1,128})/\d{8}/(?P<region>[a-z0-9-]{1,32})/acm-pca/aws4_request"
)


def caller_of(environ: Mapping, settings: Settings) -> Caller:
    """The assumed caller of a request in open development mode (nothing is verified)."""
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", "")[:2048])
    region = match.group("region") if match else settings.region
    key = match.group("key") if match else None
    return Caller(
        account=settings.account_id, region=region, partition=settings.partition or "", access_key=key
    )


class Authenticator:
    """Turns a request into an authenticated :class:`Caller`, or raises ``AuthenticationFailed``."""

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

    def caller(self, environ: Mapping, body: bytes) -> Caller:
        """The authenticated caller of the request in ``environ`` whose body is ``body``."""
        if self.open_mode:
            return caller_of(environ, self.settings)
        verified = self.verifier.verify(wire.http_request(environ, body))
        return Caller(
            account=verified.credential.account,
            region=verified.region,
            partition=self.settings.partition or "",
            access_key=verified.credential.access_key,
        )
