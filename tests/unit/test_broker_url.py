"""The Celery broker URL for a REDIS_URL, including a Redis on a Unix socket."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import quote

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


def test_a_unix_url_keeps_its_credentials_where_kombu_reads_them():
    url = redis_transport.broker_url("unix://:s%40cret@/r.sock?db=2")
    assert url == "pcaqredis+socket://:s%40cret@/r.sock?virtual_host=2"
    url = redis_transport.broker_url("unix:///r.sock?db=2&username=ops&password=s@cret")
    assert url == "pcaqredis+socket://ops:s%40cret@/r.sock?virtual_host=2"


def _answers(sock, password: str) -> bool:
    try:
        return redis.Redis(unix_socket_path=str(sock), password=password).ping()
    except redis.ConnectionError:
        return False


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_celery_talks_to_a_redis_on_a_unix_socket_with_our_transport(tmp_path):
    # With a password, as pcaq up's embedded Redis asks for (given on stdin, kept out of argv).
    sock, password = tmp_path / "redis.sock", "s@cret/:pw"
    proc = subprocess.Popen(
        ["redis-server", "-", "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(f'requirepass "{password}"\n'.encode())
    proc.stdin.close()
    try:
        wait_until(lambda: _answers(sock, password), what="redis-server on its socket")
        app = make_celery(load({"REDIS_URL": f"unix://:{quote(password, safe='')}@{sock}?db=5"}))
        with app.connection_for_write() as conn:
            assert isinstance(conn.transport, redis_transport.Transport)  # survives a Redis restart
            conn.default_channel.client.set("pcaq:probe", "1")
        assert redis.Redis(unix_socket_path=str(sock), password=password, db=5).get("pcaq:probe") == b"1"
    finally:
        proc.terminate()
        proc.wait(10)
