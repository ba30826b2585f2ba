"""The one place that turns settings into a way to reach Redis: a redis-py client and Celery's broker.

Two shapes are supported. With ``REDIS_URL`` (or its default) every process talks to that one server.
With ``PCAQ_REDIS_SENTINELS`` every process asks the Sentinels which server is the primary of
``PCAQ_REDIS_MASTER`` and asks again whenever a connection to it fails or it answers as a replica
(redis-py's ``SentinelManagedConnection`` does both), so a failover needs no restart of anything:
the record store, the held connections of the API (``pcaq.records.held``), the pub/sub of urgent
jobs and the Celery broker all follow the new primary by themselves.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import redis
from redis import _parsers
from redis.sentinel import Sentinel

from pcaq.platform import redis_transport
from pcaq.platform.sentinel_connection import SentinelConnection
from pcaq.platform.settings import Settings


class NoGoodReplicas(redis.ConnectionError):
    """The primary refused a write with NOREPLICAS: it has fewer good replicas than its
    ``min-replicas-to-write`` (it may be a primary cut off by a partition). The write was not made,
    so it is safe to make again; for a write this primary is as good as down, so it is handled as a
    connection error: retried (through the Sentinels, which may name another primary by then), a
    retryable 503 at the API, a reconnection for the Celery broker, never a task that dies."""


# redis-py maps the first word of an error reply to an exception class; without this entry NOREPLICAS
# would be a plain ResponseError, which pcaq treats as a bug.
_parsers.BaseParser.EXCEPTION_CLASSES.setdefault("NOREPLICAS", NoGoodReplicas)

# Timeouts shared by every client: a dead server is noticed within seconds, not at TCP's pace.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 10.0
# Sentinels answer from memory; one that does not answer in this long is skipped for the next.
SENTINEL_TIMEOUT = 0.5


def uses_sentinel(settings: Settings) -> bool:
    """Whether the primary is found through Sentinel (``PCAQ_REDIS_SENTINELS`` is set)."""
    return bool(settings.redis_sentinels)


def describe(settings: Settings) -> str:
    """Where pcaq's Redis is, for log lines and error messages (never shows a password)."""
    if uses_sentinel(settings):
        sentinels = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"primary {settings.redis_master!r} of the Sentinels {sentinels}"
    return redact(settings.effective_redis_url)


def client(settings: Settings, socket_timeout: float = SOCKET_TIMEOUT) -> redis.Redis:
    """A redis-py client on the current primary (``socket_timeout``: seconds a reply may take)."""
    common: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": socket_timeout,
        "health_check_interval": 30,
    }
    if not uses_sentinel(settings):
        if settings.redis_password:
            common["password"] = settings.redis_password  # a password in the URL wins over this one
        return redis.Redis.from_url(settings.effective_redis_url, **common)
    return sentinel_manager(settings).master_for(
        settings.redis_master, password=settings.redis_password, connection_class=SentinelConnection, **common
    )


def sentinel_manager(settings: Settings) -> Sentinel:
    """redis-py's view of the Sentinels (tests and ``pcaq up`` use it to ask who the primary is)."""
    sentinel_kwargs: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
    }
    if settings.redis_sentinel_password:
        sentinel_kwargs["password"] = settings.redis_sentinel_password
    return Sentinel(list(settings.redis_sentinels), sentinel_kwargs=sentinel_kwargs)


def broker(settings: Settings) -> tuple[str, dict[str, Any], str | None]:
    """Celery's broker: its URL, transport options and transport class (None: the URL's own)."""
    if not uses_sentinel(settings):
        url = settings.effective_redis_url
        # redis:// gets the transport that lives through a Redis restart; unix:// becomes its socket
        # alias (see redis_transport), rediss:// stays kombu's own.
        transport = redis_transport.TRANSPORT if url.startswith("redis://") else None
        return redis_transport.broker_url(url), {}, transport
    # kombu reads the primary's password from the first URL and the Sentinels' from sentinel_kwargs.
    auth = f":{quote(settings.redis_password, safe='')}@" if settings.redis_password else ""
    urls = [
        f"sentinel://{auth if i == 0 else ''}{_hostport(h, p)}"
        for i, (h, p) in enumerate(settings.redis_sentinels)
    ]
    options: dict[str, Any] = {"master_name": settings.redis_master}
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": SENTINEL_TIMEOUT}
    if settings.redis_sentinel_password:
        sentinel_kwargs["password"] = settings.redis_sentinel_password
    options["sentinel_kwargs"] = sentinel_kwargs
    return ";".join(urls), options, redis_transport.SENTINEL_TRANSPORT


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redact(url: str) -> str:
    """``url`` with any password (in its user part or a ``password=`` query) replaced by ``***``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    in_query = any(name == "password" for name, _ in query)
    if parts.password is None and not in_query:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    shown = urlencode([(name, "***" if name == "password" else value) for name, value in query], safe="*/")
    # Not urlunsplit: it drops the "//" of a URL with no host (unix:///path), which redis-py needs.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{shown}" if shown else "")
