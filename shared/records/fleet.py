"""Records of the fleet: liveness of workers and fleet-wide locks."""

from __future__ import annotations

import redis

from pcaq.records import keys


class FleetRecords:
    """Mixin of :class:`pcaq.records.Store`."""

    r: redis.Redis

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def heartbeat(self, worker: str) -> None:
        """Record that a worker is alive now."""
        self.r.zadd(keys.WORKERS, {worker: self.clock()})

    def alive_workers(self, within: float = 30.0) -> list[str]:
        """Workers that sent a heartbeat in the last ``within`` seconds."""
        now = self.clock()
        self.r.zremrangebyscore(keys.WORKERS, "-inf", now - 3600)
        return [w.decode() for w in self.r.zrangebyscore(keys.WORKERS, now - within, "+inf")]

    def try_sweep_lock(self, owner: str, seconds: int) -> bool:
        """Let one process in the fleet sweep per interval."""
        return bool(self.r.set(keys.SWEEP_LOCK, owner, nx=True, ex=max(1, seconds)))

    def try_key_generation_lock(self, ca_id: str, owner: str, seconds: int = 600) -> bool:
        """Let one worker at a time generate a CA's key (a redelivered job must not race the first)."""
        return bool(self.r.set(keys.key_generation_lock(ca_id), owner, nx=True, ex=seconds))

    def release_key_generation_lock(self, ca_id: str, owner: str) -> None:
        """Give up the lock taken with :meth:`try_key_generation_lock`, if ``owner`` still holds it
        (a key generation that failed for a passing reason is retried without waiting for it)."""
        key = keys.key_generation_lock(ca_id)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) == owner.encode():
                    pipe.multi()
                    pipe.delete(key)
                    pipe.execute()
            except redis.WatchError:
                pass  # changed meanwhile: no longer ours to release
