"""The sign-in and sign-out pages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, Response, redirect, render_template, request, url_for

from pcaq.api.console.access import Access

if TYPE_CHECKING:
    from pcaq.api.console import Services


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page only (never another site)."""
    if target and target.startswith("/console/") and "//" not in target and "\\" not in target:
        return target
    return url_for("console.authorities")


def register(bp: Blueprint, services: Services) -> None:
    """Add the sign-in and sign-out routes to the console's blueprint."""
    access = services.access

    @bp.route("/sign-in", methods=["GET", "POST"])
    def sign_in() -> Response | tuple[str, int] | str:
        if access.open_mode:
            return redirect(url_for("console.authorities"))
        target = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return render_template("sign_in.html", next=target, error=None)
        token = access.sign_in(request.form.get("access_key", ""), request.form.get("secret", ""))
        if token is None:
            message = "That access key and secret do not match a configured credential."
            return render_template("sign_in.html", next=target, error=message), 401
        response = redirect(target, 303)
        access.set_cookie(response, token, request.is_secure)
        return response

    @bp.post("/sign-out")
    def sign_out() -> Response:
        access.sign_out(request)
        response = redirect(
            url_for("console.sign_in") if not access.open_mode else url_for("console.authorities"), 303
        )
        Access.clear_cookie(response, request.is_secure)
        return response
