"""Verification of AWS Signature Version 4 (``AWS4-HMAC-SHA256`` in the Authorization header).

Written from AWS's specification of SigV4: the server rebuilds the canonical request (method,
canonical URI, canonical query string, the headers named in SignedHeaders, the SHA-256 of the body),
the string to sign (algorithm, request time, credential scope, hash of the canonical request) and the
signing key (HMAC chain over date, region, service and ``aws4_request``), then compares signatures in
constant time. The scope must name this service and the day of the request time; the request time may
be at most 5 minutes away from the server's clock, as at AWS.

The derived signing key depends only on (secret, day, region), so it is cached: a verification costs
two SHA-256 over the body and the canonical request plus one HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from pcaq.errors import IncompleteSignature, InvalidSignature, MissingAuthentication, UnrecognizedClient
from pcaq.platform.credentials import Credential

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=5)
_AMZ_DATE = re.compile(r"(\d{8})T\d{6}Z")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]{1,128}")
_MAX_AUTHORIZATION = 4096
_MAX_SIGNED_HEADERS = 64
_KEY_CACHE_SIZE = 4096
_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
_BAD_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class HttpRequest:
    """What SigV4 covers of one HTTP request. ``headers`` maps lower-case names to values."""

    method: str
    raw_path: str  # as sent, still percent-encoded, without the query
    raw_query: str  # as sent, without the '?'
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Verified:
    """An authenticated request: whose key signed it and for which region."""

    credential: Credential
    region: str


@dataclass(frozen=True)
class _Authorization:
    access_key: str
    day: str
    region: str
    service: str
    terminal: str
    signed_headers: tuple[str, ...]
    signature: str


class SigV4Verifier:
    """Verifies SigV4 for one service. ``lookup`` maps an access key to its credential (or None)."""

    def __init__(
        self,
        lookup: Callable[[str], Credential | None],
        service: str = "acm-pca",
        clock: Callable[[], float] = time.time,
    ):
        self.lookup = lookup
        self.service = service
        self.clock = clock
        self._keys: dict[tuple[str, str, str, str], bytes] = {}

    def __repr__(self) -> str:
        return f"SigV4Verifier(service={self.service!r})"

    def verify(self, request: HttpRequest) -> Verified:
        """The caller of ``request`` if its signature is valid; else an ``AuthenticationFailed``."""
        header = request.headers.get("authorization")
        if not header:
            raise MissingAuthentication("Missing Authentication Token")
        auth = _parse_authorization(header)
        if request.headers.get("x-amz-security-token") is not None:
            raise UnrecognizedClient(_BAD_TOKEN)  # session credentials are not supported
        credential = self.lookup(auth.access_key)
        if credential is None:
            raise UnrecognizedClient(_BAD_TOKEN)
        amz_date, when = _request_time(request.headers, auth.signed_headers)
        self._check_scope(auth, amz_date)
        self._check_clock(amz_date, when)
        if "host" not in auth.signed_headers:
            raise IncompleteSignature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
        if "x-amz-target" in request.headers and "x-amz-target" not in auth.signed_headers:
            # The target selects the operation: unsigned, a captured request could be replayed as another.
            raise IncompleteSignature("'X-Amz-Target' must be a 'SignedHeader' in the AWS Authorization.")
        canonical = canonical_request(request, auth.signed_headers)
        scope = f"{auth.day}/{auth.region}/{auth.service}/{auth.terminal}"
        to_sign = "\n".join(
            (ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest())
        )
        key = self._signing_key(credential, auth.day, auth.region)
        expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), auth.signature.encode("ascii")):
            raise InvalidSignature(_BAD_SIGNATURE)
        return Verified(credential, auth.region)

    def _check_scope(self, auth: _Authorization, amz_date: str) -> None:
        if auth.service != self.service:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{self.service}'.")
        if auth.terminal != "aws4_request":
            raise InvalidSignature("Credential should be scoped with a valid terminator: 'aws4_request'.")
        if not re.fullmatch(r"[a-z0-9-]{1,32}", auth.region):
            raise InvalidSignature("Credential should be scoped to a valid region.")
        if auth.day != amz_date[:8]:
            raise InvalidSignature(
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                f"HTTP: '{auth.day}' != '{amz_date[:8]}', from '{amz_date}'."
            )

    def _check_clock(self, amz_date: str, when: datetime) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        if when < now - MAX_SKEW:
            raise InvalidSignature(
                f"Signature expired: {amz_date} is now earlier than {_stamp(now - MAX_SKEW)} "
                f"({_stamp(now)} - 5 min.)"
            )
        if when > now + MAX_SKEW:
            raise InvalidSignature(
                f"Signature not yet current: {amz_date} is still later than {_stamp(now + MAX_SKEW)} "
                f"({_stamp(now)} + 5 min.)"
            )

    def _signing_key(self, credential: Credential, day: str, region: str) -> bytes:
        cache_key = (credential.access_key, credential.secret, day, region)
        key = self._keys.get(cache_key)
        if key is None:
            key = signing_key(credential.secret, day, region, self.service)
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()  # days roll over; a full reset is simpler than LRU bookkeeping
            self._keys[cache_key] = key
        return key


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    """The SigV4 signing key: HMAC chain over day, region, service and ``aws4_request``."""
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_request(request: HttpRequest, signed_headers: tuple[str, ...]) -> str:
    """The SigV4 canonical request of ``request`` over ``signed_headers`` (lower-case names)."""
    headers = "".join(f"{name}:{_trimall(request.headers.get(name, ''))}\n" for name in signed_headers)
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.raw_path),
            canonical_query(request.raw_query),
            headers,
            ";".join(signed_headers),
            _payload_hash(request),
        )
    )


def canonical_uri(raw_path: str) -> str:
    """The path without dot segments and empty segments, then percent-encoded (again, as AWS does
    for every service but S3); a trailing slash stays when something is left before it."""
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    path = "/" + "/".join(segments)
    if segments and raw_path.endswith("/"):
        path += "/"
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    """Parameters sorted by encoded name then value, each URI-encoded once."""
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        name, _, value = item.partition("=")
        pairs.append((quote(unquote(name), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _payload_hash(request: HttpRequest) -> str:
    actual = hashlib.sha256(request.body).hexdigest()
    claimed = request.headers.get("x-amz-content-sha256")
    if claimed is not None and not hmac.compare_digest(claimed.strip().lower().encode(), actual.encode()):
        raise InvalidSignature(
            "The provided 'x-amz-content-sha256' header does not match what was computed; "
            "the payload must be signed."
        )
    return actual


def _trimall(value: str) -> str:
    return " ".join(value.split())


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


def _parse_authorization(header: str) -> _Authorization:
    if len(header) > _MAX_AUTHORIZATION:
        raise IncompleteSignature("The Authorization header is too long.")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise IncompleteSignature(
            f"Unsupported Authorization Type: only {ALGORITHM} (Signature Version 4) is accepted."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep and name in ("Credential", "SignedHeaders", "Signature"):
            fields[name] = value.strip()
    missing = [n for n in ("Credential", "SignedHeaders", "Signature") if not fields.get(n)]
    if missing:
        raise IncompleteSignature(
            f"Authorization header requires '{missing[0]}' parameter. Authorization={_shown(header)}"
        )
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or not all(scope):
        raise IncompleteSignature(
            "Credential must have exactly 5 slash-delimited elements, e.g. "
            "keyid/date/region/service/term, got '" + _shown(fields["Credential"]) + "'"
        )
    access_key, day, region, service, terminal = scope
    if not re.fullmatch(r"\d{8}", day):
        raise IncompleteSignature(f"Credential date '{_shown(day)}' is not YYYYMMDD.")
    signed = tuple(fields["SignedHeaders"].split(";"))
    if len(signed) > _MAX_SIGNED_HEADERS or not all(_HEADER_NAME.fullmatch(h) for h in signed):
        raise IncompleteSignature("SignedHeaders must be lower-case header names separated by ';'.")
    signature = fields["Signature"]
    if not _SIGNATURE.fullmatch(signature):
        raise InvalidSignature(_BAD_SIGNATURE)
    return _Authorization(access_key, day, region, service, terminal, signed, signature)


def _request_time(headers: Mapping[str, str], signed: tuple[str, ...]) -> tuple[str, datetime]:
    """The request time as ``YYYYMMDDTHHMMSSZ`` and as a datetime, from X-Amz-Date or else Date."""
    raw = headers.get("x-amz-date")
    if raw is not None:
        if "x-amz-date" not in signed:
            raise IncompleteSignature("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization.")
        raw = raw.strip()
        if not _AMZ_DATE.fullmatch(raw):
            raise IncompleteSignature(f"X-Amz-Date '{_shown(raw)}' is not of the form YYYYMMDD'T'HHMMSS'Z'.")
        try:
            return raw, datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise IncompleteSignature(f"X-Amz-Date '{_shown(raw)}' is not a valid date.") from None
    raw = headers.get("date")
    if raw is None:
        raise IncompleteSignature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if "date" not in signed:
        raise IncompleteSignature("'Date' must be a 'SignedHeader' in the AWS Authorization.")
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        raise IncompleteSignature(f"Date '{_shown(raw)}' is not an HTTP date.") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return _stamp(when), when


def _shown(text: str) -> str:
    """Caller-supplied text echoed in a message: short and printable."""
    text = text[:80]
    return "".join(c if c.isprintable() else "?" for c in text)
