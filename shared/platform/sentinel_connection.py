"""redis-py's Sentinel-managed connection, made to find the primary on every path that connects.

redis-py 8's ``SentinelManagedConnection`` asks the Sentinels for the primary in ``connect()`` only.
A command sent on a connection that is not connected yet (one made outside a pool, as
``pcaq.records.held`` makes them) or that was dropped and is reconnected inside a command's retry goes
through ``connect_check_health()`` instead, which connects to the connection's last address, or,
for a new connection, to redis-py's default of ``localhost:6379``: the wrong server, or one that
has just been demoted. This class routes that path through the Sentinels too.
"""

from __future__ import annotations

from typing import Any

from redis.sentinel import SentinelManagedConnection


class SentinelConnection(SentinelManagedConnection):
    """A connection to the current primary (or a replica) of a Sentinel-managed pool, however it is
    connected."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._asking_sentinels = False

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        if self._asking_sentinels:  # called back by connect_to() with the address the Sentinels gave
            return super().connect_check_health(check_health, retry_socket_connect)
        self._asking_sentinels = True
        try:
            self._connect_retry()  # asks the Sentinels, then connect_to() that address
        finally:
            self._asking_sentinels = False
