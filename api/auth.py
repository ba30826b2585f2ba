"""Who is calling. For now the account is the configured one; the region is read from the SigV4
credential scope so that ARNs carry the region the client asked for. (Signature verification is
a later step: see the security issue.)"""

from __future__ import annotations

import re

from flask import Request

from shared.identity import Caller
from shared.settings import Settings

_SCOPE = re.compile(
    r"Credential=(?P<key>[^/,\s]{1,128})/\d{8}/(?P<region>[a-z0-9-]{1,32})/acm-pca/aws4_request"
)


def caller_of(request: Request, settings: Settings) -> Caller:
    """The caller of ``request``."""
    match = _SCOPE.search(request.headers.get("Authorization", "")[:2048])
    region = match.group("region") if match else settings.region
    key = match.group("key") if match else None
    return Caller(account=settings.account_id, region=region, partition=settings.partition, access_key=key)
