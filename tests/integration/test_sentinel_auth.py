"""PCAQ_REDIS_PASSWORD and PCAQ_REDIS_SENTINEL_PASSWORD against real servers that require them: a
primary with ``requirepass`` and a Sentinel with a password of its own, reached by the record store
and by the Celery broker alike."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import redis

from bench.sentinel_cluster import Node
from pcaq.platform.queue import make_celery
from pcaq.platform.settings import load
from pcaq.records import Store
from tests.support import free_port, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def guarded(tmp_path):
    """A primary (password ``pw``) and a Sentinel (password ``sp``) that monitors it."""
    if shutil.which("redis-server") is None:
        pytest.skip("starts its own redis-server processes")
    primary_port, sentinel_port = free_port(), free_port()
    primary = Node(
        tmp_path / "primary",
        primary_port,
        [
            "redis-server",
            "--port",
            str(primary_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--requirepass",
            "pw",
        ],
    )
    folder = tmp_path / "sentinel"
    folder.mkdir()
    (folder / "sentinel.conf").write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir .\nrequirepass sp\n"
        f"sentinel monitor mymaster 127.0.0.1 {primary_port} 1\nsentinel auth-pass mymaster pw\n"
    )
    sentinel = Node(folder, sentinel_port, ["redis-server", "sentinel.conf", "--sentinel"])
    try:
        _start(primary, "pw")
        _start(sentinel, "sp")
        yield f"127.0.0.1:{sentinel_port}"
    finally:
        sentinel.stop()
        primary.stop()


def _start(node: Node, password: str) -> None:
    """Start ``node`` and wait until it answers to ``password`` (Node.start pings without one)."""
    node.folder.mkdir(parents=True, exist_ok=True)
    node.proc = subprocess.Popen(node.argv, cwd=node.folder, stdout=subprocess.DEVNULL, process_group=0)

    def answers() -> bool:
        try:
            with redis.Redis(port=node.port, password=password, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    wait_until(answers, timeout=20, what=f"redis-server on port {node.port}")


def test_the_store_and_the_broker_authenticate_to_both(guarded):
    settings = load(
        {
            "PCAQ_REDIS_SENTINELS": guarded,
            "PCAQ_REDIS_PASSWORD": "pw",
            "PCAQ_REDIS_SENTINEL_PASSWORD": "sp",
        }
    )
    store = Store.from_settings(settings)
    assert store.submit_certificate("ca", "acct", "a1", b"request", None).created
    with make_celery(settings).connection_for_write() as connection:
        with connection.Producer() as producer:
            producer.publish({"n": 1}, routing_key="auth-check")
    assert store.r.llen("auth-check") == 1


@pytest.mark.parametrize(("password", "sentinel_password"), [("wrong", "sp"), ("pw", None)])
def test_a_wrong_password_is_refused(guarded, password, sentinel_password):
    env = {"PCAQ_REDIS_SENTINELS": guarded, "PCAQ_REDIS_PASSWORD": password}
    if sentinel_password:
        env["PCAQ_REDIS_SENTINEL_PASSWORD"] = sentinel_password
    store = Store.from_settings(load(env))
    assert store.ping() is False
