"""How settings become a Redis client and a Celery broker (shared/platform/redis_connect.py), and the
Sentinel settings' checks at start."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from pcaq.platform import redis_connect
from pcaq.platform.queue import make_celery
from pcaq.platform.redis_transport import SENTINEL_TRANSPORT, TRANSPORT
from pcaq.platform.sentinel_connection import SentinelConnection
from pcaq.platform.settings import load

SENTINELS = {"PCAQ_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380,[::1]:26381"}


def test_sentinel_settings_are_read():
    settings = load({**SENTINELS, "PCAQ_REDIS_MIN_REPLICAS": "1"})
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26381))
    assert settings.redis_master == "mymaster"
    assert settings.redis_min_replicas == 1
    assert settings.redis_replica_wait_ms == 2000
    assert load({}).redis_sentinels == () and load({}).redis_min_replicas == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PCAQ_REDIS_SENTINELS", "10.0.0.1"),
        ("PCAQ_REDIS_SENTINELS", "10.0.0.1:port"),
        ("PCAQ_REDIS_SENTINELS", "10.0.0.1:70000"),
        ("PCAQ_REDIS_MASTER", "my master"),
        ("PCAQ_REDIS_MIN_REPLICAS", "-1"),
        ("PCAQ_REDIS_MIN_REPLICAS", "one"),
        ("PCAQ_REDIS_REPLICA_WAIT_MS", "0"),
    ],
)
def test_bad_values_stop_the_process_with_the_name(name, value):
    with pytest.raises(SystemExit, match=name):
        load({**SENTINELS, name: value})


def test_with_sentinels_the_client_follows_the_primary():
    settings = load({**SENTINELS, "PCAQ_REDIS_MASTER": "pcaq", "PCAQ_REDIS_PASSWORD": "p"})
    client = redis_connect.client(settings)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "pcaq"
    assert pool.connection_class is SentinelConnection  # connects through the Sentinels on every path
    assert pool.connection_kwargs["password"] == "p"
    assert "Sentinels 10.0.0.1:26379" in redis_connect.describe(settings)


def test_the_broker_follows_the_same_settings():
    settings = load({**SENTINELS, "PCAQ_REDIS_PASSWORD": "p@ss", "PCAQ_REDIS_SENTINEL_PASSWORD": "s"})
    url, options, transport = redis_connect.broker(settings)
    assert url == "sentinel://:p%40ss@10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://[::1]:26381"
    assert options["master_name"] == "mymaster" and options["sentinel_kwargs"]["password"] == "s"
    assert transport == SENTINEL_TRANSPORT
    app = make_celery(settings)
    assert app.conf.broker_transport == SENTINEL_TRANSPORT
    assert app.conf.broker_transport_options["master_name"] == "mymaster"
    assert app.conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout


def test_without_sentinels_redis_url_is_used_as_before():
    settings = load({"REDIS_URL": "redis://:pw@host:6380/2"})
    assert redis_connect.broker(settings) == ("redis://:pw@host:6380/2", {}, TRANSPORT)
    assert redis_connect.describe(settings) == "redis://:***@host:6380/2"
    assert redis_connect.client(settings).connection_pool.connection_kwargs["port"] == 6380
