"""Request throttling: a token bucket per (access key, operation), kept in Redis so that every API
process shares it, configured by the operator with ``PCAQ_RATE_LIMITS``.

``PCAQ_RATE_LIMITS=IssueCertificate=25,GetCertificate=75/150`` allows 25 IssueCertificate calls per
second per access key with bursts of 25, and 75 GetCertificate calls per second with bursts of 150.
``*=rate[/burst]`` sets a limit for every operation not named. With nothing configured there is no
throttling and no Redis call at all, so bulk users are not capped by surprise. A throttled call is
answered ``ThrottlingException``, which the AWS SDKs and CLI back off on and retry.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from pcaq.errors import Throttled

ANY_OPERATION = "*"
_ENTRY = re.compile(r"(?P<op>\*|[A-Za-z]{1,64})=(?P<rate>[0-9]*\.?[0-9]+)(?:/(?P<burst>[0-9]{1,9}))?")
_ANONYMOUS = "-"  # open development mode without an Authorization header


@dataclass(frozen=True)
class Rate:
    """A token bucket: ``per_second`` tokens added each second, at most ``burst`` held."""

    per_second: float
    burst: int


def parse_rate_limits(text: str, known: Collection[str] | None = None) -> dict[str, Rate]:
    """Parse ``Operation=rate[/burst]`` entries separated by commas (burst defaults to the rate,
    at least 1). With ``known``, operation names must be among them (or ``*``). Raises ValueError."""
    limits: dict[str, Rate] = {}
    for raw in text.replace("\n", ",").split(","):
        entry = raw.strip().replace(" ", "")
        if not entry:
            continue
        match = _ENTRY.fullmatch(entry)
        if not match:
            raise ValueError(f"PCAQ_RATE_LIMITS: {entry!r} is not Operation=rate or Operation=rate/burst")
        operation, rate = match.group("op"), float(match.group("rate"))
        if rate <= 0:
            raise ValueError(f"PCAQ_RATE_LIMITS: the rate of {operation} must be above 0")
        if known is not None and operation != ANY_OPERATION and operation not in known:
            raise ValueError(f"PCAQ_RATE_LIMITS: {operation} is not an operation of this service")
        if operation in limits:
            raise ValueError(f"PCAQ_RATE_LIMITS: {operation} is given more than once")
        burst = int(match.group("burst")) if match.group("burst") else max(1, math.ceil(rate))
        if burst < 1:
            raise ValueError(f"PCAQ_RATE_LIMITS: the burst of {operation} must be at least 1")
        limits[operation] = Rate(rate, burst)
    return limits


class Throttle:
    """Checks calls against the configured limits. ``take(bucket owner, operation, rate)`` takes one
    token from the shared bucket and says whether there was one (``Store.take_token``)."""

    def __init__(self, limits: Mapping[str, Rate], take: Callable[[str, str, Rate], bool]):
        self.limits = dict(limits)
        self._default = self.limits.get(ANY_OPERATION)
        self._take = take

    def __repr__(self) -> str:
        return f"Throttle({self.limits!r})"

    @property
    def enabled(self) -> bool:
        """False when no limit is configured (then :meth:`check` never touches Redis)."""
        return bool(self.limits)

    def rate_for(self, operation: str) -> Rate | None:
        """The limit that applies to ``operation``, or None."""
        return self.limits.get(operation, self._default)

    def check(self, access_key: str | None, operation: str) -> None:
        """Take a token for this caller and operation; :class:`Throttled` when the bucket is empty."""
        if not self.limits:
            return
        rate = self.rate_for(operation)
        if rate is None:
            return
        if not self._take(access_key or _ANONYMOUS, operation, rate):
            raise Throttled("Rate exceeded")
