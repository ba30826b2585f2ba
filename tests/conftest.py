"""Session-wide test resources: a Redis to run against (started privately when none answers)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_base_url():
    """``redis://host:port`` of a Redis for tests: $PCAQ_TEST_REDIS_URL, 127.0.0.1:6379, or a private one."""
    url = os.environ.get("PCAQ_TEST_REDIS_URL")
    if url:
        yield url.rstrip("/")
        return
    if _answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379"
        return
    server = shutil.which("redis-server")
    if not server:
        pytest.fail(
            "No Redis answers at 127.0.0.1:6379 and redis-server is not installed; set PCAQ_TEST_REDIS_URL."
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="pcaq-test-redis-")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            workdir,
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not _answers(url + "/0"):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the private redis-server did not start")
        time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)
