"""Test resources for every folder: a Redis to run against (started privately when none answers), and
the in-process issuance flow shared by the unit and the fault tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
import redis

from pcaq.api.app import create_app
from pcaq.ca.authorities import Authorities
from pcaq.ca.vault import EncryptedRedisVault, verify_master_key
from pcaq.platform.settings import load
from pcaq.records import Store
from pcaq.worker.services import Services
from tests import issue_flow
from tests.support import private_redis_db


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


@pytest.fixture
def env(redis_base_url):
    """The issuance flow in-process on a private Redis database: ``(services, Flask test client)``.

    The worker's functions are called directly (see tests/issue_flow.py); Celery is a recording stand-in.
    """
    with private_redis_db(redis_base_url) as url:
        settings = load({"REDIS_URL": url, "PCAQ_MAX_ATTEMPTS": "3", "PCAQ_STALE_AFTER": "60"})
        store = Store(redis.Redis.from_url(url), settings)
        kek = os.urandom(32)
        verify_master_key(store, kek)
        queue = issue_flow.RecordingQueue()
        svc = Services(
            settings, store, queue, EncryptedRedisVault(store, kek), Authorities(store, queue, settings)
        )
        client = create_app(settings).test_client()
        yield svc, client
