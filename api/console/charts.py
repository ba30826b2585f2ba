"""Inline SVG charts of the last hour, drawn on the server: no script, nothing fetched.

Each chart is a small data object the template draws; the numbers come from the minute hashes of
shared/records/series.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcaq.records.metrics import LATENCY_BUCKETS
from pcaq.records.series import Minute

WIDTH, HEIGHT = 600, 150  # the viewBox; the SVG scales to the page's width
STEP = 10  # seconds per point of the line charts (360 points an hour)


@dataclass(frozen=True)
class Line:
    """A line chart over the hour: ``points`` is the polyline, ``peak`` its highest value."""

    title: str
    unit: str
    points: str
    peak: float
    latest: float
    total: int
    empty: bool


@dataclass(frozen=True)
class Bars:
    """A bar chart: (label, count, width in viewBox units) per bar."""

    title: str
    bars: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def height(self) -> int:
        """The viewBox height: 24 units a bar."""
        return max(1, len(self.bars)) * 24


def _polyline(values: list[float]) -> tuple[str, float]:
    peak = max(values, default=0.0)
    scale = (HEIGHT - 10) / peak if peak > 0 else 0.0
    dx = WIDTH / max(1, len(values) - 1)
    points = " ".join(f"{i * dx:.1f},{HEIGHT - v * scale:.1f}" for i, v in enumerate(values))
    return points, peak


def issued_per_second(minutes: list[Minute]) -> Line:
    """Certificates issued a second, averaged over each 10 s of the hour."""
    per_second = [0] * (len(minutes) * 60)
    for m, minute in enumerate(minutes):
        for second, count in minute.issued.items():
            per_second[m * 60 + second] = count
    values = [sum(per_second[i : i + STEP]) / STEP for i in range(0, len(per_second), STEP)]
    points, _ = _polyline(values)
    return Line(
        "Certificates issued a second",
        "/s",
        points,
        float(max(per_second, default=0)),
        values[-1] if values else 0.0,
        sum(per_second),
        not any(per_second),
    )


def pending(minutes: list[Minute], now_pending: int) -> Line:
    """The outbox's size as the workers' heartbeats sampled it (the last value carried forward)."""
    samples: list[float] = []
    last = 0.0
    for minute in minutes:
        for step in range(0, 60, STEP):
            seen = [minute.pending[s] for s in range(step, step + STEP) if s in minute.pending]
            if seen:
                last = float(max(seen))
            samples.append(last)
    if samples:
        samples[-1] = float(now_pending)
    points, peak = _polyline(samples)
    return Line("Requests pending", "", points, peak, float(now_pending), int(peak), not any(samples))


def failures(minutes: list[Minute]) -> Bars:
    """Failed requests by reason over the hour."""
    counts: dict[str, int] = {}
    for minute in minutes:
        for reason, count in minute.failures.items():
            counts[reason] = counts.get(reason, 0) + count
    return _bars("Failures by reason", sorted(counts.items(), key=lambda kv: -kv[1]))


def latency(minutes: list[Minute]) -> tuple[Bars, float | None]:
    """IssueCertificate latency (ARN to ISSUED) over the hour by bucket, and its mean in seconds."""
    buckets = [0] * (len(LATENCY_BUCKETS) + 1)
    count, total = 0, 0.0
    for minute in minutes:
        for bucket, n in minute.latency_buckets.items():
            if 1 <= bucket <= len(buckets):
                buckets[bucket - 1] += n
        count += minute.latency_count
        total += minute.latency_sum
    labels = [f"<= {b:g} s" for b in LATENCY_BUCKETS] + [f"> {LATENCY_BUCKETS[-1]:g} s"]
    shown = [(label, n) for label, n in zip(labels, buckets, strict=True) if n]
    return _bars("IssueCertificate latency (ARN to ISSUED)", shown), (total / count if count else None)


def _bars(title: str, items: list[tuple[str, int]]) -> Bars:
    top = max((n for _, n in items), default=0)
    room = WIDTH - 230  # labels on the left, the count on the right
    return Bars(title, [(label, n, max(1.0, room * n / top) if top else 0.0) for label, n in items])
