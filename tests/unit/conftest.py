"""Fixtures of the unit tests: the in-process revocation flow (RevokeCertificate, CRLs, OCSP, urgent work)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from pcaq.api.app import create_app
from pcaq.ca.authorities import Authorities
from pcaq.ca.vault import EncryptedRedisVault, verify_master_key
from pcaq.platform.settings import load
from pcaq.records import Store
from pcaq.worker.services import Services
from tests.revocation_flow import Flow, RecordingQueue
from tests.support import private_redis_db


@pytest.fixture
def flow(redis_base_url, tmp_path) -> Iterator[Flow]:
    """Revocation in-process on a private Redis database (see tests/revocation_flow.py)."""
    with private_redis_db(redis_base_url) as url:
        settings = load(
            {
                "REDIS_URL": url,
                "PCAQ_RESPONDER_WAIT_MS": "20",
                "PCAQ_PUBLIC_HOST": "pcaq.test:8080",
                "PCAQ_AUDIT_DIR": str(tmp_path / "s3"),
            }
        )
        store = Store(redis.Redis.from_url(url), settings)
        kek = os.urandom(32)
        verify_master_key(store, kek)
        queue = RecordingQueue()
        svc = Services(
            settings, store, queue, EncryptedRedisVault(store, kek), Authorities(store, queue, settings)
        )
        yield Flow(svc, create_app(settings).test_client())
