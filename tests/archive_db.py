"""A PostgreSQL database of its own for an archive test, on the server $PCAQ_TEST_ARCHIVE_URL names
(tests needing one skip only when it is unset; CI always sets it)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

SERVER_URL = os.environ.get("PCAQ_TEST_ARCHIVE_URL", "")
needs_postgres = pytest.mark.skipif(not SERVER_URL, reason="PCAQ_TEST_ARCHIVE_URL is not set")


def with_database(url: str, name: str) -> str:
    """``url`` with its database replaced by ``name``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@contextmanager
def private_database(server_url: str = SERVER_URL) -> Iterator[str]:
    """Create a database with a random name, yield its URL, drop it afterwards."""
    import psycopg

    name = f"pcaq_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
