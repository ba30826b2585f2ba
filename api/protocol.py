"""awsJson 1.1 framing: which operation, the JSON body in, the JSON body or error envelope out."""

from __future__ import annotations

import json
import math

from flask import Request, Response

from api.errors import WireError

TARGET_PREFIX = "ACMPrivateCA."
CONTENT_TYPE = "application/x-amz-json-1.1"


def operation_of(request: Request, known: frozenset[str]) -> str:
    """The operation named by ``X-Amz-Target``; UnknownOperationException otherwise."""
    target = request.headers.get("X-Amz-Target", "")
    prefix, _, operation = target.partition(".")
    if f"{prefix}." != TARGET_PREFIX or operation not in known:
        shown = target[:100] or "(none)"
        raise WireError(400, "UnknownOperationException", f"Unknown operation {shown!r}.")
    return operation


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not JSON")


def body_of(request: Request) -> object:
    """The decoded JSON body ({} when empty); SerializationException when it is not JSON."""
    raw = request.get_data(cache=False)
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


def success(payload: dict | None, request_id: str) -> Response:
    """A 200 answer with the operation's output (``{}`` for operations without output)."""
    body = json.dumps(payload or {}, separators=(",", ":"), default=_default)
    return Response(body, 200, {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id})


def failure(status: int, error_type: str, message: str, request_id: str) -> Response:
    """The error envelope that boto3, the AWS CLI and header-first SDKs all understand."""
    body = json.dumps({"__type": error_type, "message": message}, separators=(",", ":"))
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": request_id, "x-amzn-ErrorType": error_type}
    return Response(body, status, headers)
