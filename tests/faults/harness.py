"""What the fault tests share: a Redis of their own with its append-only file (killed and restarted on
the same port and folder), a root CA, a load of IssueCertificate clients that retry like the SDKs do,
and the audit of Redis afterwards (invariants 1, 2 and 5 of docs/architecture.md).

The service itself runs under ``pcaq up`` (``tests.support.running_stack``) with short lease, sweep
and staleness settings, so that recovery takes seconds; every wait has a deadline.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
from cryptography import x509

from bench.stack import activate_root
from pcaq.records import keys, member_of
from tests.support import free_port, wait_until

# Recovery settings for a stack under test: a dead worker's lease ends after 5 s, the sweeper looks
# every second and asks for a drain when ready work has waited 2 s.
FAST_RECOVERY = {
    "PCAQ_LEASE_SECONDS": "5",
    "PCAQ_SWEEP_INTERVAL": "1",
    "PCAQ_STALE_AFTER": "2",
    "PCAQ_LOG_LEVEL": "INFO",
}

BULK = 2000  # CSRs in a fault test's bulk (the bulk_csrs fixture)


class RedisServer:
    """A ``redis-server`` with the append-only file on, in ``folder``, on a port of its own."""

    def __init__(self, folder: Path, appendfsync: str = "everysec", appendonly: str = "yes"):
        self.folder = folder
        self.appendfsync = appendfsync
        self.appendonly = appendonly  # "no" only to show a test failing on a Redis without durability
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart, on the same port and data) and wait until it answers with its data loaded."""
        argv = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.folder),
            "--appendonly", self.appendonly,
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--logfile", "redis.log",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, cwd=self.folder, stdout=subprocess.DEVNULL, process_group=0)
        wait_until(self._answers, timeout=timeout, what=f"redis-server on port {self.port}")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited: {(self.folder / 'redis.log').read_text()[-2000:]}")
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:  # refused, or still loading its append-only file
            return False

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final fsync."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=10)


# -- clients --------------------------------------------------------------------------------------


class ApiClient:
    """A minimal awsJson client on one keep-alive connection that reconnects after a broken one."""

    def __init__(self, port: int):
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def call(self, operation: str, body: dict) -> tuple[int, dict, str]:
        """``(status, decoded body, x-amzn-RequestId)``; raises OSError/HTTPException if the connection broke."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"ACMPrivateCA.{operation}"}
        try:
            self.conn.request("POST", "/", json.dumps(body), headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        return resp.status, json.loads(data or b"{}"), resp.getheader("x-amzn-RequestId", "")


@dataclass
class Answer:
    """One answer a client got."""

    at: float  # time.monotonic()
    index: int
    status: int
    error_type: str


@dataclass
class Load:
    """``len(csrs)`` IssueCertificate requests from ``threads`` keep-alive clients.

    Each request carries its own idempotency token and is repeated with it, like the SDKs do, after a
    5xx or a broken connection, until it gets an ARN: so a request whose answer was lost never makes
    a second record. Any other answer is kept in ``unexpected`` (and stops that request).
    """

    port: int
    ca_arn: str
    csrs: list[bytes]
    threads: int = 8
    rate: float | None = None  # requests per second overall; None: as fast as the service answers
    deadline: float = 120.0
    arns: dict[int, str] = field(default_factory=dict)
    arn_at: dict[int, float] = field(default_factory=dict)  # when each ARN was answered (monotonic)
    request_ids: dict[int, str] = field(default_factory=dict)
    retried: list[Answer] = field(default_factory=list)  # 5xx answers that were retried
    answer_times: list[float] = field(default_factory=list)  # when each answer came (any status)
    unexpected: list[Answer] = field(default_factory=list)
    broken_connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def body(self, i: int) -> dict:
        return {
            "CertificateAuthorityArn": self.ca_arn,
            "Csr": base64.b64encode(self.csrs[i]).decode(),
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Validity": {"Value": 30, "Type": "DAYS"},
            "IdempotencyToken": f"fault-{i}",
        }

    @property
    def answered(self) -> int:
        with self._lock:
            return len(self.arns) + len(self.unexpected)

    def start(self) -> Load:
        self._started = time.monotonic()
        for n in range(self.threads):
            thread = threading.Thread(target=self._run, args=(n,), name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, n: int) -> None:
        client = ApiClient(self.port)
        stop_at = self._started + self.deadline
        for i in range(n, len(self.csrs), self.threads):
            if self.rate:
                delay = self._started + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing of a steady-rate load, not a wait for a state
            self._send(client, i, stop_at)

    def _send(self, client: ApiClient, i: int, stop_at: float) -> None:
        body = self.body(i)
        while time.monotonic() < stop_at:
            try:
                status, out, request_id = client.call("IssueCertificate", body)
            except (OSError, http.client.HTTPException):
                with self._lock:
                    self.broken_connections += 1
                time.sleep(0.05)  # back off as the SDKs do, then repeat with the same token
                continue
            answer = Answer(time.monotonic(), i, status, out.get("__type", ""))
            with self._lock:
                self.answer_times.append(answer.at)
            if status == 200:
                with self._lock:
                    self.arns[i] = out["CertificateArn"]
                    self.arn_at[i] = answer.at
                    self.request_ids[i] = request_id
                return
            if status >= 500:
                with self._lock:
                    self.retried.append(answer)
                time.sleep(0.05)
                continue
            with self._lock:
                self.unexpected.append(answer)
            return

    def wait(self, timeout: float | None = None) -> None:
        """Wait for every client thread to finish (each request answered with an ARN, or given up)."""
        end = time.monotonic() + (timeout or self.deadline + 30)
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
            assert not thread.is_alive(), "the load did not finish in time"


def root_ca(port: int) -> str:
    """An ACTIVE EC root CA made through the API; its ARN."""
    return activate_root(_BenchClient(port), "EC_prime256v1")


class _BenchClient(ApiClient):
    """The two-value ``call`` that bench.stack's helpers expect."""

    def call(self, operation: str, body: dict) -> tuple[int, dict]:  # type: ignore[override]
        status, out, _ = super().call(operation, body)
        return status, out


