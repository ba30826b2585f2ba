"""Fixtures of the fault tests: the CSRs of a bulk, and Redis servers of their own."""

from __future__ import annotations

import shutil

import pytest

from bench.issuance import make_csrs
from tests.faults.harness import BULK, RedisServer


@pytest.fixture(scope="session")
def bulk_csrs() -> list[bytes]:
    """2,000 P-256 CSRs (PEM), each with its own key (about 0.2 s to make)."""
    return make_csrs(BULK)


@pytest.fixture
def redis_server(tmp_path):
    """A factory of ``RedisServer`` (started), each stopped at the end of the test."""
    if shutil.which("redis-server") is None:
        pytest.skip("the fault tests start their own redis-server")
    servers: list[RedisServer] = []

    def start(appendfsync: str = "everysec", appendonly: str = "yes") -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", appendfsync, appendonly)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
