"""The broker transport fix (shared/platform/redis_transport.py) and when make_celery uses it."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection

from pcaq.platform import redis_transport
from pcaq.platform.queue import make_celery
from pcaq.platform.settings import load


def test_a_torn_down_channel_raises_a_connection_error_not_an_attribute_error(redis_base_url):
    conn = Connection(f"{redis_base_url}/0", transport=redis_transport.TRANSPORT)
    channel = conn.default_channel
    assert isinstance(channel, redis_transport.Channel)
    assert channel._connparams()["port"]
    transport = conn.transport
    conn.collect()  # what Celery does with a broken connection: the transport forgets its client
    assert transport.client is None
    with pytest.raises(redis.ConnectionError):
        channel._connparams()
    channel.connection = transport  # still attached to the torn-down transport, as in a running worker
    with pytest.raises(redis.ConnectionError):
        channel._connparams()
    assert isinstance(redis.ConnectionError(), transport.connection_errors)  # which kombu and Celery handle


@pytest.mark.parametrize(
    ("url", "fixed"),
    [("redis://127.0.0.1:6379/0", True), ("rediss://127.0.0.1:6380/0", False), ("sentinel://h:26379", False)],
)
def test_make_celery_uses_the_fix_for_plain_redis_urls(url, fixed):
    app = make_celery(load({"REDIS_URL": url}))
    assert (app.conf.broker_transport == redis_transport.TRANSPORT) is fixed
    assert app.conf.worker_send_task_events is True  # what Flower watches
