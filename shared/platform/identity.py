"""Who is calling: the account and region a request acts in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """The authenticated (or, in open development mode, assumed) caller of one request."""

    account: str
    region: str
    partition: str = "aws"
    access_key: str | None = None
