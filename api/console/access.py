"""Who uses the console: sign-in with an access key and its secret, sessions, CSRF tokens, sign-out.

A session is a random token in a cookie (HttpOnly, SameSite=Strict, Secure over TLS, with a
Max-Age); Redis keeps its SHA-256 with the access key, the account and the session's CSRF token, and
forgets it when it expires or is signed out. Every form that changes something carries the CSRF
token and is refused without it. In open development mode there is nothing to sign in with: a
session is made on the first visit (it still carries the CSRF token), and every page says so.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass

from flask import Request, Response

from pcaq.errors import Throttled
from pcaq.platform.credentials import Credentials
from pcaq.platform.identity import Caller
from pcaq.platform.settings import Settings
from pcaq.platform.throttle import Rate
from pcaq.records import Store

log = logging.getLogger("pcaq.console")

COOKIE = "pcaq_console"
# Sign-in attempts per access key: 20 at once, then one every 6 s (a guesser of secrets gets 600 an hour)
SIGN_IN_RATE = Rate(per_second=1 / 6, burst=20)
_SIGN_IN = "ConsoleSignIn"  # the throttle's operation name for them (not an API operation)
OPEN_ACCESS_KEY = ""  # the access key of open development mode's sessions: none


@dataclass(frozen=True)
class Visitor:
    """A signed-in console user (or, in open development mode, whoever opened it)."""

    caller: Caller
    csrf: str
    open_mode: bool

    @property
    def name(self) -> str:
        """How the header names the user."""
        return self.caller.access_key or "open development mode"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Access:
    """Sessions of the console over the record store, checked against the API's credentials."""

    def __init__(self, settings: Settings, store: Store, credentials: Credentials):
        self.settings = settings
        self.store = store
        self.credentials = credentials

    @property
    def open_mode(self) -> bool:
        """True when the API runs without credentials (the console is open too)."""
        return self.credentials.open_mode

    def _caller(self, account: str, access_key: str | None) -> Caller:
        return Caller(
            account=account,
            region=self.settings.region,
            partition=self.settings.partition or "",
            access_key=access_key,
        )

    def visitor(self, request: Request) -> Visitor | None:
        """The session's user, or None (no cookie, an ended session, or a key no longer configured)."""
        return self.visitor_of_token(request.cookies.get(COOKIE, ""))

    def visitor_of_token(self, token: str) -> Visitor | None:
        """The user of the session whose cookie value is ``token``, or None."""
        if not token or len(token) > 128:
            return None
        fields = self.store.console_session(_digest(token))
        if fields is None:
            return None
        access_key = fields.get("key", OPEN_ACCESS_KEY)
        if self.open_mode != (access_key == OPEN_ACCESS_KEY):
            return None  # made under the other mode: the configuration changed since
        if access_key and access_key not in self.credentials:
            return None  # the key was removed from the configuration
        account = self.settings.account_id if self.open_mode else self.credentials[access_key].account
        return Visitor(self._caller(account, access_key or None), fields["csrf"], self.open_mode)

    def sign_in(self, access_key: str, secret: str) -> str | None:
        """A new session's cookie value when the secret is the access key's (checked in constant
        time, as the API checks signatures), else None."""
        if not self.store.take_token(access_key[:128], _SIGN_IN, SIGN_IN_RATE):
            log.warning("console sign-in for access key %s throttled", access_key[:128])
            raise Throttled("Too many sign-in attempts for this access key; wait a minute and try again.")
        credential = self.credentials.check_secret(access_key[:128], secret[:1024])
        if credential is None:
            log.info("console sign-in refused for access key %s", access_key[:128])
            return None
        log.info("console sign-in by access key %s", credential.access_key)
        return self._new_session(credential.access_key)

    def open_session(self) -> str:
        """A session for open development mode (nothing to check)."""
        return self._new_session(OPEN_ACCESS_KEY)

    def _new_session(self, access_key: str) -> str:
        token = secrets.token_urlsafe(32)
        self.store.create_console_session(
            _digest(token),
            {"key": access_key, "csrf": secrets.token_urlsafe(32), "since": f"{time.time():.0f}"},
            self.settings.console_session_seconds,
        )
        return token

    def sign_out(self, request: Request) -> None:
        """End the request's session at once."""
        token = request.cookies.get(COOKIE, "")
        if token and len(token) <= 128:
            self.store.end_console_session(_digest(token))

    def set_cookie(self, response: Response, token: str, secure: bool) -> None:
        """Hand the browser its session cookie."""
        response.set_cookie(
            COOKIE,
            token,
            max_age=self.settings.console_session_seconds,
            path="/console/",
            secure=secure,
            httponly=True,
            samesite="Strict",
        )

    @staticmethod
    def clear_cookie(response: Response, secure: bool) -> None:
        """Make the browser forget its session cookie."""
        response.delete_cookie(COOKIE, path="/console/", secure=secure, httponly=True, samesite="Strict")


def csrf_ok(visitor: Visitor, form_token: str | None) -> bool:
    """True when a form carries the session's CSRF token (compared in constant time)."""
    return bool(form_token) and hmac.compare_digest(visitor.csrf.encode(), (form_token or "").encode())
