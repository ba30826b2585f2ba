"""Best-effort wake-ups (shared/platform/wakeups.py): a broker that cannot take a message does not fail
the request that sent it; the failure is counted for /metrics and logged, at most once per window."""

from __future__ import annotations

import logging
import socket

import pytest
from prometheus_client import REGISTRY, generate_latest

from pcaq.platform import settings, wakeups
from pcaq.platform.queue import CRL_TASK, DRAIN_TASK, Queue, make_celery
from tests.support import wakeups_failed as failed


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(wakeups, "_clock", lambda: now[0])
    monkeypatch.setattr(wakeups, "_limits", {})
    return now


@pytest.fixture
def dead_broker() -> Queue:
    """A Queue whose broker is a port nobody listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return Queue(make_celery(settings.load({"REDIS_URL": f"redis://127.0.0.1:{port}/0"})))


def broker_down(*args: object) -> None:
    raise ConnectionError("redis://:hunter2@broker:6379 refused")


def test_a_wakeup_the_broker_refuses_returns_and_is_counted(dead_broker, clock, caplog):
    before = failed(DRAIN_TASK)
    with caplog.at_level(logging.WARNING, logger="pcaq.wakeups"):
        assert wakeups.wake(DRAIN_TASK, dead_broker.drain) is False
    assert failed(DRAIN_TASK) == before + 1
    assert [r.getMessage() for r in caplog.records] == [
        "could not send a pcaq.drain wake-up (OperationalError); the sweeper asks again "
        "(0 more since the last such line)"
    ]


def test_failures_log_one_line_per_window_per_task_and_each_is_counted(clock, caplog):
    before = failed(CRL_TASK), failed(DRAIN_TASK)
    with caplog.at_level(logging.WARNING, logger="pcaq.wakeups"):
        for _ in range(3):
            assert wakeups.wake(CRL_TASK, broker_down, "ca-id") is False
        assert wakeups.wake(DRAIN_TASK, broker_down) is False  # another task: its own window
        clock[0] += wakeups.LOG_EVERY_SECONDS
        assert wakeups.wake(CRL_TASK, broker_down, "ca-id") is False
    assert (failed(CRL_TASK), failed(DRAIN_TASK)) == (before[0] + 4, before[1] + 1)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" wake-up")[0] for line in lines] == [
        "could not send a pcaq.crl_rebuild",
        "could not send a pcaq.drain",
        "could not send a pcaq.crl_rebuild",
    ]
    assert lines[-1].endswith("(2 more since the last such line)")
    # Neither the message's arguments nor the error's text (it may name the broker with a password).
    assert not any("ca-id" in line or "hunter2" in line for line in lines)


def test_a_wakeup_that_is_sent_returns_true_and_counts_nothing(clock, caplog):
    sent = []
    before = failed(CRL_TASK)
    with caplog.at_level(logging.WARNING, logger="pcaq.wakeups"):
        assert wakeups.wake(CRL_TASK, sent.append, "ca-id") is True
    assert sent == ["ca-id"] and failed(CRL_TASK) == before and not caplog.records


def test_every_wakeup_task_is_exported_before_any_failure():
    wakeups.declare()
    text = generate_latest(REGISTRY).decode()
    for task in wakeups.TASKS:
        assert f'pcaq_wakeups_failed_total{{task="{task}"}}' in text
