"""The operator's view of a running pcaq: ``GET /metrics``, JSON logs in which one request id follows a
request from the API to the worker, and Celery task events that Flower shows."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading

import pytest
import redis
from celery import Celery
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench.issuance import make_csrs
from pcaq.records import keys
from tests.faults.harness import ApiClient, root_ca, scrape
from tests.support import REPO, running_stack, wait_until

pytestmark = pytest.mark.integration


def _broken_signature(csr_pem: bytes) -> bytes:
    """The same CSR with its signature damaged: it parses (the API accepts it), the worker refuses it."""
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return (
        b"-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(bytes(der))
        + b"-----END CERTIFICATE REQUEST-----\n"
    )


class EventLog:
    """Celery events as Flower receives them (``app.events.Receiver`` on the broker)."""

    def __init__(self, redis_url: str):
        self.app = Celery(broker=redis_url)
        self.events: list[dict] = []
        self.ready = threading.Event()
        self._receiver = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self.events.append})
            self.ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> EventLog:
        self._thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def types(self, task: str | None = None) -> set[str]:
        return {e["type"] for e in list(self.events) if task is None or e.get("name") in (None, task)}


def test_metrics_json_logs_and_task_events(tmp_path, redis_base_url):
    env = {"PCAQ_LOG_FORMAT": "json", "PCAQ_LOG_LEVEL": "DEBUG"}
    with running_stack(tmp_path, env=env, redis_base_url=redis_base_url, workers=1) as stack:
        port = int(stack.endpoint_url.rsplit(":", 1)[1])
        ca_arn = root_ca(port)
        csrs = make_csrs(5)
        client = ApiClient(port)
        with EventLog(stack.redis_url) as events:
            # A heartbeat (every 2 s) shows the receiver is subscribed: no task event can be missed now.
            wait_until(
                lambda: "worker-heartbeat" in events.types(), timeout=10, what="a worker heartbeat event"
            )
            request_ids = []
            for csr in [*csrs, _broken_signature(csrs[0])]:
                body = {
                    "CertificateAuthorityArn": ca_arn,
                    "Csr": base64.b64encode(csr).decode(),
                    "SigningAlgorithm": "SHA256WITHECDSA",
                    "Validity": {"Value": 7, "Type": "DAYS"},
                }
                status, out, request_id = client.call("IssueCertificate", body)
                assert status == 200, out
                request_ids.append(request_id)
            r = redis.Redis.from_url(stack.redis_url)
            wait_until(lambda: r.zcard(keys.PENDING_CERTS) == 0, what="all requests finished")
            wanted = {"task-received", "task-started", "task-succeeded"}
            wait_until(lambda: wanted <= events.types("pcaq.drain"), what=f"a drain task's events {wanted}")

        # GET /metrics: outcomes, latency, the outbox, CAs, and requests counted across API processes.
        m = scrape(port)
        assert m["pcaq_certificates_issued_total"] == 5 + 1  # and the root's own certificate
        assert m['pcaq_certificate_failures_total{reason="MalformedCSR"}'] == 1
        assert m["pcaq_issuance_latency_seconds_count"] == 6
        assert m['pcaq_issuance_latency_seconds_bucket{le="+Inf"}'] == 6
        assert m["pcaq_outbox_requests"] == 0 and m["pcaq_oldest_pending_age_seconds"] == 0
        assert m["pcaq_workers_alive"] >= 1 and m["pcaq_redis_up"] == 1 and m["pcaq_urgent_jobs"] == 0
        assert m['pcaq_certificate_authorities{status="ACTIVE"}'] == 1
        assert m['pcaq_api_requests_total{operation="IssueCertificate",outcome="success"}'] == 7
        assert m['pcaq_wakeups_failed_total{task="pcaq.drain"}'] == 0  # exported before any failure

        # JSON logs: the failed request's id is on the API's line and on the worker's.
        lines = [json.loads(line) for line in stack.log().splitlines() if line.startswith("{")]
        assert lines and all({"time", "level", "logger", "message"} <= set(doc) for doc in lines)
        bad = request_ids[-1]
        api_side = [d for d in lines if d.get("request_id") == bad and d["logger"] == "pcaq.api"]
        worker_side = [d for d in lines if d.get("request_id") == bad and d["logger"] == "pcaq.worker"]
        assert api_side and api_side[0]["operation"] == "IssueCertificate" and api_side[0]["status"] == 200
        assert worker_side and worker_side[0]["reason"] == "MalformedCSR", worker_side
        batches = [d for d in lines if d["logger"] == "pcaq.worker" and "request_ids" in d]
        assert set(request_ids) <= {rid for d in batches for rid in d["request_ids"]}

        # What Flower uses besides events: the remote control (celery inspect) answers.
        ping = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "pcaq.worker.app:app",
                "inspect",
                "ping",
                "--timeout",
                "5",
            ],
            env=stack.env | {"REDIS_URL": stack.redis_url},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
