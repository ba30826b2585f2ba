"""Console sessions: who signed in, with which CSRF token, until when.

The browser holds a random token; Redis holds only its SHA-256 (``keys.console_session``), so neither
a copy of Redis nor a log line of a key name lets anyone sign in. A session ends when its key expires
or when it is signed out (deleted), whichever comes first.
"""

from __future__ import annotations

import redis

from pcaq.records import keys


class ConsoleSessionRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def create_console_session(self, digest: str, fields: dict[str, str], seconds: int) -> None:
        """Store a new session for ``seconds``."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(keys.console_session(digest), mapping=fields)
        pipe.expire(keys.console_session(digest), seconds)
        pipe.execute()

    def console_session(self, digest: str) -> dict[str, str] | None:
        """The session's fields, or None when it has ended or never was."""
        raw = self.r.hgetall(keys.console_session(digest))
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    def end_console_session(self, digest: str) -> None:
        """Sign out: the session is gone at once."""
        self.r.delete(keys.console_session(digest))
