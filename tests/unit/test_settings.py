"""Settings read from the environment: defaults and bounds of the scheduling knobs."""

from __future__ import annotations

from pcaq.platform.settings import load


def test_worker_niceness_defaults_to_19_and_stays_within_what_nice_accepts():
    assert load({}).worker_nice == 19  # the nicest there is: requests before signing
    assert load({"PCAQ_WORKER_NICE": "10"}).worker_nice == 10
    assert load({"PCAQ_WORKER_NICE": "0"}).worker_nice == 0  # off: workers as the API
    assert load({"PCAQ_WORKER_NICE": "40"}).worker_nice == 19
    assert load({"PCAQ_WORKER_NICE": "-5"}).worker_nice == 0  # never above the API


def test_drain_linger_defaults_to_10_ms_and_can_be_turned_off():
    assert load({}).drain_linger_ms == 10
    assert load({"PCAQ_DRAIN_LINGER_MS": "0"}).drain_linger_ms == 0
