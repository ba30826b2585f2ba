"""The record store: every Redis key name and every multi-key transaction of pcaq lives in this package.

Nothing else in the code base builds a key string (``keys.py`` names them all). CAs are JSON
documents changed with optimistic transactions (WATCH/MULTI); certificate requests are hashes whose
life (submit, claim, commit) runs in Lua scripts so that each step is atomic (invariants
1, 2 and 5 in docs/architecture.md). :class:`Store` gathers the per-concern mixins.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from pcaq.platform import redis_connect
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
from pcaq.records.replicas import NotReplicated, WaitingPipeline, replica_wait
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
    "NotReplicated",
    "CertificateRecord",
    "Claimed",
    "Result",
    "Store",
    "Submission",
    "member_of",
    "split_member",
]

# Exceptions that mean "Redis is not reachable right now" (a retryable 503, never a 500).
# NotReplicated: a write the replicas did not confirm in time (PCAQ_REDIS_MIN_REPLICAS) is not done either.
STORE_DOWN: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    NotReplicated,
)


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
        self._release = client.register_script(scripts.RELEASE)
        # With PCAQ_REDIS_MIN_REPLICAS, writes an answer depends on wait for replicas (records/replicas.py).
        self.replica_wait = replica_wait(settings.redis_min_replicas, settings.redis_replica_wait_ms)
        self.held = HeldConnection(client.connection_pool, self.replica_wait)

    def durable_pipeline(self, transaction: bool = True) -> redis.client.Pipeline:
        """A pipeline for writes a client is told about: confirmed by the replicas when required."""
        if self.replica_wait is None:
            return self.r.pipeline(transaction=transaction)
        return WaitingPipeline(self.r, transaction, self.replica_wait)

    def durable_script(self, script: Any, keys: list, args: list) -> Any:
        """Run a registered script whose writes a client is told about (see :meth:`durable_pipeline`)."""
        if self.replica_wait is None:
            return script(keys=keys, args=args)
        pipe = WaitingPipeline(self.r, False, self.replica_wait)
        script(keys=keys, args=args, client=pipe)
        return pipe.execute()[0]

    @classmethod
    def from_settings(cls, settings: Settings) -> Store:
        """A store on the Redis named by the settings (its primary, with Sentinel)."""
        return cls(redis_connect.client(settings), settings)