# -- what Redis holds afterwards ------------------------------------------------------------------


def member_of_arn(arn: str) -> str:
    parts = arn.split("/")
    return member_of(parts[1], parts[3])


def owners(client: redis.Redis) -> list[str]:
    """The lease owner (``host:pid:token``) of every unfinished request that has one."""
    members = client.zrange(keys.PENDING_CERTS, 0, -1)
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hget(keys.certificate(member.decode()), "o")
    return [owner.decode() for owner in pipe.execute() if owner]


def wait_all_finished(client: redis.Redis, timeout: float = 90.0) -> float:
    """Wait until the outbox is empty; returns how long that took."""
    start = time.monotonic()
    wait_until(
        lambda: client.zcard(keys.PENDING_CERTS) == 0, timeout=timeout, interval=0.1, what="empty outbox"
    )
    return time.monotonic() - start


@dataclass
class Audit:
    """The state of every certificate request of one CA, against the ARNs the clients were given."""

    handed_out: set[str]  # members of the ARNs clients got
    records: dict[str, dict[bytes, bytes]]  # member -> the record hash (requests made by the load only)
    issued_events: Counter  # member -> "CertificateIssued" entries in the CA's audit trail
    outbox: int

    @classmethod
    def of(cls, client: redis.Redis, ca_arn: str, arns: list[str], before: set[str] | None = None) -> Audit:
        """Read every record of the CA but those in ``before`` (the CA's own certificate, say)."""
        handed_out = {member_of_arn(a) for a in arns}
        records = {m: h for m, h in ca_records(client, ca_arn).items() if m not in (before or set())}
        events: Counter = Counter()
        for _, entry in client.xrange(keys.audit_stream(ca_arn.rsplit("/", 1)[1])):
            if entry.get(b"event") == b"CertificateIssued":
                events[member_of_arn(json.loads(entry[b"details"])["CertificateArn"])] += 1
        return cls(handed_out, records, events, int(client.zcard(keys.PENDING_CERTS)))

    @property
    def lost(self) -> set[str]:
        """ARNs handed out with no record behind them."""
        return self.handed_out - set(self.records)

    def problems(self) -> list[str]:
        """Everything that breaks invariants 1 and 2 for the ARNs handed out (empty when all is well),
        and any certificate without exactly one issuance entry in the audit trail (the commit writes
        the entry with the result, in one step, so no fault may separate them)."""
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} ARNs handed out have no record: {sorted(self.lost)[:3]}")
        orphans = set(self.records) - self.handed_out  # records made for requests no client got an ARN of
        if orphans:
            out.append(f"{len(orphans)} records no client was given: {sorted(orphans)[:3]}")
        states = Counter(self.records[m].get(b"s") for m in self.handed_out & set(self.records))
        if set(states) - {b"I"}:
            out.append(f"not all ISSUED: {dict(states)}")
        if self.outbox:
            out.append(f"{self.outbox} requests still in the outbox")
        serials = []
        for member in sorted(self.handed_out & set(self.records)):
            der = self.records[member].get(b"c")
            if der is None:
                continue
            cert = x509.load_der_x509_certificate(der)
            serial_hex = member.rsplit(":", 1)[1]
            if cert.serial_number != int(serial_hex, 16):
                out.append(f"{member}: certificate serial {cert.serial_number:x} is not the ARN's")
            serials.append(cert.serial_number)
        if len(serials) != len(set(serials)):
            out.append(f"{len(serials) - len(set(serials))} serials repeat")
        doubled = {m: n for m, n in self.issued_events.items() if m in self.handed_out and n != 1}
        missing = self.handed_out & set(self.records) - set(self.issued_events)
        if doubled or missing:
            out.append(
                f"issuance events per ARN: {len(doubled)} not exactly one ({list(doubled.items())[:3]}), "
                f"{len(missing)} without one"
            )
        return out


def ca_records(client: redis.Redis, ca_arn: str) -> dict[str, dict[bytes, bytes]]:
    """Every certificate record of a CA: member -> hash."""
    ca_id = ca_arn.rsplit("/", 1)[1]
    names = [k.decode() for k in client.scan_iter(match=keys.certificate(f"{ca_id}:*"), count=1000)]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    return {name[len(keys.CERT_PREFIX) :]: h for name, h in zip(names, pipe.execute(), strict=True)}


def scrape(port: int) -> dict[str, float]:
    """``GET /metrics`` as {sample name with labels: value}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process (VmRSS, KiB), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def env_with(**extra: str) -> dict[str, str]:
    """FAST_RECOVERY plus ``extra`` (and a master key, so that no key file is needed)."""
    key = base64.b64encode(os.urandom(32)).decode()
    return {**FAST_RECOVERY, "PCAQ_MASTER_KEY": key, **extra}
