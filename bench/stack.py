"""The service under test, as separate processes started the way `pcaq up` starts them.

Redis (a private ``redis-server`` on a Unix socket unless a URL is given), the API under granian with
the Procfile's arguments and Celery workers, plus a minimal awsJson client and the root CA the
benchmark issues from. Used by ``bench/issuance.py`` and by the fault tests' harness.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pcaq.cli.children import api_args, worker_args  # noqa: E402
from pcaq.records import keys  # noqa: E402

CA_SIGNING = {"EC_prime256v1": "SHA256WITHECDSA", "RSA_2048": "SHA256WITHRSA", "RSA_4096": "SHA256WITHRSA"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.02)


def answers(port: int, path: str) -> bool:
    """Whether the API on ``port`` answers 200 on ``path`` (``/healthz``: up; ``/readyz``: Redis
    answers and a worker is alive)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False


def issue_body(ca_arn: str, signing: str, csr: bytes) -> dict:
    """The IssueCertificate input the benchmark sends for one CSR: 30 days, no idempotency token (each
    call is a new request)."""
    return {
        "CertificateAuthorityArn": ca_arn,
        "Csr": base64.b64encode(csr).decode(),
        "SigningAlgorithm": signing,
        "Validity": {"Value": 30, "Type": "DAYS"},
    }


def get_body(ca_arn: str, cert_arn: str) -> dict:
    """The GetCertificate input for one certificate."""
    return {"CertificateAuthorityArn": ca_arn, "CertificateArn": cert_arn}


class Client:
    """A minimal awsJson 1.1 client on one keep-alive connection (the open development mode needs no SigV4)."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, operation: str, body: dict) -> tuple[int, dict]:
        payload = json.dumps(body)
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"ACMPrivateCA.{operation}"}
        self.conn.request("POST", "/", payload, headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data or b"{}")


class Stack:
    """Redis, the API (granian) and Celery workers as separate processes the bench can start and stop."""

    def __init__(self, redis_url: str | None, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        if redis_url is None:  # like pcaq up's embedded Redis: a Unix socket, nothing on disk
            sock = workdir / "redis.sock"
            self.procs["redis"] = subprocess.Popen(
                ["redis-server", "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                 "--save", "", "--appendonly", "no"],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            redis_url = f"unix://{sock}?db=0"
        self.redis_url = redis_url
        self.r = redis.Redis.from_url(redis_url)
        wait_for(self._redis_up, 10, "Redis")
        self.r.flushdb()
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(
            REDIS_URL=redis_url,
            PCAQ_MASTER_KEY=base64.b64encode(os.urandom(32)).decode(),
            PCAQ_DATA_DIR=str(workdir),
            PCAQ_PUBLIC_HOST=f"127.0.0.1:{self.port}",
            PCAQ_LOG_LEVEL="WARNING",
            PYTHONPATH=str(REPO),
        )

    def _redis_up(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def start_api(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "granian",
            *api_args("127.0.0.1", self.port),
        ]  # the Procfile's web line
        self.procs["api"] = subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "api.log", "w"),
        )
        wait_for(lambda: answers(self.port, "/healthz"), 30, "the API")

    def start_workers(self, concurrency: int) -> None:
        argv = [sys.executable, "-m", "celery", *worker_args(concurrency)]
        argv = [("WARNING" if a == "INFO" else a) for a in argv]
        log = open(self.workdir / f"worker-{concurrency}.log", "w")
        # Its own process group (stopped as one), but the session of the API, as under `pcaq up`: with
        # the kernel's autogroup scheduling a new session would be a scheduling group of its own, with
        # half the CPU whatever its nice, and the benchmark would not measure what `pcaq up` runs.
        self.procs["worker"] = subprocess.Popen(
            argv, env=self.env, cwd=self.workdir, stdout=log, stderr=log, process_group=0
        )
        wait_for(lambda: answers(self.port, "/readyz"), 60, "a worker")

    def pending(self) -> int:
        """How many certificate requests are not finished (the outbox's size)."""
        return int(self.r.zcard(keys.PENDING_CERTS))

    def stop_workers(self) -> None:
        proc = self.procs.pop("worker", None)
        if proc:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(60)
        self.r.delete(keys.WORKERS)

    def close(self) -> None:
        self.stop_workers()
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.wait(30)


def activate_root(client: Client, ca_algorithm: str) -> str:
    """Create a ROOT CA of ``ca_algorithm``, sign its own CSR and import the certificate: its ARN."""
    signing = CA_SIGNING[ca_algorithm]
    status, out = client.call(
        "CreateCertificateAuthority",
        {
            "CertificateAuthorityType": "ROOT",
            "CertificateAuthorityConfiguration": {
                "KeyAlgorithm": ca_algorithm,
                "SigningAlgorithm": signing,
                "Subject": {"CommonName": f"bench {ca_algorithm}"},
            },
        },
    )
    arn = out["CertificateAuthorityArn"]
    csr = wait_for(
        lambda: client.call("GetCertificateAuthorityCsr", {"CertificateAuthorityArn": arn})[1].get("Csr"),
        120,
        "the CA key",
    )
    _, out = client.call(
        "IssueCertificate",
        {
            "CertificateAuthorityArn": arn,
            "Csr": base64.b64encode(csr.encode()).decode(),
            "SigningAlgorithm": signing,
            "TemplateArn": "arn:aws:acm-pca:::template/RootCACertificate/V1",
            "Validity": {"Value": 10, "Type": "YEARS"},
        },
    )
    cert_arn = out["CertificateArn"]
    cert = wait_for(
        lambda: client.call("GetCertificate", get_body(arn, cert_arn))[1].get("Certificate"),
        60,
        "the root certificate",
    )
    client.call(
        "ImportCertificateAuthorityCertificate",
        {"CertificateAuthorityArn": arn, "Certificate": base64.b64encode(cert.encode()).decode()},
    )
    return arn
