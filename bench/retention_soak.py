"""Retention in steady state: Redis memory levels off while the archive grows.

    python bench/retention_soak.py [--minutes 8] [--rate 20] [--validity 120] [--retention 30s]
                                   [--archive-url postgresql://...] [--plot docs/retention-soak.png]

It starts the service as separate processes (bench/stack.py: redis-server, the API under granian,
Celery workers) with ``PCAQ_RETENTION_AFTER_EXPIRY`` and ``PCAQ_FAILED_RETENTION`` set to
``--retention`` and the archive in PostgreSQL (``--archive-url``) or in files, activates a P-256 root,
and issues certificates valid ``--validity`` seconds at a steady ``--rate`` for ``--minutes``. A record
leaves Redis ``validity + retention`` after it is issued, so a run of several such spans cycles
through retention several times. Every ``--every`` seconds it prints Redis ``used_memory``, the records
held, archived and removed, and IssueCertificate's p99 in that interval; at the end, the archive's
bytes per certificate and write rate, the archiver's share of the worker's CPU, and whether every ARN
issued still answers GetCertificate (from Redis or the archive). With ``--plot`` it draws used_memory
and the archive's size over time (matplotlib, the ``bench`` extra). A benchmark prints figures.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.issuance import make_csrs, pct  # noqa: E402
from bench.stack import Client, Stack, activate_root, get_body, wait_for  # noqa: E402
from pcaq.platform.settings import load  # noqa: E402
from pcaq.records import Store  # noqa: E402


def process_cpu(root_pid: int) -> float:
    """CPU seconds (user + system) of a process and its children, alive or reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [root_pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == root_pid:
                pids.append(int(entry))
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / tick  # utime, stime, cutime, cstime
    return total


def archive_bytes(args, data_dir: Path) -> int:
    """The archive's size on disk: PostgreSQL's table with its indexes and TOAST, or the files."""
    if args.archive_url:
        import psycopg

        with psycopg.connect(args.archive_url) as conn:
            row = conn.execute("SELECT pg_total_relation_size('pcaq_records')").fetchone()
        return int(row[0]) if row else 0
    return sum(p.stat().st_size for p in (data_dir / "archive").glob("*.gz"))


class Issuer:
    """Threads that issue one certificate each ``threads / rate`` seconds, keeping ARNs and latencies."""

    def __init__(self, port: int, ca_arn: str, csrs: list[bytes], rate: float, validity: int, threads: int):
        self.port, self.ca_arn, self.csrs = port, ca_arn, csrs
        self.rate, self.validity, self.threads = rate, validity, threads
        self.arns: list[str] = []
        self.latencies: list[tuple[float, float]] = []  # (time answered, seconds)
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self, n: int) -> None:
        client = Client(self.port)
        start = time.monotonic()
        for i in range(n, len(self.csrs), self.threads):
            delay = start + i / self.rate - time.monotonic()
            if self.stop.wait(max(0.0, delay)):  # pacing of a steady rate
                return
            body = {
                "CertificateAuthorityArn": self.ca_arn,
                "Csr": base64.b64encode(self.csrs[i]).decode(),
                "SigningAlgorithm": "SHA256WITHECDSA",
                "Validity": {"Value": int(time.time()) + self.validity, "Type": "ABSOLUTE"},
            }
            t0 = time.monotonic()
            status, out = client.call("IssueCertificate", body)
            t1 = time.monotonic()
            with self.lock:
                if status == 200:
                    self.arns.append(out["CertificateArn"])
                    self.latencies.append((t1, t1 - t0))
                else:
                    self.errors += 1

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.run, args=(n,), daemon=True) for n in range(self.threads)]
        for thread in threads:
            thread.start()
        return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=20.0, help="certificates per second")
    parser.add_argument("--validity", type=int, default=120, help="seconds each certificate is valid")
    parser.add_argument("--retention", default="30s", help="PCAQ_RETENTION_AFTER_EXPIRY and _FAILED_")
    parser.add_argument("--archive-url", default=None, help="postgresql://...; default: the file archive")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between two samples")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of memory over time")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pcaq-soak-"))
    stack = Stack(None, workdir)
    stack.env.update(
        PCAQ_RETENTION_AFTER_EXPIRY=args.retention,
        PCAQ_FAILED_RETENTION=args.retention,
        **({"PCAQ_ARCHIVE_URL": args.archive_url} if args.archive_url else {}),
    )
    store = Store.from_settings(load({"REDIS_URL": stack.redis_url}))
    count = int(args.rate * args.minutes * 60)
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"# {count} P-256 certificates at {args.rate}/s, valid {args.validity} s, retention "
          f"{args.retention}, archive {'PostgreSQL' if args.archive_url else 'files'}, "
          f"{args.workers} worker processes")  # fmt: skip
    csrs = make_csrs(count)
    try:
        stack.start_api()
        stack.start_workers(args.workers)
        ca_arn = activate_root(Client(stack.port), "EC_prime256v1")
        worker_pid = stack.procs["worker"].pid
        cpu0, archiver_cpu0 = process_cpu(worker_pid), store.archiver_cpu_seconds()
        issuer = Issuer(stack.port, ca_arn, csrs, args.rate, args.validity, threads=4)
        threads = issuer.start()
        started = time.monotonic()
        samples = []  # (seconds, used_memory, held, archived, removed, archive bytes)
        print("   t s   used_memory   held  archived  removed  archive MB  issue p99 ms")
        while any(t.is_alive() for t in threads) or time.monotonic() - started < 10:
            time.sleep(args.every)  # the sampling period of a time series, not a wait for a state
            now = time.monotonic() - started
            counts = store.retention_counts()
            used = int(stack.r.info("memory")["used_memory"])
            size = archive_bytes(args, workdir)
            with issuer.lock:
                recent = [s for at, s in issuer.latencies if at >= time.monotonic() - args.every]
            p99 = pct(recent, 0.99) * 1000 if recent else float("nan")
            samples.append(
                (now, used, counts.retained + counts.backlog, counts.archived, counts.removed, size)
            )
            print(f"{now:6.0f} {used:13,d} {counts.retained + counts.backlog:6d} {counts.archived:9d} "
                  f"{counts.removed:8d} {size / 1e6:11.2f} {p99:13.1f}", flush=True)  # fmt: skip
        elapsed = time.monotonic() - started
        wait_for(lambda: store.retention_counts().backlog == 0, 60, "the archive to catch up")
        counts = store.retention_counts()
        cpu = process_cpu(worker_pid) - cpu0
        archiver_cpu = store.archiver_cpu_seconds() - archiver_cpu0
        size = archive_bytes(args, workdir)
        print(
            f"# issued {len(issuer.arns)} ({issuer.errors} errors) in {elapsed:.0f} s; "
            f"archived {counts.archived} ({counts.archived / elapsed:.1f}/s), removed {counts.removed}"
        )
        print(f"# archive: {size:,d} bytes, {size / max(1, counts.archived):.0f} bytes per record")
        print(
            f"# worker CPU {cpu:.1f} s, archiver {archiver_cpu:.2f} s = {100 * archiver_cpu / cpu:.1f}% of it"
        )
        tail = [s[1] for s in samples if s[0] >= samples[-1][0] / 2]
        print(f"# used_memory over the second half: min {min(tail):,d}, max {max(tail):,d}")  # fmt: skip
        client = Client(stack.port)
        asked = time.monotonic()
        answered = sum(
            1 for arn in issuer.arns if client.call("GetCertificate", get_body(ca_arn, arn))[0] == 200
        )
        print(f"# GetCertificate answered for {answered} of {len(issuer.arns)} ARNs issued "
              f"({counts.removed} of them from the archive) in {time.monotonic() - asked:.1f} s")  # fmt: skip
        if args.plot:
            plot(samples, args.plot)
            print(f"# plot written to {args.plot}")
    finally:
        stack.close()


def plot(samples: list[tuple], path: Path) -> None:
    """used_memory and the archive's size against time, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] / 60 for s in samples]
    fig, left = plt.subplots(figsize=(8, 4))
    left.plot(t, [s[1] / 1e6 for s in samples], color="tab:red", label="Redis used_memory (MB)")
    left.set_xlabel("minutes")
    left.set_ylabel("Redis used_memory (MB)")
    left.set_ylim(bottom=0)
    right = left.twinx()
    right.plot(t, [s[5] / 1e6 for s in samples], color="tab:blue", label="archive size (MB)")
    right.set_ylabel("archive size (MB)")
    right.set_ylim(bottom=0)
    fig.legend(loc="lower right", bbox_to_anchor=(0.88, 0.15))
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
