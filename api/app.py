"""The Flask application: ``POST /`` speaks the ACM PCA API; ``/healthz`` and ``/readyz`` for operators."""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from api import metrics, protocol, schemas
from api.auth import OPEN_MODE_WARNING, Authenticator, read_body
from api.distribution import distribution_blueprint
from api.errors import WireError, classify
from api.handlers import Context
from api.operations import HANDLERS
from shared import logs
from shared.audit_trail import AuditTrail
from shared.authorities import Authorities
from shared.credentials import load_credentials
from shared.errors import Unavailable
from shared.issuance import Issuance
from shared.queue import Queue, make_celery
from shared.records import STORE_DOWN, Store
from shared.settings import Settings, load
from shared.throttle import Throttle, parse_rate_limits

log = logging.getLogger("pcaq.api")
_unavailable_log = logs.Every(5.0)  # during a Redis outage: one line per 5 s, not one per request


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application (gunicorn target: ``api.app:create_app()``)."""
    settings = settings or load()
    logs.configure(settings.log_format, settings.log_level)
    store = Store.from_settings(settings)
    queue = Queue(make_celery(settings))
    authorities = Authorities(store, queue, settings)
    issuance = Issuance(store, queue, authorities)
    authenticator = Authenticator(settings, load_credentials(settings))
    if authenticator.open_mode:
        log.warning(OPEN_MODE_WARNING)
    throttle = Throttle(parse_rate_limits(settings.rate_limits, schemas.OPERATIONS), store.take_token)
    audit = AuditTrail(store)

    app = Flask("pcaq")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.register_blueprint(distribution_blueprint(settings, store, queue, authenticator.credentials))
    accounts = {settings.account_id, *(c.account for c in authenticator.credentials.values())}
    app.register_blueprint(metrics.blueprint(settings, store, accounts))

    @app.post("/")
    def dispatch() -> Response:
        request_id = str(uuid.uuid4())
        logs.set_request_id(request_id)
        operation = None
        try:
            read_body(request)  # bounded even when chunked; cached for the signature and the handler
            caller = authenticator.caller(request)  # SigV4, before anything else is looked at
            operation = protocol.operation_of(request, schemas.OPERATIONS)
            throttle.check(caller.access_key, operation)
            body = protocol.body_of(request)
            handler = HANDLERS.get(operation)
            if handler is None:
                raise WireError(501, "NotImplemented", f"{operation} is not implemented by this server yet.")
            params = schemas.validate_request(operation, body)
            result = handler(Context(caller, authorities, issuance, request_id), params)
            audit.api_call(operation, caller, request_id, params, result)
            response = protocol.success(result, request_id)
            metrics.count_request(operation, metrics.SUCCESS)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s answered 200", operation, extra={"operation": operation, "status": 200})
            return response
        except RequestEntityTooLarge:
            exc: BaseException = WireError(
                413,
                "RequestEntityTooLargeException",
                f"The request body is larger than {settings.max_body_bytes} bytes.",
            )
        except STORE_DOWN:
            exc = Unavailable("The service's data store is not reachable right now; retry.")
        except Exception as caught:  # noqa: BLE001 - every failure gets an envelope
            exc = caught
        status, error_type, message = classify(exc)
        operation = operation or _operation_label(request)
        metrics.count_request(operation, error_type)
        if status >= 500 and status != 503:
            log.exception("request %s failed", request_id, exc_info=exc)
        else:
            _log_refusal(operation, status, error_type, message)
        return protocol.failure(status, error_type, message, request_id)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', 200, {"Content-Type": "application/json"})

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            redis_ok = store.ping()
            workers = store.alive_workers() if redis_ok else []
        except STORE_DOWN:
            redis_ok, workers = False, []
        ready = redis_ok and bool(workers)
        body = f'{{"redis":{str(redis_ok).lower()},"workers":{len(workers)}}}'
        return Response(body, 200 if ready else 503, {"Content-Type": "application/json"})

    return app


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


def _operation_label(req) -> str:
    """The operation named by a request that failed before it was parsed (for the request counter)."""
    name = req.headers.get("X-Amz-Target", "").partition(".")[2]
    return name if name in schemas.OPERATIONS else "unknown"
