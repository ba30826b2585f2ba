"""``GET /metrics`` in the Prometheus text format: the API's request counters and the service's state.

Request counters live in this process (no Redis round trip on the request path). The API runs
several processes, so with ``PROMETHEUS_MULTIPROC_DIR`` set (``pcaq up`` and docker-compose.yml
set it) every process writes its counters to that folder and any of them answers a scrape with the
sum; without it each process reports its own. Wake-up messages that could not be sent are counted
the same way (``pcaq.platform.wakeups``). Everything else is read from Redis at scrape time:
issuance outcomes and ARN -> ISSUED latency (written by the workers once per batch), the outbox, live
workers, the broker queue, records held, archived and removed (retention), and CAs by state (cached for ``CA_CACHE_SECONDS``: they change rarely).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator

from flask import Blueprint, Response
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from pcaq.ca.authority import (
    ACTIVE,
    CREATING,
    DELETED,
    DISABLED,
    EXPIRED,
    FAILED,
    PENDING_CERTIFICATE,
    Authority,
)
from pcaq.platform import wakeups
from pcaq.platform.settings import Settings
from pcaq.records import STORE_DOWN, Store
from pcaq.records.metrics import LATENCY_BUCKETS

log = logging.getLogger("pcaq.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CA_CACHE_SECONDS = 15.0
CA_STATES = (CREATING, PENDING_CERTIFICATE, ACTIVE, DISABLED, EXPIRED, FAILED, DELETED)
SUCCESS = "success"

disable_created_metrics()  # no *_created series: they double the output and no dashboard reads them

_REQUESTS = Counter(
    "pcaq_api_requests",
    "API requests by operation and outcome (success, or the error __type answered).",
    ["operation", "outcome"],
)
_children: dict[tuple[str, str], object] = {}


def count_request(operation: str, outcome: str) -> None:
    """Count one answered API request (an in-memory or mmap increment: about a microsecond)."""
    child = _children.get((operation, outcome))
    if child is None:
        child = _children.setdefault((operation, outcome), _REQUESTS.labels(operation, outcome))
    child.inc()  # type: ignore[attr-defined]


def multiprocess_mode() -> bool:
    """True when prometheus_client keeps values in PROMETHEUS_MULTIPROC_DIR (read at its import)."""
    return values.ValueClass is not values.MutexValue


class StoreCollector(Collector):
    """Metrics read from Redis at scrape time (one round trip, plus the CA documents now and then)."""

    def __init__(self, store: Store, accounts: Iterable[str]):
        self.store = store
        self.accounts = sorted(set(accounts))
        self._lock = threading.Lock()
        self._ca_counts: dict[str, int] = {}
        self._ca_read_at = float("-inf")

    def collect(self) -> Iterator:
        try:
            snap = self.store.metrics_snapshot()
            ca_counts = self._cas()
        except STORE_DOWN:
            yield GaugeMetricFamily("pcaq_redis_up", "1 when Redis answered this scrape.", value=0)
            return
        yield GaugeMetricFamily("pcaq_redis_up", "1 when Redis answered this scrape.", value=1)
        yield GaugeMetricFamily(
            "pcaq_outbox_requests", "Certificate requests accepted and not yet finished.", value=snap.outbox
        )
        yield GaugeMetricFamily(
            "pcaq_outbox_ready_requests",
            "Unfinished certificate requests a worker may take now (not leased).",
            value=snap.ready,
        )
        yield GaugeMetricFamily(
            "pcaq_oldest_pending_age_seconds",
            "Age (since its ARN was handed out) of the oldest request at the head of the outbox.",
            value=snap.oldest_age,
        )
        yield GaugeMetricFamily(
            "pcaq_outbox_longest_wait_seconds",
            "How long the first ready request has been waiting for a worker (0 when none waits).",
            value=snap.longest_wait,
        )
        yield GaugeMetricFamily(
            "pcaq_queue_messages", "Celery messages waiting in the broker.", value=snap.queued_messages
        )
        yield GaugeMetricFamily(
            "pcaq_urgent_jobs",
            "OCSP answers and CRLs that API processes wait for and no worker has taken yet.",
            value=snap.urgent_jobs,
        )
        yield GaugeMetricFamily(
            "pcaq_workers_alive", "Workers with a heartbeat in the last 30 s.", value=snap.workers
        )
        histogram = HistogramMetricFamily(
            "pcaq_issuance_latency_seconds", "Time from IssueCertificate's answer (the ARN) to ISSUED."
        )
        cumulative, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), snap.latency_buckets, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        histogram.add_metric([], cumulative, sum_value=snap.latency_sum)
        yield histogram
        yield CounterMetricFamily(
            "pcaq_certificates_issued", "Certificates issued (each request counted once).", value=snap.issued
        )
        failures = CounterMetricFamily(
            "pcaq_certificate_failures",
            "Certificate requests that ended FAILED, by reason class (the domain error).",
            labels=["reason"],
        )
        for reason, count in sorted(snap.failures.items()):
            failures.add_metric([reason], count)
        yield failures
        yield CounterMetricFamily(
            "pcaq_signing_errors",
            "Unexpected errors while signing (the request stays leased and is retried later).",
            value=snap.unexpected_errors,
        )
        cas = GaugeMetricFamily("pcaq_certificate_authorities", "CAs by status.", labels=["status"])
        for state in CA_STATES:
            cas.add_metric([state], ca_counts.get(state, 0))
        yield cas

    def _cas(self) -> dict[str, int]:
        with self._lock:
            if time.monotonic() - self._ca_read_at >= CA_CACHE_SECONDS:
                counts: dict[str, int] = {}
                now = time.time()
                for doc in self.store.ca_statuses(self.accounts):
                    state = Authority.of(doc).effective_status(now)
                    counts[state] = counts.get(state, 0) + 1
                self._ca_counts, self._ca_read_at = counts, time.monotonic()
            return self._ca_counts


class RetentionCollector(Collector):
    """Records held in Redis, archived and removed, and the archive's alarm (worker/archiver.py)."""

    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator:
        try:
            counts = self.store.retention_counts()
        except STORE_DOWN:
            return  # pcaq_redis_up already says so
        yield GaugeMetricFamily(
            "pcaq_records_held",
            "Finished records in Redis: archived ones waiting for their time to leave, plus the archive "
            "queue's entries (a commit batch or a revocation each) not yet confirmed.",
            value=counts.retained + counts.backlog,
        )
        yield GaugeMetricFamily(
            "pcaq_archive_backlog",
            "Archive queue entries (commit batches, revocations) the archive has not confirmed yet.",
            value=counts.backlog,
        )
        yield CounterMetricFamily(
            "pcaq_records_archived", "Records the archive confirmed.", value=counts.archived
        )
        yield CounterMetricFamily(
            "pcaq_records_removed", "Records removed from Redis by retention.", value=counts.removed
        )
        yield GaugeMetricFamily(
            "pcaq_archive_failing",
            "1 when the archiver's last write failed (records wait in Redis until the archive is back).",
            value=1 if counts.last_failure > counts.last_ok else 0,
        )
        yield GaugeMetricFamily(
            "pcaq_archive_last_success_timestamp_seconds",
            "When the archive last confirmed a batch (0: never).",
            value=counts.last_ok,
        )


def blueprint(settings: Settings, store: Store, accounts: Iterable[str]) -> Blueprint:
    """The blueprint serving ``GET /metrics``; ``accounts`` are those whose CAs are counted."""
    if settings.metrics_dir is not None:
        settings.metrics_dir.mkdir(parents=True, exist_ok=True)
    wakeups.declare()  # counted where they fail, in this process (a broker outage is no time to write Redis)
    state = CollectorRegistry(auto_describe=False)
    state.register(StoreCollector(store, accounts))
    state.register(RetentionCollector(store))
    bp = Blueprint("metrics", __name__)

    @bp.get("/metrics")
    def metrics() -> Response:
        if multiprocess_mode():
            pooled = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(pooled, path=str(settings.metrics_dir) if settings.metrics_dir else None)
            own = generate_latest(pooled)
        else:
            own = generate_latest(REGISTRY)
        return Response(own + generate_latest(state), 200, {"Content-Type": CONTENT_TYPE})

    return bp
