"""Issuance benchmark: the signing maths alone, side by side with the whole service.

    python bench/issuance.py [--count 5000] [--drain 20000] [--ca EC_prime256v1 RSA_2048 RSA_4096] [--quick]

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
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import ceiling, cpu, load  # noqa: E402
from bench.stack import (  # noqa: E402
    CA_SIGNING,
    Client,
    Stack,
    activate_root,
    get_body,
    issue_body,
    wait_for,
)
from pcaq.pki import keys as key_algorithms  # noqa: E402
from pcaq.records import keys, member_of  # noqa: E402

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


# -- the service, measured ---------------------------------------------------------------------------


def submit_all(
    port: int, ca_arn: str, signing: str, csrs: list[bytes], connections: int = 8
) -> tuple[list[str], list[float], float]:
    """IssueCertificate for every CSR from ``connections`` keep-alive connections: ARNs, latencies, seconds."""
    requests = [load.encode(port, "IssueCertificate", issue_body(ca_arn, signing, c)) for c in csrs]
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
    requests = [load.encode(port, "GetCertificate", get_body(ca_arn, arn)) for arn in arns]
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


def drain(stack: Stack, ca_arn: str, signing: str, csrs: list[bytes], concurrency: int) -> float:
    """Certificates per second that ``concurrency`` worker processes sign from a standing backlog."""
    stack.stop_workers()
    submit_all(stack.port, ca_arn, signing, csrs)
    stack.start_workers(concurrency)
    # Workers may start signing before they report ready: count only what is left from here on.
    start, backlog = time.perf_counter(), stack.pending()
    wait_for(lambda: stack.pending() == 0, 600, "the backlog to drain")
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
    # The API's application alone (no HTTP server), on as many new requests as the run made.
    in_process = ceiling.api_in_process(stack, ca_arn, signing, csrs)
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
        "api_in_process_us": in_process,  # CPU per call of the API application without an HTTP server
        "drain_count": drain_count,
        "one_session": one_session,
    }
    row["ceiling"] = ceiling.ceiling(row)
    return judged(row, TARGETS)


# The issue's targets (issue 4), each a test of one result row.
TARGETS = {  # name: (the target as printed, its test)
    "e2e/raw": ("e2e/raw >= 0.50", lambda r: r["e2e"] / r["raw"] >= 0.50),
    "d1/raw": ("d1/raw >= 0.85", lambda r: r["drain1"] / r["raw"] >= 0.85),
    "d2/d1": ("d2/d1 >= 1.7", lambda r: r["drain2"] / r["drain1"] >= 1.7),
    "p99": ("p99 < 10 ms", lambda r: r["p99_ms"] < 10.0),
    "B/rec": ("B/rec < 2500", lambda r: r["record_key_bytes"] < 2500),
}


def judged(row: dict, targets: dict) -> dict:
    """``row`` with ``row["targets"]``: whether it meets each of ``targets`` (a subset of TARGETS)."""
    row["targets"] = {name: bool(test(row)) for name, (_, test) in targets.items()}
    return row


def verdict(met_by_target: dict[str, bool]) -> str:
    """The line that says which targets a row meets: "met: a, b; not met: c"."""
    met = [name for name, ok in met_by_target.items() if ok]
    missed = [name for name, ok in met_by_target.items() if not ok]
    return f"met: {', '.join(met) or '-'}; not met: {', '.join(missed) or '-'}"


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
    print("targets: " + ", ".join(shown for shown, _ in TARGETS.values()))
    for r in rows:
        print(f"{r['ca']:<14}{verdict(r['targets'])}")
    print("\nend to end, CPU per certificate (us) by process tree, against one raw-loop certificate:")
    for r in rows:
        parts = ", ".join(f"{name} {us:.0f}" for name, us in r["cpu_us_per_cert"].items())
        used = sum(r["cpu_us_per_cert"].values())
        print(
            f"{r['ca']:<14}{parts}; total {used:.0f} of {r['cpu_us_available']:.0f} available;"
            f" raw loop {1e6 / r['raw']:.0f}; GetCertificate calls per certificate {r['polls_per_cert']:.2f}"
        )
    print(
        "\nthe API application in this process, no HTTP server (us of CPU per call), and the end-to-end"
        "\nrate the cores would allow if serving HTTP cost nothing (the other parts as measured above):"
    )
    for r in rows:
        api = r["api_in_process_us"]
        print(
            f"{r['ca']:<14}IssueCertificate {api['IssueCertificate']:.0f}, GetCertificate"
            f" {api['GetCertificate']:.0f}; ceiling {r['ceiling']:.0f}/s = {r['ceiling'] / r['raw']:.2f} of the raw loop"
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
