"""The record store: every Redis key name and every multi-key transaction of pcaq lives in this package.

Nothing else in the code base builds a key string (``keys.py`` names them all). CAs are JSON
documents changed with optimistic transactions (WATCH/MULTI); certificate requests are hashes whose
life (submit, claim, commit) runs in Lua scripts so that each step is atomic (invariants
1, 2 and 5 in docs/architecture.md). :class:`Store` gathers the per-concern mixins.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from pcaq.platform.settings import Settings
from pcaq.records import scripts
from pcaq.records.audit_trail import AuditRecords
from pcaq.records.authorities import AuthorityRecords
from pcaq.records.certificate_index import CertificateIndexRecords
from pcaq.records.console_sessions import ConsoleSessionRecords
from pcaq.records.fleet import FleetRecords
from pcaq.records.held import HeldConnection
from pcaq.records.key_blocklist import BlocklistRecords
from pcaq.records.metrics import MetricsRecords
from pcaq.records.permissions import PermissionRecords
from pcaq.records.reports import ReportRecords
from pcaq.records.requests import (
    CertificateRecord,
    Claimed,
    RequestRecords,
    Result,
    Submission,
    member_of,
    split_member,
)
from pcaq.records.retention import RetentionRecords
from pcaq.records.revocations import RevocationRecords
from pcaq.records.series import SeriesRecords
from pcaq.records.throttle import ThrottleRecords

__all__ = [
    "STORE_DOWN",
    "CertificateRecord",
    "Claimed",
    "Result",
    "Store",
    "Submission",
    "member_of",
    "split_member",
]

# Exceptions that mean "Redis is not reachable right now" (a retryable 503, never a 500).
STORE_DOWN: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


class Store(
    AuthorityRecords,
    RequestRecords,
    FleetRecords,
    ThrottleRecords,
    AuditRecords,
    BlocklistRecords,
    RevocationRecords,
    ReportRecords,
    PermissionRecords,
    MetricsRecords,
    CertificateIndexRecords,
    SeriesRecords,
    ConsoleSessionRecords,
    RetentionRecords,
):
    """All of pcaq's state in Redis. ``clock`` is injectable so tests can move time without sleeping."""

    def __init__(self, client: redis.Redis, settings: Settings, clock: Callable[[], float] = time.time):
        self.r = client
        self.settings = settings
        self.clock = clock
        self._submit = client.register_script(scripts.SUBMIT)
        self._claim_ready = client.register_script(scripts.CLAIM_READY)
        self._commit = client.register_script(scripts.COMMIT)
        self._helper_started = client.register_script(scripts.HELPER_STARTED)
        self.held = HeldConnection(client.connection_pool)

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """A store on the Redis named by the settings."""
        client = redis.Redis.from_url(
            settings.effective_redis_url,
            socket_connect_timeout=2,
            socket_timeout=10,
            health_check_interval=30,
        )
        return cls(client, settings)
