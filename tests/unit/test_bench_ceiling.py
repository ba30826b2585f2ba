"""The benchmark's ceiling: the end-to-end rate the cores allow if serving HTTP cost nothing."""

from __future__ import annotations

import os

import pytest

from bench.ceiling import ceiling


def _row(polls: float) -> dict:
    return {
        "cpu_us_per_cert": {"redis": 100.0, "api": 999.0, "worker": 200.0, "clients": 100.0},
        "api_in_process_us": {"IssueCertificate": 150.0, "GetCertificate": 50.0},
        "polls_per_cert": polls,
    }


def test_the_api_share_is_replaced_by_its_in_process_cost():
    # 100 + 200 + 100 (the other parts, as measured) + 150 + 1 x 50 (the application alone) = 600 us;
    # the API's measured 999 us (HTTP serving included) does not count.
    assert ceiling(_row(1.0)) == pytest.approx((os.cpu_count() or 1) * 1e6 / 600)


def test_each_getcertificate_call_of_the_run_counts():
    # 1.5 calls per certificate (some answered "in progress"): 400 + 150 + 75 = 625 us.
    assert ceiling(_row(1.5)) == pytest.approx((os.cpu_count() or 1) * 1e6 / 625)
