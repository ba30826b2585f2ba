"""``POST /``: one ACM PCA API call from the raw request to the awsJson answer.

The order matters: the body is read (bounded) and the signature checked before anything in the
request is looked at; then the operation, the throttle, the JSON, the schema, the handler and the
audit entry. Every failure becomes the AWS error envelope, with a 503 ``ServiceUnavailable`` (which
the SDKs retry) while the record store is unreachable.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping

from pcaq.api import metrics, protocol, schemas, wire
from pcaq.api.auth import Authenticator
from pcaq.api.errors import WireError, classify
from pcaq.api.handlers import Context
from pcaq.api.operations import HANDLERS
from pcaq.ca.audit_trail import AuditTrail
from pcaq.ca.authorities import Authorities
from pcaq.ca.issuance import Issuance
from pcaq.errors import Unavailable
from pcaq.platform import logs
from pcaq.platform.throttle import Throttle
from pcaq.records import STORE_DOWN

log = logging.getLogger("pcaq.api")
_unavailable_log = logs.Every(5.0)  # during a Redis outage: one line per 5 s, not one per request

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


class _RandomPool:
    """``os.urandom`` bytes drawn 4 KiB at a time (a system call per request costs more than a UUID).

    Refilled in a forked child, so no two processes ever hand out the same bytes.
    """

    def __init__(self, size: int = 4096):
        self.size = size
        self.lock = threading.Lock()
        self.pid = -1
        self.buf = b""
        self.at = 0

    def take(self, n: int) -> bytes:
        with self.lock:
            if self.pid != os.getpid() or self.at + n > len(self.buf):
                self.pid, self.buf, self.at = os.getpid(), os.urandom(self.size), 0
            self.at += n
            return self.buf[self.at - n : self.at]


_random = _RandomPool()


def new_request_id() -> str:
    """A random (version 4) UUID, the form AWS uses for ``x-amzn-RequestId``."""
    return str(uuid.UUID(bytes=_random.take(16), version=4))


class ApiCalls:
    """Serves ``POST /`` (every API operation) from the WSGI environ, without a web framework."""

    def __init__(
        self,
        authenticator: Authenticator,
        throttle: Throttle,
        authorities: Authorities,
        issuance: Issuance,
        audit: AuditTrail,
        max_body_bytes: int,
    ):
        self.authenticator = authenticator
        self.throttle = throttle
        self.authorities = authorities
        self.issuance = issuance
        self.audit = audit
        self.max_body_bytes = max_body_bytes

    def reply(self, environ: Mapping) -> protocol.Reply:
        """The answer to the API call in ``environ``."""
        request_id = new_request_id()
        logs.set_request_id(request_id)
        operation = None
        try:
            body = wire.read_body(environ, self.max_body_bytes)
            caller = self.authenticator.caller(environ, body)  # SigV4, before anything else is looked at
            operation = protocol.operation_of(environ.get("HTTP_X_AMZ_TARGET", ""), schemas.OPERATIONS)
            self.throttle.check(caller.access_key, operation)
            document = protocol.body_of(body)
            handler = HANDLERS.get(operation)
            if handler is None:
                raise WireError(501, "NotImplemented", f"{operation} is not implemented by this server yet.")
            params = schemas.validate_request(operation, document)
            result = handler(Context(caller, self.authorities, self.issuance, request_id, operation), params)
            self.audit.api_call(operation, caller, request_id, params, result)
            metrics.count_request(operation, metrics.SUCCESS)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s answered 200", operation, extra={"operation": operation, "status": 200})
            return protocol.success(result, request_id)
        except wire.BodyTooLarge as too_large:
            exc: BaseException = WireError(413, "RequestEntityTooLargeException", str(too_large))
        except STORE_DOWN:
            exc = Unavailable("The service's data store is not reachable right now; retry.")
        except Exception as caught:  # noqa: BLE001 - every failure gets an envelope
            exc = caught
        status, error_type, message = classify(exc)
        operation = operation or _operation_label(environ)
        metrics.count_request(operation, error_type)
        if status >= 500 and status != 503:
            log.exception("request %s failed", request_id, exc_info=exc)
        else:
            _log_refusal(operation, status, error_type, message)
        return protocol.failure(status, error_type, message, request_id)

    def in_front_of(self, other: WsgiApp) -> WsgiApp:
        """A WSGI app that serves ``POST /`` itself and hands every other request to ``other``."""

        def front(environ: dict, start_response: Callable) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == "/" and environ.get("REQUEST_METHOD") == "POST":
                answer = self.reply(environ)
                start_response(answer.status_line, answer.headers)
                return [answer.body]
            return other(environ, start_response)

        return front


def _log_refusal(operation: str, status: int, error_type: str, message: str) -> None:
    """503s at WARNING (at most one line per 5 s); client errors at DEBUG only (they can be many)."""
    extra = {"operation": operation, "status": status, "error_type": error_type}
    if status == 503:
        held = _unavailable_log.due()
        if held is not None:
            log.warning(
                "%s answered 503: %s (%d more since the last such line)",
                operation,
                message,
                held,
                extra=extra,
            )
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("%s answered %d %s", operation, status, error_type, extra=extra)


def _operation_label(environ: Mapping) -> str:
    """The operation named by a request that failed before it was parsed (for the request counter)."""
    name = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")[2]
    return name if name in schemas.OPERATIONS else "unknown"
