"""Records behind ``GET /metrics``: issuance outcomes and latency, and a snapshot of the outbox read in
one round trip per scrape.

Outcomes and latencies are counted by the commit script (``shared/records/scripts.py``) for each
result that takes, in the same step: only one commit per request can take, so a redelivered batch or
two workers racing for one request never count it twice, and a crash never loses a count without
losing the result too. Requests given up after their last attempt are counted by the claim script
(reason ``Abandoned``). Latency is ARN -> ISSUED, from the record itself (``t`` set at submit, the
commit's time at commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from pcaq.records import keys

# Upper bounds (seconds) of the ARN -> ISSUED latency histogram; one more bucket holds the rest.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)

# The failure reason of a request given up after PCAQ_MAX_ATTEMPTS leases ended without a commit.
ABANDONED = "Abandoned"

# KEYS: outbox, record prefix, latency hash, outcomes hash, workers, Celery queue, urgent jobs
# ARGV: now, heartbeat window (s), how many outbox heads to look at for the oldest request
_SNAPSHOT = """
local now = tonumber(ARGV[1])
local head = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1, 'WITHSCORES')
local oldest, first_ready = now, now
for i = 1, #head, 2 do
  local t = tonumber(redis.call('HGET', KEYS[2] .. head[i], 't') or now)
  if t < oldest then oldest = t end
  local score = tonumber(head[i + 1])
  if score < first_ready then first_ready = score end
end
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[1], '-inf', now),
  string.format('%.3f', now - oldest),
  string.format('%.3f', now - first_ready),
  redis.call('HGETALL', KEYS[3]),
  redis.call('HGETALL', KEYS[4]),
  redis.call('ZCOUNT', KEYS[5], now - tonumber(ARGV[2]), '+inf'),
  redis.call('LLEN', KEYS[6]),
  redis.call('LLEN', KEYS[7]),
}
"""


@dataclass(frozen=True)
class Snapshot:
    """What one scrape reads from Redis."""

    outbox: int  # unfinished certificate requests
    ready: int  # of those, the ones a worker may take now
    oldest_age: float  # seconds since the oldest request at the head of the outbox got its ARN
    longest_wait: float  # seconds the first ready request has waited for a worker (0: none waits)
    latency_buckets: list[int]  # per LATENCY_BUCKETS bound, then the overflow bucket (not cumulative)
    latency_count: int
    latency_sum: float
    issued: int
    failures: dict[str, int]  # reason class -> count
    unexpected_errors: int
    workers: int  # workers with a recent heartbeat
    queued_messages: int  # Celery messages waiting in the broker
    urgent_jobs: int  # OCSP answers and CRLs API processes wait for, not yet taken by a worker


class MetricsRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def metrics_snapshot(self, heartbeat_window: float = 30.0, head: int = 16) -> Snapshot:
        """The outbox, outcome and latency figures, the live workers, the broker queue and the urgent
        jobs waiting, in one call."""
        out = self._metrics_script(_SNAPSHOT)(
            keys=[
                keys.PENDING_CERTS,
                keys.CERT_PREFIX,
                keys.METRICS_LATENCY,
                keys.METRICS_OUTCOMES,
                keys.WORKERS,
                keys.CELERY_QUEUE,
                keys.URGENT,
            ],
            args=[f"{self.clock():.3f}", heartbeat_window, head],
        )
        latency = _pairs(out[4])
        outcomes = _pairs(out[5])
        buckets = [int(latency.get(str(i + 1), 0)) for i in range(len(LATENCY_BUCKETS) + 1)]
        failures = {k[7:]: int(v) for k, v in outcomes.items() if k.startswith("failed:")}
        return Snapshot(
            outbox=int(out[0]),
            ready=int(out[1]),
            oldest_age=max(0.0, float(out[2])),
            longest_wait=max(0.0, float(out[3])),
            latency_buckets=buckets,
            latency_count=int(latency.get("count", 0)),
            latency_sum=float(latency.get("sum", 0)),
            issued=int(outcomes.get("issued", 0)),
            failures=failures,
            unexpected_errors=int(outcomes.get("error:unexpected", 0)),
            workers=int(out[6]),
            queued_messages=int(out[7]),
            urgent_jobs=int(out[8]),
        )

    def _metrics_script(self, source: str):
        scripts = self.__dict__.setdefault("_metrics_scripts", {})  # registered on first use
        if source not in scripts:
            scripts[source] = self.r.register_script(source)
        return scripts[source]

    def ca_statuses(self, accounts: Iterable[str]) -> list[dict]:
        """The CA documents of these accounts (for counting CAs by state); CAs are few, read in chunks."""
        docs: list[dict] = []
        for account in sorted(set(accounts)):
            ids = [i.decode() for i in self.r.zrange(keys.ca_index(account), 0, -1)]
            for start in range(0, len(ids), 100):
                chunk = self.r.mget([keys.ca(i) for i in ids[start : start + 100]])
                docs += [json.loads(raw) for raw in chunk if raw]
        return docs


def _pairs(flat: list) -> dict[str, str]:
    text = [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
    return dict(zip(text[0::2], text[1::2], strict=True))
