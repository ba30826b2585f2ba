"""A script call sent now and its reply read later (:class:`Sent`), so Redis works while the caller signs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import redis
from redis.exceptions import NoScriptError

from pcaq.records.replicas import NotReplicated, ReplicaWait, WaitingPipeline

T = TypeVar("T")


class Sent(Generic[T]):
    """One script call written to a connection of its own, its reply read later by :meth:`result`.

    Redis runs the script as soon as it arrives; the caller goes on working and reads the reply when
    it needs it, so the round trip and the script's run overlap the caller's work. Read it exactly once
    (the connection is held until then). Whatever keeps the write or the read from completing (no
    connection, a lost connection, a server that has not loaded the script yet) makes :meth:`result`
    run the script the ordinary way, with the client's retries: both scripts sent this way are safe to
    run again (a commit writes only results whose lease it still holds; a claim repeated after a lost
    reply leaves the first batch leased until its lease ends, as the client's own retry would).
    """

    def __init__(
        self,
        client: redis.Redis,
        script: Any,
        keys: list,
        args: list,
        parse: Callable[[Any], T],
        wait: ReplicaWait | None = None,
    ):
        self._client, self._script, self._keys, self._args, self._parse = client, script, keys, args, parse
        self._wait = wait  # with it, the replicas' confirmation is sent behind the script and checked
        self._connection = None
        self._open = True  # until result() or close()
        pool = client.connection_pool
        try:
            connection = pool.get_connection()
        except (redis.ConnectionError, redis.TimeoutError):
            return  # result() runs it the ordinary way
        try:
            call = ("EVALSHA", script.sha, len(keys), *keys, *args)
            connection.send_packed_command(
                connection.pack_commands([call, *(wait.commands() if wait else [])])
            )
        except (redis.ConnectionError, redis.TimeoutError):
            self._drop(connection)
            return
        except BaseException:
            self._drop(connection)
            raise
        self._connection = connection

    def _drop(self, connection: Any) -> None:
        """Hand back a connection whose reply will not be read (closed: nothing stale stays on it)."""
        connection.disconnect()
        self._client.connection_pool.release(connection)

    def close(self) -> None:
        """Give up the reply (the script still runs) and hand the connection back."""
        connection, self._connection, self._open = self._connection, None, False
        if connection is not None:
            self._drop(connection)

    def result(self) -> T:
        """The script's reply, parsed (waits for it). Only once: the reply is read, not kept."""
        if not self._open:
            raise RuntimeError("the reply of this call was already read or given up")
        connection, self._connection, self._open = self._connection, None, False
        if connection is not None:
            pool = self._client.connection_pool
            try:
                reply = connection.read_response()
            except NoScriptError:  # not run: the server does not have the script (yet); run it below
                if self._wait:
                    self._skip_confirmation(connection)
                pool.release(connection)
            except (redis.ConnectionError, redis.TimeoutError):  # lost, outcome unknown: run it again below
                self._drop(connection)
            except BaseException:
                self._drop(connection)
                raise
            else:
                if self._wait:
                    self._read_confirmation(connection)
                pool.release(connection)
                return self._parse(reply)
        if self._wait:
            pipe = WaitingPipeline(self._client, False, self._wait)
            self._script(keys=self._keys, args=self._args, client=pipe)
            return self._parse(pipe.execute()[0])
        return self._parse(self._script(keys=self._keys, args=self._args))

    def _read_confirmation(self, connection: Any) -> None:
        """Read the replicas' confirmation sent behind the script (see pcaq.records.replicas)."""
        assert self._wait is not None
        try:
            connection.read_response()  # the mark's INCR
            acknowledged = connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._drop(connection)
            raise NotReplicated(
                f"the connection broke before the replicas confirmed the write: {exc}"
            ) from exc
        except BaseException:
            self._drop(connection)
            raise
        self._wait.check(acknowledged)

    def _skip_confirmation(self, connection: Any) -> None:
        """Read, and ignore, the confirmation behind a script that did not run."""
        try:
            connection.read_response()
            connection.read_response()
        except BaseException:
            connection.disconnect()


class Done(Generic[T]):
    """A :class:`Sent` that needed no call."""

    def __init__(self, value: T):
        self._value = value

    def close(self) -> None:
        pass

    def result(self) -> T:
        return self._value
