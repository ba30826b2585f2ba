"""How the console writes times, durations and serials (template filters)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import Blueprint

NEAR_EXPIRY_DAYS = 30  # a CA or certificate this close to its Not After is highlighted


def when(epoch: float | None) -> str:
    """An epoch time as ``2026-12-03 13:04 UTC`` (or a dash)."""
    if not isinstance(epoch, (int, float)):
        return "-"
    return datetime.fromtimestamp(float(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def days_left(epoch: float | None, now: float | None = None) -> int | None:
    """Whole days until ``epoch`` (negative once past), or None when unknown."""
    if not isinstance(epoch, (int, float)):
        return None
    return int((float(epoch) - (time.time() if now is None else now)) // 86400)


def near(epoch: float | None) -> bool:
    """True when ``epoch`` is within :data:`NEAR_EXPIRY_DAYS` days (or past)."""
    left = days_left(epoch)
    return left is not None and left < NEAR_EXPIRY_DAYS


def colon_serial(serial_hex: str) -> str:
    """A serial as openssl prints it (``3a:f1:...``)."""
    padded = serial_hex if len(serial_hex) % 2 == 0 else "0" + serial_hex
    return ":".join(padded[i : i + 2] for i in range(0, len(padded), 2))


def install(bp: Blueprint) -> None:
    """Make these the templates' filters."""
    for name, function in {"when": when, "days_left": days_left, "near": near, "colon": colon_serial}.items():
        bp.add_app_template_filter(function, name)
