"""awsJson 1.1 framing: which operation, the JSON body in, the JSON body or error envelope out."""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import NamedTuple

from pcaq.api.errors import WireError

TARGET_PREFIX = "ACMPrivateCA."
CONTENT_TYPE = "application/x-amz-json-1.1"

_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


class Reply(NamedTuple):
    """One answer on the wire: status code, headers and the encoded body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        """The WSGI status line (``"200 OK"``)."""
        return _STATUS_LINES.get(self.status, f"{self.status} Error")


def operation_of(target: str, known: frozenset[str]) -> str:
    """The operation named by an ``X-Amz-Target`` value; UnknownOperationException otherwise."""
    prefix, _, operation = target.partition(".")
    if f"{prefix}." != TARGET_PREFIX or operation not in known:
        shown = target[:100] or "(none)"
        raise WireError(400, "UnknownOperationException", f"Unknown operation {shown!r}.")
    return operation


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not JSON")


def body_of(raw: bytes) -> object:
    """The decoded JSON body ({} when empty); SerializationException when it is not JSON."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise WireError(400, "SerializationException", "The request body is not valid JSON.") from exc


def _default(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _headers(body: bytes, request_id: str) -> list[tuple[str, str]]:
    return [
        ("Content-Type", CONTENT_TYPE),
        ("Content-Length", str(len(body))),
        ("x-amzn-RequestId", request_id),
    ]


def success(payload: dict | None, request_id: str) -> Reply:
    """A 200 answer with the operation's output (``{}`` for operations without output)."""
    body = json.dumps(payload or {}, separators=(",", ":"), default=_default).encode()
    return Reply(200, _headers(body, request_id), body)


def failure(status: int, error_type: str, message: str, request_id: str) -> Reply:
    """The error envelope that boto3, the AWS CLI and header-first SDKs all understand."""
    body = json.dumps({"__type": error_type, "message": message}, separators=(",", ":")).encode()
    headers = _headers(body, request_id)
    headers.append(("x-amzn-ErrorType", error_type))
    return Reply(status, headers, body)
