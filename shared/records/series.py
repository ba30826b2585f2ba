"""Issuance over time, for the console's charts: one hash per minute, kept an hour and a little more.

The commit script (shared/records/scripts.py) adds to the current minute's hash once per commit, not
once per certificate: ``i:<second>`` certificates issued in that second, ``f:<reason>`` failures by
reason class, ``b:<bucket>`` ARN -> ISSUED latencies by bucket of ``LATENCY_BUCKETS`` (one more bucket
for the rest), ``lc`` and ``ls`` their count and sum. The claim script counts requests given up
(``f:Abandoned``). Workers' heartbeats add ``p:<second>``, the outbox's size then (:meth:`sample_backlog`).
Nothing is written for the console's sake while it is closed beyond these few commands, and every
hash expires by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from pcaq.records import keys

SERIES_TTL = 3900  # seconds a minute's hash lives: the hour a chart shows, and the minute being written
_MINUTE = 60

# KEYS: outbox. ARGV: series prefix, now, TTL. The outbox's size, written as this second's sample.
_SAMPLE = """
local second = math.floor(tonumber(ARGV[2]))
local minute = ARGV[1] .. math.floor(second / 60)
local size = redis.call('ZCARD', KEYS[1])
redis.call('HSET', minute, 'p:' .. (second % 60), size)
redis.call('EXPIRE', minute, tonumber(ARGV[3]))
return size
"""


@dataclass
class Minute:
    """The figures of one minute (epoch seconds ``start``)."""

    start: int
    issued: dict[int, int] = field(default_factory=dict)  # second of the minute -> certificates
    pending: dict[int, int] = field(default_factory=dict)  # second of the minute -> outbox size sampled
    failures: dict[str, int] = field(default_factory=dict)  # reason class -> count
    latency_buckets: dict[int, int] = field(default_factory=dict)  # bucket number (1-based) -> count
    latency_count: int = 0
    latency_sum: float = 0.0


class SeriesRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def sample_backlog(self) -> int:
        """Record the outbox's size now in this minute's series (called with each worker heartbeat)."""
        script = self.__dict__.get("_sample_script")
        if script is None:
            script = self.__dict__["_sample_script"] = self.r.register_script(_SAMPLE)
        return int(
            script(keys=[keys.PENDING_CERTS], args=[keys.SERIES_PREFIX, f"{self.clock():.3f}", SERIES_TTL])
        )

    def series(self, minutes: int = 60) -> list[Minute]:
        """The last ``minutes`` minutes, oldest first, this minute included (one round trip)."""
        now_minute = int(self.clock()) // _MINUTE
        first = now_minute - minutes + 1
        pipe = self.r.pipeline(transaction=False)
        for minute in range(first, now_minute + 1):
            pipe.hgetall(keys.series(minute))
        return [_minute((first + i) * _MINUTE, raw) for i, raw in enumerate(pipe.execute())]


def _minute(start: int, raw: dict) -> Minute:
    out = Minute(start)
    for name, value in raw.items():
        name, value = name.decode(), value.decode()
        kind, _, rest = name.partition(":")
        if kind == "i":
            out.issued[int(rest)] = int(value)
        elif kind == "p":
            out.pending[int(rest)] = int(value)
        elif kind == "f":
            out.failures[rest] = int(value)
        elif kind == "b":
            out.latency_buckets[int(rest)] = int(value)
        elif name == "lc":
            out.latency_count = int(value)
        elif name == "ls":
            out.latency_sum = float(value)
    return out
