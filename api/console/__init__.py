"""The operator's console: server-rendered pages under ``/console/`` on the API's port.

It is another front end over the same domain services as the API handlers (``pcaq.ca``,
``pcaq.revocation``): it reads through them as the signed-in access key, and its one change,
revoking a certificate, is RevokeCertificate as the API runs it, audited the same way. It costs the
API nothing while nobody opens it: every figure it shows is read when a page is asked for.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from pcaq.api.console.access import Access, Visitor, csrf_ok
from pcaq.archive import Archive
from pcaq.ca.authorities import Authorities
from pcaq.errors import InProgress, NotFound, PcaqError, Throttled
from pcaq.platform.credentials import Credentials, is_loopback
from pcaq.platform.settings import Settings
from pcaq.platform.throttle import Throttle
from pcaq.records import STORE_DOWN, Store

log = logging.getLogger("pcaq.console")

# No script, no framing, nothing fetched from elsewhere: the pages are HTML, one stylesheet and
# inline SVG.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_OPEN_PAGES = frozenset({"console.sign_in", "console.static"})


@dataclass(frozen=True)
class Services:
    """What the console's pages use."""

    settings: Settings
    store: Store
    authorities: Authorities
    access: Access
    throttle: Throttle  # PCAQ_RATE_LIMITS apply to the calls the console makes, as to the API's
    archive: Archive | None = None  # where certificates that left Redis are read (docs/retention.md)


def console_blueprint(
    settings: Settings,
    store: Store,
    authorities: Authorities,
    credentials: Credentials,
    throttle: Throttle,
    archive: Archive | None = None,
) -> Blueprint:
    """The blueprint serving ``/console/``."""
    from pcaq.api.console import display, pages_cas, pages_certificates, pages_issuance, sign_in

    bp = Blueprint(
        "console",
        __name__,
        url_prefix="/console",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    services = Services(settings, store, authorities, Access(settings, store, credentials), throttle, archive)

    @bp.before_request
    def who() -> Response | None:
        g.visitor, g.new_session = None, None
        if services.access.open_mode and not is_loopback(request.remote_addr or ""):
            # pcaq up listens on loopback only in this mode; behind anything else, stay closed
            return _refusal(403, "Open development mode serves this console to this machine only.")
        if request.method == "POST" and request.headers.get("Sec-Fetch-Site") == "cross-site":
            # browsers say where a form came from: another site's form is refused before anything,
            # the sign-in form included (no signing a visitor into someone else's session)
            return _refusal(403, "This form did not come from this console.")
        if request.endpoint in _OPEN_PAGES:
            return None
        g.visitor = services.access.visitor(request)
        if g.visitor is None and services.access.open_mode:
            g.new_session = services.access.open_session()
            g.visitor = services.access.visitor_of_token(g.new_session)
        if g.visitor is None:
            if request.method == "GET":
                return redirect(url_for("console.sign_in", next=request.full_path[:512]))
            return _refusal(401, "Your session has ended: sign in again.")
        if request.method == "POST" and not csrf_ok(g.visitor, request.form.get("csrf")):
            log.warning("console form without a valid CSRF token refused (%s)", request.path[:200])
            return _refusal(
                403, "This form is out of date or did not come from this console; reload the page."
            )
        return None

    @bp.after_request
    def headers(response: Response) -> Response:
        if g.get("new_session"):
            services.access.set_cookie(response, g.new_session, request.is_secure)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @bp.app_template_global()
    def visitor() -> Visitor | None:
        return g.get("visitor")

    @bp.app_template_global()
    def open_mode() -> bool:
        return services.access.open_mode

    @bp.errorhandler(PcaqError)
    def domain_error(exc: PcaqError) -> tuple[str, int]:
        status = _STATUS_OF.get(type(exc), 400)
        return render_template("error.html", message=exc.message, status=status), status

    @bp.app_errorhandler(404)
    @bp.app_errorhandler(405)
    def no_route(exc: HTTPException) -> Response | tuple[str, int]:
        # A path under /console/ that no page matches never reaches the blueprint's own handlers
        if not request.path.startswith("/console/"):
            return exc.get_response()
        code = exc.code or 404
        return render_template("error.html", message=_HTTP_MESSAGES[code], status=code), code

    @bp.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[str, int]:
        if isinstance(exc, STORE_DOWN):
            return render_template(
                "error.html", message="The data store is not reachable right now; try again.", status=503
            ), 503
        if getattr(exc, "code", None) in (400, 404, 405, 413):  # werkzeug's own answers
            code = exc.code  # type: ignore[attr-defined]
            return render_template("error.html", message=_HTTP_MESSAGES[code], status=code), code
        log.exception("console page %s failed", request.path[:200])
        return render_template("error.html", message="Something went wrong on our side.", status=500), 500

    display.install(bp)
    sign_in.register(bp, services)
    pages_cas.register(bp, services)
    pages_certificates.register(bp, services)
    pages_issuance.register(bp, services)
    return bp


_STATUS_OF: dict[type, int] = {NotFound: 404, InProgress: 409, Throttled: 429}
_HTTP_MESSAGES = {
    400: "The request was not understood.",
    404: "There is no such page.",
    405: "This page does not take that kind of request.",
    413: "The request is too large.",
}


def _refusal(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", message=message, status=status), status
