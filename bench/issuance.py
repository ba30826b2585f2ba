"""Issuance benchmark: the signing maths alone, side by side with the whole service.

    python bench/issuance.py [--count 20000] [--ca EC_prime256v1 RSA_2048 RSA_4096] [--quick]

For each CA key type it prints, in one run:
  raw    one core, tight loop of `cryptography`: load CSR, verify, build, sign, PEM
  e2e    8 keep-alive connections send one IssueCertificate per certificate, then poll GetCertificate
         until all are issued (API, one worker process and Redis on this machine)
  drain  a backlog of pending requests drained by one worker process, then by two
  and the ratios the issue asks for, IssueCertificate latency (p50/p99) and Redis memory per record.
It starts its own Redis (redis-server on a free port) unless --redis-url is given. No assertion: a
benchmark prints figures.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import cpu, load  # noqa: E402
from shared import keys as key_algorithms  # noqa: E402
from shared.cli import api_args, worker_args  # noqa: E402
from shared.records import keys, member_of  # noqa: E402

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


# -- inputs ----------------------------------------------------------------------------------------


def make_csrs(n: int) -> list[bytes]:
    """``n`` P-256 CSRs (PEM), each with its own key."""
    out = []
    for i in range(n):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"device-{i}.example.com")])
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(name)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(f"device-{i}.example.com")]), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        out.append(csr.public_bytes(serialization.Encoding.PEM))
    return out


# -- the raw loop ------------------------------------------------------------------------------------


def raw_loop(ca_algorithm: str, csrs: list[bytes], seconds: float = 3.0) -> float:
    """Certificates per second of one core doing only the crypto a certificate needs."""
    ca_key = key_algorithms.generate_private_key(ca_algorithm)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench root")])
    now = dt.datetime.now(dt.UTC)
    kwargs = key_algorithms.sign_kwargs(CA_SIGNING[ca_algorithm])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    done, i = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        csr = x509.load_pem_x509_csr(csrs[i % len(csrs)])
        i += 1
        if not csr.is_signature_valid:
            raise SystemExit("bad CSR")
        cert = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(name)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)
            .add_extension(aki, critical=False)
            .sign(ca_key, **kwargs)
        )
        cert.public_bytes(serialization.Encoding.PEM)
        done += 1
    return done / (time.perf_counter() - start)


# -- the service -------------------------------------------------------------------------------------


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
        wait_for(self._api_up, 30, "the API")

    def _api_up(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

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
        wait_for(lambda: self._ready(), 60, "a worker")

    def _ready(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False

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
    body = {"CertificateAuthorityArn": arn, "CertificateArn": cert_arn}
    cert = wait_for(
        lambda: client.call("GetCertificate", body)[1].get("Certificate"), 60, "the root certificate"
    )
    client.call(
        "ImportCertificateAuthorityCertificate",
        {"CertificateAuthorityArn": arn, "Certificate": base64.b64encode(cert.encode()).decode()},
    )
    return arn


def submit_all(
    port: int, ca_arn: str, signing: str, csrs: list[bytes], connections: int = 8
) -> tuple[list[str], list[float], float]:
    """IssueCertificate for every CSR from ``connections`` keep-alive connections: ARNs, latencies, seconds."""
    requests = [
        load.encode(
            port,
            "IssueCertificate",
            {
                "CertificateAuthorityArn": ca_arn,
                "Csr": base64.b64encode(c).decode(),
                "SigningAlgorithm": signing,
                "Validity": {"Value": 30, "Type": "DAYS"},
            },
        )
        for c in csrs
    ]
    arns: list[str] = [""] * len(requests)

    def answered(i: int, status: int, body: bytes) -> bool:
        if status != 200:
            raise SystemExit(f"IssueCertificate failed: {status} {body[:300]!r}")
        arns[i] = json.loads(body)["CertificateArn"]
        return True

    start = time.perf_counter()
    latencies = load.run(port, requests, answered, connections)
    return arns, latencies, time.perf_counter() - start


def poll_all(port: int, ca_arn: str, arns: list[str], connections: int = 8) -> int:
    """GetCertificate until every ARN answers with a certificate; returns how many calls it took."""
    requests = [
        load.encode(port, "GetCertificate", {"CertificateAuthorityArn": ca_arn, "CertificateArn": arn})
        for arn in arns
    ]
    calls = 0

    def answered(i: int, status: int, body: bytes) -> bool:
        nonlocal calls
        calls += 1
        if status == 200:
            return True
        if b"RequestInProgressException" not in body:
            raise SystemExit(f"GetCertificate failed: {status} {body[:300]!r}")
        return False

    load.run(port, requests, answered, connections)
    return calls


def pending(stack: Stack) -> int:
    return int(stack.r.zcard(keys.PENDING_CERTS))


def drain(stack: Stack, ca_arn: str, signing: str, csrs: list[bytes], concurrency: int) -> float:
    """Certificates per second that ``concurrency`` worker processes sign from a standing backlog."""
    stack.stop_workers()
    submit_all(stack.port, ca_arn, signing, csrs)
    stack.start_workers(concurrency)
    # Workers may start signing before they report ready: count only what is left from here on.
    start, backlog = time.perf_counter(), pending(stack)
    wait_for(lambda: pending(stack) == 0, 600, "the backlog to drain")
    return backlog / (time.perf_counter() - start)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def bench_ca(stack: Stack, ca_algorithm: str, csrs: list[bytes], drain_count: int) -> dict:
    raw = raw_loop(ca_algorithm, csrs)
    stack.start_workers(1)
    ca_arn = activate_root(Client(stack.port), ca_algorithm)
    used_before = stack.r.info("memory")["used_memory"]
    roots = {name: proc.pid for name, proc in stack.procs.items()}
    one_session = os.getsid(roots["worker"]) == os.getsid(roots["api"])  # one autogroup, as `pcaq up`
    cpu_before = cpu.snapshot(roots) | {"clients": time.process_time()}  # the clients: this process
    start = time.perf_counter()
    signing = CA_SIGNING[ca_algorithm]
    arns, latencies, submit_seconds = submit_all(stack.port, ca_arn, signing, csrs)
    polls = poll_all(stack.port, ca_arn, arns)
    e2e_seconds = time.perf_counter() - start
    cpu_after = cpu.snapshot(roots) | {"clients": time.process_time()}
    cpu_us = {name: 1e6 * (cpu_after[name] - cpu_before[name]) / len(arns) for name in cpu_after}
    per_record = (stack.r.info("memory")["used_memory"] - used_before) / len(arns)
    sample = stack.r.memory_usage(
        keys.certificate(member_of(arns[0].split("/")[1], arns[0].rsplit("/", 1)[1]))
    )
    drain_csrs = (csrs * (drain_count // len(csrs) + 1))[:drain_count]
    drain1 = drain(stack, ca_arn, signing, drain_csrs, 1)
    drain2 = drain(stack, ca_arn, signing, drain_csrs, 2)
    stack.stop_workers()
    row = {
        "ca": ca_algorithm,
        "raw": raw,
        "e2e": len(arns) / e2e_seconds,
        "submit": len(arns) / submit_seconds,
        "p50_ms": pct(latencies, 0.50) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "drain1": drain1,
        "drain2": drain2,
        "bytes_per_record": per_record,
        "record_key_bytes": sample,
        "count": len(arns),
        "polls_per_cert": polls / len(arns),
        "cpu_us_per_cert": cpu_us,  # end to end, by process tree (the clients are this process)
        "cpu_us_available": 1e6 * e2e_seconds * (os.cpu_count() or 1) / len(arns),
        "drain_count": drain_count,
        "one_session": one_session,
    }
    row["targets"] = {name: bool(test(row)) for name, test in TARGETS.items()}
    return row


# The targets (issue 4), each a test of one result row.
TARGETS = {
    "e2e/raw": lambda r: r["e2e"] / r["raw"] >= 0.50,
    "d1/raw": lambda r: r["drain1"] / r["raw"] >= 0.85,
    "d2/d1": lambda r: r["drain2"] / r["drain1"] >= 1.7,
    "p99": lambda r: r["p99_ms"] < 10.0,
    "B/rec": lambda r: r["record_key_bytes"] < 2500,
}


def _autogroup() -> str:
    """Whether the kernel groups processes by session for CPU shares (then nice acts within one only)."""
    try:
        return "on" if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" else "off"
    except OSError:
        return "unknown"


def report(rows: list[dict]) -> None:
    print()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    one_session = all(r["one_session"] for r in rows)
    print(f"scheduling: autogroup {_autogroup()}; API and workers in one session: {one_session}")
    head = (
        f"{'CA':<14}{'raw/s':>8}{'e2e/s':>8}{'e2e/raw':>8}{'submit/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'drain1/s':>9}{'d1/raw':>7}{'drain2/s':>9}{'d2/d1':>6}{'B/rec':>7}"
    )
    print(head)
    for r in rows:
        print(
            f"{r['ca']:<14}{r['raw']:>8.0f}{r['e2e']:>8.0f}{r['e2e'] / r['raw']:>8.2f}{r['submit']:>9.0f}"
            f"{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['drain1']:>9.0f}{r['drain1'] / r['raw']:>7.2f}"
            f"{r['drain2']:>9.0f}{r['drain2'] / r['drain1']:>6.2f}{r['record_key_bytes']:>7}"
        )
    print("targets: e2e/raw >= 0.50, d1/raw >= 0.85, d2/d1 >= 1.7, p99 < 10 ms, B/rec < 2500")
    for r in rows:
        met = [name for name, ok in r["targets"].items() if ok]
        missed = [name for name, ok in r["targets"].items() if not ok]
        print(f"{r['ca']:<14}met: {', '.join(met) or '-'}; not met: {', '.join(missed) or '-'}")
    print("\nend to end, CPU per certificate (us) by process tree, against one raw-loop certificate:")
    for r in rows:
        parts = ", ".join(f"{name} {us:.0f}" for name, us in r["cpu_us_per_cert"].items())
        used = sum(r["cpu_us_per_cert"].values())
        print(
            f"{r['ca']:<14}{parts}; total {used:.0f} of {r['cpu_us_available']:.0f} available;"
            f" raw loop {1e6 / r['raw']:.0f}; GetCertificate calls per certificate {r['polls_per_cert']:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000, help="certificates in the end-to-end run")
    parser.add_argument("--drain", type=int, default=20000, help="backlog size for the drain runs")
    parser.add_argument(
        "--ca", nargs="+", default=["EC_prime256v1", "RSA_2048", "RSA_4096"], choices=list(CA_SIGNING)
    )
    parser.add_argument(
        "--redis-url", default=None, help="use this Redis (flushed!) instead of a private one"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny run (a smoke test of the benchmark itself)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.drain, args.ca = 100, 200, ["EC_prime256v1"]
    if args.redis_url is None and not shutil.which("redis-server"):
        raise SystemExit("bench: redis-server is not installed; pass --redis-url")
    print(f"making {args.count} P-256 CSRs ...", flush=True)
    csrs = make_csrs(args.count)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pcaq-bench-") as tmp:
        stack = Stack(args.redis_url, Path(tmp))
        try:
            stack.start_api()
            for ca in args.ca:
                print(f"benchmarking a {ca} CA ...", flush=True)
                rows.append(bench_ca(stack, ca, csrs, args.drain))
        finally:
            stack.close()
    report(rows)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
