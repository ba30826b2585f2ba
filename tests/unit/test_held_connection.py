"""The connection each thread holds for the API's per-request Redis calls (shared/records/held.py).
Real Redis: the failures are the server's own (a killed client connection, a flushed script cache)."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
import redis

from pcaq.records.held import HeldConnection
from tests.support import private_redis_db


@pytest.fixture
def client(redis_base_url):
    with private_redis_db(redis_base_url) as url:
        c = redis.Redis.from_url(url)
        yield c
        c.close()


def client_id(held: HeldConnection) -> int:
    return held.command("CLIENT", "ID")


def test_commands_reuse_one_connection_per_thread(client):
    held = HeldConnection(client.connection_pool)
    client.set("k", "v")
    assert held.command("GET", "k") == b"v"
    mine = client_id(held)
    assert client_id(held) == mine
    other = []
    thread = threading.Thread(target=lambda: other.append(client_id(held)))
    thread.start()
    thread.join()
    assert other and other[0] != mine  # each thread its own connection: no interleaved replies


def test_a_connection_killed_by_the_server_is_replaced_and_the_command_runs(client):
    held = HeldConnection(client.connection_pool)
    first = client_id(held)
    client.client_kill_filter(_id=first)
    client.set("k", "after")
    assert held.command("GET", "k") == b"after"
    assert client_id(held) != first


def test_connections_replaced_any_number_of_times_are_not_counted_against_the_pool(client):
    held = HeldConnection(client.connection_pool)
    for _ in range(client.connection_pool.max_connections + 20):  # e.g. a long Redis outage
        client.client_kill_filter(_id=client_id(held))
    assert held.command("PING") == b"PONG"


def test_an_error_reply_is_raised_and_the_connection_kept(client):
    held = HeldConnection(client.connection_pool)
    first = client_id(held)
    client.set("k", "v")
    with pytest.raises(redis.ResponseError):
        held.command("HGET", "k", "f")  # wrong type
    assert client_id(held) == first


def test_a_script_redis_does_not_have_is_loaded_and_run(client):
    held = HeldConnection(client.connection_pool)
    script = client.register_script("return ARGV[1] .. redis.call('GET', KEYS[1])")
    client.set("k", "v")
    client.script_flush()  # as after a Redis restart without the script cache
    assert held.script(script, ["k"], ["x"]) == b"xv"
    assert held.script(script, ["k"], ["y"]) == b"yv"  # now by its SHA


def _child_id(held: HeldConnection, out) -> None:
    out.put(client_id(held))


def test_a_forked_process_makes_its_own_connection(client):
    held = HeldConnection(client.connection_pool)
    parent = client_id(held)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_id, args=(held, out))
    child.start()
    child_id = out.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0 and child_id != parent
    assert client_id(held) == parent  # the parent's socket was not touched by the child
