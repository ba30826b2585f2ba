"""API credentials: which access keys may call, with which secret, in which account.

Read from ``PCAQ_CREDENTIALS`` and/or the file named by ``PCAQ_CREDENTIALS_FILE``: entries
``ACCESS_KEY:SECRET[:ACCOUNT_ID]`` separated by commas or newlines (``#`` starts a comment in the
file). An entry without an account belongs to the configured default account (``PCAQ_ACCOUNT_ID``).
No credentials at all means open development mode (``pcaq up`` allows it on loopback only).

Secrets never appear in a repr, a log line or an error message: messages name the access key or
the entry's position only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pcaq.platform.settings import Settings

# The access key lands in the SigV4 credential scope (slash-separated) and in Redis key names.
_ACCESS_KEY = re.compile(r"[A-Za-z0-9_+=.@-]{1,128}")
_ACCOUNT = re.compile(r"[0-9]{12}")
_FORMAT = "ACCESS_KEY:SECRET[:ACCOUNT_ID]"
# Compared against when an unknown access key signs in, so that the answer takes as long as for a
# known one; random per process, so no secret typed in can ever match it.
_UNKNOWN_KEY_SECRET = secrets.token_hex(32)


OPEN_MODE_WARNING = (
    "WARNING: OPEN DEVELOPMENT MODE: no credentials are configured (PCAQ_CREDENTIALS or "
    "PCAQ_CREDENTIALS_FILE), so API requests are NOT authenticated and anyone who can reach the "
    "API can issue certificates. Configure credentials before exposing it beyond this machine."
)


class CredentialsError(ValueError):
    """The credentials configuration cannot be used; the message says what to fix (never a secret)."""


@dataclass(frozen=True)
class Credential:
    """One access key: its secret (hidden from repr) and the 12-digit account it acts in."""

    access_key: str
    secret: str = field(repr=False)
    account: str

    def __str__(self) -> str:
        return f"{self.access_key} (account {self.account})"


class Credentials(Mapping[str, Credential]):
    """The configured credentials by access key. Empty means open development mode."""

    def __init__(self, entries: Mapping[str, Credential] | None = None):
        self._by_key: dict[str, Credential] = dict(entries or {})

    def __getitem__(self, access_key: str) -> Credential:
        return self._by_key[access_key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_key)

    def __len__(self) -> int:
        return len(self._by_key)

    def __repr__(self) -> str:
        accounts = sorted({c.account for c in self._by_key.values()})
        return f"Credentials({len(self)} access keys, accounts {accounts})"

    @property
    def open_mode(self) -> bool:
        """True when no credentials are configured: requests are not authenticated."""
        return not self._by_key

    def check_secret(self, access_key: str, secret: str) -> Credential | None:
        """The credential if ``secret`` is this access key's, else None (the console's sign-in).

        The comparison takes the same time whether the key is unknown or the secret wrong, and does
        not depend on where the two secrets differ."""
        credential = self._by_key.get(access_key)
        expected = credential.secret if credential is not None else _UNKNOWN_KEY_SECRET
        matches = hmac.compare_digest(
            hashlib.sha256(expected.encode()).digest(), hashlib.sha256(secret.encode()).digest()
        )
        return credential if matches and credential is not None else None


def parse_credentials(text: str, default_account: str, source: str = "PCAQ_CREDENTIALS") -> Credentials:
    """Parse ``ACCESS_KEY:SECRET[:ACCOUNT_ID]`` entries separated by commas or newlines.

    Blank entries and ``#`` comments (to the end of a line) are ignored. Raises
    :class:`CredentialsError` for a malformed entry, a bad account id or a repeated access key.
    """
    found: dict[str, Credential] = {}
    position = 0
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        for raw in line.split(","):
            entry = raw.strip()
            if not entry:
                continue
            position += 1
            credential = _parse_entry(entry, default_account, f"{source}, entry {position}")
            if credential.access_key in found:
                raise CredentialsError(
                    f"{source}: the access key {credential.access_key} is listed more than once"
                )
            found[credential.access_key] = credential
    return Credentials(found)


def _parse_entry(entry: str, default_account: str, where: str) -> Credential:
    parts = entry.split(":")
    if len(parts) not in (2, 3):
        raise CredentialsError(
            f"{where}: expected {_FORMAT} (secrets may not contain ':' or ','), got {len(parts)} fields"
        )
    access_key, secret = parts[0].strip(), parts[1].strip()
    account = parts[2].strip() if len(parts) == 3 else default_account
    if not _ACCESS_KEY.fullmatch(access_key):
        raise CredentialsError(
            f"{where}: the access key must be 1 to 128 of A-Z a-z 0-9 _ + = . @ - (no '/' or spaces)"
        )
    if not secret:
        raise CredentialsError(f"{where}: the access key {access_key} has an empty secret")
    if not _ACCOUNT.fullmatch(account):
        raise CredentialsError(
            f"{where}: the account of access key {access_key} must be 12 digits, got {account!r}"
        )
    return Credential(access_key, secret, account)


def load_credentials(settings: Settings) -> Credentials:
    """The credentials from the settings: ``PCAQ_CREDENTIALS`` plus ``PCAQ_CREDENTIALS_FILE``.

    A named file that cannot be read is an error (a missing secret mount must not silently turn
    authentication off). An access key given in both places is an error too.
    """
    merged: dict[str, Credential] = {}
    sources: list[tuple[str, str]] = []
    if settings.credentials:
        sources.append((settings.credentials, "PCAQ_CREDENTIALS"))
    if settings.credentials_file is not None:
        path = Path(settings.credentials_file)
        try:
            sources.append((path.read_text(encoding="utf-8"), f"PCAQ_CREDENTIALS_FILE {path}"))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
            raise CredentialsError(f"cannot read PCAQ_CREDENTIALS_FILE {path}: {reason}") from None
    for text, source in sources:
        for key, credential in parse_credentials(text, settings.account_id, source).items():
            if key in merged:
                raise CredentialsError(f"{source}: the access key {key} is configured more than once")
            merged[key] = credential
    if (settings.credentials or settings.credentials_file) and not merged:
        raise CredentialsError(
            "credentials are configured but hold no entry; give at least one "
            f"{_FORMAT}, or unset PCAQ_CREDENTIALS and PCAQ_CREDENTIALS_FILE for open development mode"
        )
    return Credentials(merged)


def is_loopback(host: str) -> bool:
    """True when ``host`` (an address or a name) only ever means this machine."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, credentials: Credentials) -> None:
    """Refuse (CredentialsError) to serve a non-loopback address in open development mode."""
    if credentials.open_mode and not is_loopback(host):
        raise CredentialsError(
            f"refusing to listen on {host} without credentials: anyone who can reach it could issue "
            "certificates. Set PCAQ_CREDENTIALS (ACCESS_KEY:SECRET[:ACCOUNT_ID],...) or "
            "PCAQ_CREDENTIALS_FILE, or listen on a loopback address (127.0.0.1) for open development mode"
        )
