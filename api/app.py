"""The Flask application: ``POST /`` speaks the ACM PCA API; ``/healthz`` and ``/readyz`` for operators."""

from __future__ import annotations

import gc
import logging

from flask import Flask, Response

from pcaq.api import metrics, schemas
from pcaq.api.auth import OPEN_MODE_WARNING, Authenticator
from pcaq.api.console import console_blueprint
from pcaq.api.dispatch import ApiCalls
from pcaq.api.distribution import distribution_blueprint
from pcaq.api.token_check import TokenCheck
from pcaq.archive import ArchiveDown, open_archive
from pcaq.ca.audit_trail import AuditTrail
from pcaq.ca.authorities import Authorities
from pcaq.ca.issuance import Issuance
from pcaq.platform import logs
from pcaq.platform.credentials import load_credentials
from pcaq.platform.partitions import partition_of
from pcaq.platform.queue import Queue, make_celery
from pcaq.platform.settings import Settings, load
from pcaq.platform.throttle import Throttle, parse_rate_limits
from pcaq.records import STORE_DOWN, Store

log = logging.getLogger("pcaq.api")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application (granian calls this factory: ``--factory pcaq.api.app:create_app``)."""
    settings = settings or load()
    logs.configure(settings.log_format, settings.log_level)
    store = Store.from_settings(settings)
    queue = Queue(make_celery(settings))
    authorities = Authorities(store, queue, settings)
    archive = open_archive(settings)
    issuance = Issuance(store, queue, authorities, archive)
    authenticator = Authenticator(settings, load_credentials(settings))
    if authenticator.open_mode:
        log.warning(OPEN_MODE_WARNING)
    partition_of(settings.region)  # reads botocore's partition data now, not in the first request
    throttle = Throttle(parse_rate_limits(settings.rate_limits, schemas.OPERATIONS), store.take_token)

    app = Flask("pcaq")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.register_blueprint(distribution_blueprint(settings, store, queue, authenticator.credentials))
    accounts = {settings.account_id, *(c.account for c in authenticator.credentials.values())}
    app.register_blueprint(metrics.blueprint(settings, store, accounts))
    if settings.console:
        app.register_blueprint(
            console_blueprint(settings, store, authorities, authenticator.credentials, throttle, archive)
        )

    # POST / (the API itself) is served ahead of Flask: see api/wire.py for why.
    calls = ApiCalls(
        authenticator, throttle, authorities, issuance, AuditTrail(store), settings.max_body_bytes
    )
    app.wsgi_app = calls.in_front_of(app.wsgi_app)  # type: ignore[method-assign]

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status":"ok"}', 200, {"Content-Type": "application/json"})

    token = TokenCheck(settings)

    @app.get("/readyz")
    def readyz() -> Response:
        try:
            redis_ok = store.ping()
            workers = store.alive_workers() if redis_ok else []
        except STORE_DOWN:
            redis_ok, workers = False, []
        token_ok = token.answers()
        try:
            archive.check()  # a set archive URL that does not answer: not ready (records would pile up)
            archive_ok = True
        except ArchiveDown as exc:
            log.warning("readyz: %s", exc)
            archive_ok = False
        ready = redis_ok and bool(workers) and archive_ok and token_ok is not False
        body = (
            f'{{"redis":{str(redis_ok).lower()},"workers":{len(workers)},"archive":{str(archive_ok).lower()}'
        )
        if token_ok is not None:  # only with a PKCS#11 token configured
            body += f',"token":{str(token_ok).lower()}'
        body += "}"
        return Response(body, 200 if ready else 503, {"Content-Type": "application/json"})

    # Everything built so far lives as long as the process: keep it out of the collector's way
    # (a full collection over it is a pause of milliseconds in some request's latency).
    gc.freeze()
    return app
