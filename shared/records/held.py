"""A Redis connection held by each thread, for the commands every API request makes.

IssueCertificate makes one Redis call (the submit script) and GetCertificate one (the record read).
Through the client, each call also takes a connection from the pool and gives it back, with the
retry wrapper and the client's bookkeeping around it: with redis-py 8 that costs about 60 us of CPU
per call on the machines we measure on, more than Redis itself spends on the call. A connection held
by the thread skips all of it; it is still redis-py's own connection (the same URL, TLS, AUTH, SELECT,
timeouts and health checks), only taken once.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from redis.exceptions import NoScriptError

from pcaq.records.replicas import NotReplicated, ReplicaWait


class HeldConnection:
    """Runs commands on a connection of the calling thread's own, made from ``pool``'s settings.

    A connection error or timeout drops the connection and runs the command once more on a new one
    (as the client's own retry would); a second failure is raised. A process forked from the one that
    made a connection makes its own (a socket is never shared by two processes).
    """

    def __init__(self, pool: redis.ConnectionPool, wait: ReplicaWait | None = None):
        self._pool = pool
        self._wait = wait  # scripts are confirmed by replicas before their reply is returned
        self._local = threading.local()

    def _connection(self) -> Any:
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():
            # Made from the pool's settings but not counted by the pool: a held connection is never
            # handed back, and the pool would count every replacement against its maximum.
            connection = self._pool.connection_class(**self._pool.connection_kwargs)
            held = self._local.held = (os.getpid(), connection)
        return held[1]

    def _drop(self) -> None:
        held, self._local.held = getattr(self._local, "held", None), None
        if held is not None and held[0] == os.getpid():
            held[1].disconnect()

    def command(self, *args: Any) -> Any:
        """The raw reply of one command (bytes, not decoded; as the client gives it)."""
        try:
            return self._once(args)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._once(args)  # on a new connection, as the client's own retry would

    def _once(self, args: tuple) -> Any:
        connection = self._connection()
        try:
            connection.send_command(*args)
            return connection.read_response()
        except redis.ResponseError:
            raise  # an error reply: the connection is in step, keep it
        except BaseException:
            self._drop()  # lost, or interrupted between a command and its reply: out of step either way
            raise

    def script(self, script: Any, keys: list, args: list) -> Any:
        """Run a registered script (``redis.commands.core.Script``) by its SHA; loads it if Redis
        does not have it (a new or restarted server). With a :class:`ReplicaWait`, the reply is
        returned only once the replicas confirmed the script's writes (else :class:`NotReplicated`)."""
        call = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return self._confirmed(call) if self._wait else self.command(*call)
        except NoScriptError:
            if not self._wait:
                return script(keys=keys, args=args)
            self.command("SCRIPT", "LOAD", script.script)
            return self._confirmed(call)

    def _confirmed(self, call: tuple) -> Any:
        """``call`` and the replicas' confirmation in one round trip on the held connection."""
        try:
            return self._once_confirmed(call)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._once_confirmed(call)  # on a new connection, as :meth:`command` does

    def _once_confirmed(self, call: tuple) -> Any:
        assert self._wait is not None
        connection = self._connection()
        try:
            connection.send_packed_command(connection.pack_commands([call, *self._wait.commands()]))
        except BaseException:
            self._drop()
            raise
        try:
            reply = connection.read_response()
        except redis.ResponseError:
            # An error reply (NOSCRIPT, a script's error): nothing was written, but the two commands
            # behind it still answer; read them so the connection stays in step.
            self._read_rest(connection)
            raise
        except BaseException:
            self._drop()
            raise
        try:
            connection.read_response()  # the mark's INCR
            acknowledged = connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._drop()
            raise NotReplicated(
                f"the connection broke before the replicas confirmed the write: {exc}"
            ) from exc
        except BaseException:
            self._drop()
            raise
        self._wait.check(acknowledged)
        return reply

    def _read_rest(self, connection: Any) -> None:
        try:
            connection.read_response()
            connection.read_response()
        except BaseException:
            self._drop()
            raise
