"""The Celery broker URL for a REDIS_URL, including a Redis on a Unix socket."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from pcaq.platform import redis_transport
from pcaq.platform.queue import make_celery
from pcaq.platform.settings import load
from tests.support import wait_until


def test_tcp_urls_are_used_as_they_are():
    assert redis_transport.broker_url("redis://:pw@host:6380/2") == "redis://:pw@host:6380/2"


def test_a_unix_url_becomes_our_transport_on_the_socket():
    url = redis_transport.broker_url("unix:///var/lib/pcaq/redis/redis.sock?db=3")
    assert url == "pcaqredis+socket:///var/lib/pcaq/redis/redis.sock?virtual_host=3"
    assert redis_transport.broker_url("unix:///r.sock") == "pcaqredis+socket:///r.sock?virtual_host=0"


def test_a_unix_url_with_credentials_is_refused_clearly():
    with pytest.raises(ValueError, match="unix://"):
        redis_transport.broker_url("unix://:secret@/r.sock?db=0")


def _answers(sock) -> bool:
    try:
        return redis.Redis(unix_socket_path=str(sock)).ping()
    except redis.ConnectionError:
        return False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_celery_talks_to_a_redis_on_a_unix_socket_with_our_transport(tmp_path):
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(sock), what="redis-server on its socket")
        app = make_celery(load({"REDIS_URL": f"unix://{sock}?db=5"}))
        with app.connection_for_write() as conn:
            assert isinstance(conn.transport, redis_transport.Transport)  # survives a Redis restart
            conn.default_channel.client.set("pcaq:probe", "1")
        assert redis.Redis(unix_socket_path=str(sock), db=5).get("pcaq:probe") == b"1"
    finally:
        proc.terminate()
        proc.wait(10)
