"""The Flask application: ``POST /`` speaks the ACM PCA API; ``/healthz`` and ``/readyz`` for operators."""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from api import protocol, schemas
from api.auth import OPEN_MODE_WARNING, Authenticator, read_body
from api.distribution import distribution_blueprint
from api.errors import WireError, classify
from api.handlers import Context
from api.operations import HANDLERS
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


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application (gunicorn target: ``api.app:create_app()``)."""
    settings = settings or load()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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

    @app.post("/")
    def dispatch() -> Response:
        request_id = str(uuid.uuid4())
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
            return protocol.success(result, request_id)
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
        if status >= 500 and status != 503:
            log.exception("request %s failed", request_id, exc_info=exc)
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
