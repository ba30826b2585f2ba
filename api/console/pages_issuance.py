"""Issuance at a glance: charts of the last hour, the queue backlog per CA and the workers alive."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint, g, render_template

from pcaq.api.console import charts
from pcaq.api.console.pages_cas import all_cas, common_name

if TYPE_CHECKING:
    from pcaq.api.console import Services

REFRESH_SECONDS = 10  # the page reloads itself (a meta refresh: no script)


def register(bp: Blueprint, services: Services) -> None:
    """Add the issuance page to the console's blueprint."""
    store = services.store

    @bp.get("/issuance")
    def issuance() -> str:
        minutes = store.series(60)
        snapshot = store.metrics_snapshot()
        cas = all_cas(services, g.visitor.caller)
        ids = [ca["Arn"].rsplit("/", 1)[1] for ca in cas]
        counts = store.index_counts(ids)
        backlog = sorted(
            ((common_name(ca), i, counts[i].pending) for ca, i in zip(cas, ids, strict=True)),
            key=lambda row: (-row[2], row[0]),
        )
        latency, mean = charts.latency(minutes)
        return render_template(
            "issuance.html",
            issued=charts.issued_per_second(minutes),
            pending=charts.pending(minutes, snapshot.outbox),
            failures=charts.failures(minutes),
            latency=latency,
            mean_latency=mean,
            snapshot=snapshot,
            workers=sorted(store.alive_workers()),
            backlog=backlog,
            refresh=REFRESH_SECONDS,
            width=charts.WIDTH,
            height=charts.HEIGHT,
        )
