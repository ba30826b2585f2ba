"""The work queue: Celery's configuration and the names of the tasks, shared by API and worker.

The API publishes by task name so that it never imports worker code; the worker builds its Celery
app from :func:`make_celery` so both sides agree on broker, serializer and delivery guarantees.
"""

from __future__ import annotations

from celery import Celery

from pcaq.platform import redis_connect
from pcaq.platform.settings import Settings

DRAIN_TASK = "pcaq.drain"
CREATE_CA_KEY_TASK = "pcaq.create_ca_key"
CRL_TASK = "pcaq.crl_rebuild"
OCSP_TASK = "pcaq.ocsp_sign"  # no longer sent (see URGENT_TASK); still served for messages already queued
URGENT_TASK = "pcaq.urgent"
AUDIT_REPORT_TASK = "pcaq.audit_report"
# No longer sent nor served: "pcaq.issue_batch" (the ids of requests to sign). A worker discards a
# message left of it (Celery rejects a task it does not know, without requeueing it), and the requests
# it named are in the outbox, where a drain signs them.


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured for pcaq's delivery guarantees (docs/architecture.md, invariant 5)."""
    url, transport_options, transport = redis_connect.broker(settings)
    app = Celery("pcaq", broker=url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # clients read our records, not Celery results
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # with acks_late, a killed child's message is redelivered
        worker_prefetch_multiplier=settings.prefetch_multiplier,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout, **transport_options},
        broker_connection_retry_on_startup=True,
        # A broker outage leaves running tasks alone (they fail on Redis and their work is retried from
        # the outbox); said explicitly, as Celery warns that its default will change.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,  # what Flower watches (as `celery worker -E`); a few PUBLISHes per task
        task_default_queue="pcaq",
    )
    if transport is not None:
        app.conf.broker_transport = transport  # lives through a Redis restart or failover (see there)
    return app


class Queue:
    """Publishes work for the workers. Publishing failures surface as the broker's own errors."""

    def __init__(self, celery: Celery):
        self.celery = celery

    def drain(self, helper: str | None = None) -> None:
        """Ask a worker to sign whatever is ready in the outbox, in batches, until it is empty
        (``helper``: the token of a helper drain that a full claim asked for)."""
        self.celery.send_task(DRAIN_TASK, args=[helper] if helper else [])

    def create_ca_key(self, ca_id: str) -> None:
        """Ask a worker to generate a new CA's key and CSR."""
        self.celery.send_task(CREATE_CA_KEY_TASK, args=[ca_id])

    def rebuild_crl(self, ca_id: str) -> None:
        """Ask a worker to bring a CA's CRL up to date (nobody waits; see serve_urgent for a reader
        that does)."""
        self.celery.send_task(CRL_TASK, args=[ca_id, None])

    def serve_urgent(self) -> None:
        """Wake a worker to serve the urgent jobs waiting in Redis (shared/revocation/urgent.py): the message
        carries no job, so a drain that took them first leaves it nothing to do."""
        self.celery.send_task(URGENT_TASK)

    def audit_report(self, ca_id: str, report_id: str) -> None:
        """Ask a worker to write an audit report."""
        self.celery.send_task(AUDIT_REPORT_TASK, args=[ca_id, report_id])
