"""Records of request throttling: one token bucket per (access key, operation), updated atomically."""

from __future__ import annotations

from typing import Any

import redis

from pcaq.records import keys

# Refill by elapsed time (never backwards if another process's clock is behind), take one token if
# there is one, and let an idle bucket expire once it would be full again anyway.
TOKEN_BUCKET = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
elseif now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
  stamp = now
end
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 't', string.format('%.6f', tokens), 'ts', string.format('%.6f', stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return allowed
"""


class ThrottleRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis
    _token_bucket: Any = None

    def take_token(self, access_key: str, operation: str, rate: Any) -> bool:
        """Take one token from the bucket of ``(access_key, operation)`` refilled at ``rate``
        (a :class:`pcaq.platform.throttle.Rate`); False when it is empty."""
        if self._token_bucket is None:
            self._token_bucket = self.r.register_script(TOKEN_BUCKET)
        allowed = self._token_bucket(
            keys=[keys.throttle_bucket(access_key, operation)],
            args=[f"{self.clock():.6f}", rate.per_second, rate.burst],
        )
        return int(allowed) == 1
