"""kombu's Redis transport with one fix, so that Celery workers live through a restart of Redis.

With kombu 5.7 and Celery 5.7, once a broken broker connection has been torn down, anything still
holding one of its channels (closing it gives unacknowledged messages back; a task that was running
during the outage acknowledges its message when it ends) asks the torn-down transport for its
connection parameters and fails with ``AttributeError``. Celery treats that as unrecoverable and the
worker exits instead of reconnecting. Here such a channel raises a connection error instead, which
kombu and Celery already handle: the worker logs it and reconnects; the message concerned stays in
kombu's ``unacked`` hash and is delivered again after the visibility timeout (for pcaq a repeated
message is harmless: tasks are idempotent, and signing work waits in the outbox anyway).

``tests/faults/test_redis_restart.py`` checks that the same worker process carries on after Redis
is killed and started again. Used for every Redis broker (see :func:`pcaq.platform.queue.make_celery`);
:func:`broker_url` also lets Celery reach a Redis on a Unix socket (``REDIS_URL=unix:///path``), which
``pcaq up`` prefers for its embedded Redis: a command over a Unix socket costs about half the CPU of
one over loopback TCP on both ends.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

from pcaq.platform.sentinel_connection import SentinelConnection

TRANSPORT = "pcaq.platform.redis_transport:Transport"
SENTINEL_TRANSPORT = "pcaq.platform.redis_transport:SentinelTransport"
SOCKET_SCHEME = "pcaqredis"  # kombu alias of this transport, for "<alias>+socket://" broker URLs
TRANSPORT_ALIASES.setdefault(SOCKET_SCHEME, TRANSPORT)


def broker_url(redis_url: str) -> str:
    """The Celery broker URL for pcaq's ``REDIS_URL``.

    ``unix://[[user]:password@]/path/redis.sock?db=N`` (redis-py's form, which the record store uses;
    the credentials may also come as ``?username=&password=``) becomes kombu's
    ``pcaqredis+socket://[[user]:password@]/path/redis.sock?virtual_host=N``, the credentials in the
    user part, the only place kombu reads them from for a socket. Other URLs are used as they are.
    """
    parts = urlsplit(redis_url)
    if parts.scheme != "unix":
        return redis_url
    query = parse_qs(parts.query)
    db = query.get("db", ["0"])[0]
    username = parts.username or query.get("username", [""])[0]
    password = parts.password or query.get("password", [""])[0]
    if parts.password is None and password:  # from the query, decoded: encode it for the user part
        password = quote(password, safe="")
    if parts.username is None and username:
        username = quote(username, safe="")
    credentials = f"{username}:{password}@" if password else (f"{username}@" if username else "")
    return f"{SOCKET_SCHEME}+socket://{credentials}{parts.path}?virtual_host={db}"


class _ReportsTornDown:
    """Makes a channel report a torn-down connection as a connection error (mixed into both)."""

    connection: Any

    def _connparams(self, asynchronous: bool = False) -> dict:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the connection to the broker was closed; reconnecting")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]


class Channel(_ReportsTornDown, kombu_redis.Channel):
    """A Redis channel that reports a torn-down connection as a connection error."""


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelChannel(_ReportsTornDown, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with the same fix as :class:`Channel`: a channel of a torn-down
    connection raises a connection error, and the worker reconnects, through the Sentinels, to
    whichever server is the primary by then. Its connections find the primary on every path that
    connects (see pcaq.platform.sentinel_connection)."""

    connection_class = SentinelConnection


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel` (``sentinel://`` broker URLs)."""

    Channel = SentinelChannel
