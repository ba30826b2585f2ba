"""The issue's end-to-end figures against `pcaq up` itself, started the way a user starts it.

    python bench/against_up.py [--count 5000] [--runs 3] [--workers N] [--quick]

It starts `pcaq up` with its defaults (embedded Redis with its append-only file, a fresh data folder,
no REDIS_URL or PCAQ_* settings from this shell) in a session of its own, as from another terminal:
with the kernel's autogroup scheduling its processes then share the CPU as one group against the
clients'. Once it is ready it activates a P-256 root through the API and then, ``--runs`` times,
runs the raw loop and right after it has 8 keep-alive connections send one IssueCertificate per CSR
and poll GetCertificate until all are issued. It prints each run's end-to-end rate against the raw loop and
IssueCertificate's p50/p99, and which of the issue's targets the run meets. Beside the load client,
`pcaq bulk-issue` (the tool a user runs, as a child process with fake credentials) issues as many fresh
CSRs against the same service, after it in odd runs and before it in even ones: its rate, its ratio to
the load client's end-to-end rate, and the CPU per certificate (user and system) of the tool (its own
processes and their children) and of the load client. No assertion: a benchmark prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.issuance import TARGETS, judged, make_csrs, pct, poll_all, raw_loop, submit_all, verdict  # noqa: E402
from bench.stack import Client, activate_root, answers, free_port, wait_for  # noqa: E402

CA = "EC_prime256v1"
UP_TARGETS = {name: TARGETS[name] for name in ("e2e/raw", "p99")}  # what a run against pcaq up shows


class PcaqUp:
    """`pcaq up` as a child in a session of its own, with its own data folder; stopped with SIGINT."""

    def __init__(self, data_dir: Path, extra: list[str], settings: dict[str, str] | None = None):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PCAQ_", "REDIS_"))}
        env.update(PCAQ_DATA_DIR=str(data_dir), PCAQ_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO))
        env.update(settings or {})  # bench/replicated.py: which Redis, and how many replicas to wait for
        self.log = data_dir / "up.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pcaq.cli", "up", "--port", str(self.port), *extra],
            env=env,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=open(self.log, "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, 120, "pcaq up to be ready (see its log: " + str(self.log) + ")")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise SystemExit(
                f"bench: pcaq up exited ({self.proc.returncode}):\n{self.log.read_text()[-2000:]}"
            )
        return answers(self.port, "/readyz")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # as Ctrl-C in its terminal
        self.proc.wait(60)


def run_once(port: int, ca_arn: str, csrs: list[bytes], raw: float) -> dict:
    """One end-to-end run: its rate, latencies and the targets it meets."""
    start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    arns, latencies, submit_seconds = submit_all(port, ca_arn, "SHA256WITHECDSA", csrs)
    polls = poll_all(port, ca_arn, arns)
    seconds = time.perf_counter() - start
    used = resource.getrusage(resource.RUSAGE_SELF)
    row = {
        # The load client's own CPU (this process does nothing else meanwhile), beside the tool's.
        "load_user_us": 1e6 * (used.ru_utime - cpu.ru_utime) / len(arns),
        "load_system_us": 1e6 * (used.ru_stime - cpu.ru_stime) / len(arns),
        "raw": raw,
        "e2e": len(arns) / seconds,
        "submit": len(arns) / submit_seconds,
        "p50_ms": pct(latencies, 0.50) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "polls_per_cert": polls / len(arns),
        "count": len(arns),
    }
    return judged(row, UP_TARGETS)


# The bulk tool's AWS environment: fixed keys (pcaq up's open mode accepts any signature), no user files.
BULK_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


def run_tool(
    port: int, ca_arn: str, csr_dir: Path, out: Path, options: list[str], prefix: tuple = ()
) -> dict:
    """`pcaq bulk-issue` over the CSRs in ``csr_dir`` against the service on ``port`` (its command after
    ``prefix``, e.g. ``taskset``): the rate as the tool computed it, certificates issued, and its CPU per
    certificate in microseconds (user, system; its own processes and their children)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PCAQ_", "REDIS_"))} | BULK_ENV
    command = [*prefix, sys.executable, "-m", "pcaq.cli", "bulk-issue", "--ca", ca_arn, "--quiet"]
    command += ["--csr-dir", str(csr_dir), "--out", str(out), "--endpoint-url", f"http://127.0.0.1:{port}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([*command, *options], env=env, capture_output=True, text=True, timeout=1800)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"bench: pcaq bulk-issue failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    summary = done.stdout.strip().splitlines()[0]  # "issued N, failed 0, skipped 0 in S s (R/s)"
    issued = int(summary.split()[1].rstrip(","))
    return {
        # The rate as the tool computed it: S is rounded to a tenth of a second, too coarse for a run of one.
        "rate": float(summary.rsplit("(", 1)[1].split("/s")[0]),
        "issued": issued,
        "user_us": 1e6 * (after.ru_utime - before.ru_utime) / issued,
        "system_us": 1e6 * (after.ru_stime - before.ru_stime) / issued,
    }


def bulk_run(port: int, ca_arn: str, csrs: list[bytes], folder: Path, options: list[str]) -> dict:
    """`pcaq bulk-issue` over ``csrs`` (written to ``folder``) against the service on ``port``: its
    rate and its CPU per certificate, as the row's ``bulk`` figures."""
    (folder / "csrs").mkdir(parents=True)
    for i, csr in enumerate(csrs):
        (folder / "csrs" / f"c{i:06d}.csr").write_bytes(csr)
    tool = run_tool(port, ca_arn, folder / "csrs", folder / "out", options)
    return {"bulk": tool["rate"], "bulk_user_us": tool["user_us"], "bulk_system_us": tool["system_us"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000, help="certificates per run")
    parser.add_argument("--runs", type=int, default=3, help="end-to-end runs against one pcaq up")
    parser.add_argument("--workers", type=int, default=None, help="pcaq up --workers (default: its own)")
    parser.add_argument(
        "--bulk-options",
        default="",
        help="options for pcaq bulk-issue, e.g. '--processes 2 --concurrency 16'",
    )
    parser.add_argument("--quick", action="store_true", help="tiny run (a smoke test of the benchmark)")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.runs = 100, 1
    if not shutil.which("redis-server"):
        raise SystemExit("bench: redis-server is not installed (pcaq up would fall back to a slow Redis)")
    extra = [] if args.workers is None else ["--workers", str(args.workers)]
    print(f"making {args.count} P-256 CSRs ...", flush=True)
    csrs = make_csrs(args.count)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pcaq-bench-up-") as tmp:
        up = PcaqUp(Path(tmp), extra)
        try:
            ca_arn = activate_root(Client(up.port), CA)
            print(
                f"machine: {platform.platform()}, {os.cpu_count()} cores; pcaq up {' '.join(extra) or '(defaults)'}"
            )
            print("targets: " + ", ".join(shown for shown, _ in UP_TARGETS.values()))
            for number in range(1, args.runs + 1):
                # The raw loop right before each run: this machine's speed may drift between runs.
                raw = raw_loop(CA, csrs)
                # Fresh CSRs: the tool's idempotency tokens come from the CSR's bytes.
                fresh = make_csrs(args.count)
                folder = Path(tmp) / f"bulk{number}"
                # Every other run the tool goes first: neither client always meets a service that has
                # just taken a burst from the other.
                tool_first = number % 2 == 0
                options = args.bulk_options.split()
                if tool_first:
                    tool = bulk_run(up.port, ca_arn, fresh, folder, options)
                    row = run_once(up.port, ca_arn, csrs, raw)
                else:
                    row = run_once(up.port, ca_arn, csrs, raw)
                    tool = bulk_run(up.port, ca_arn, fresh, folder, options)
                row |= tool
                row["order"] = "tool first" if tool_first else "load client first"
                rows.append(row)
                print(
                    f"run {number}: raw {raw:.0f}/s, end to end {row['e2e']:.0f}/s = {row['e2e'] / raw:.2f} of it,"
                    f" IssueCertificate p50 {row['p50_ms']:.1f} ms p99 {row['p99_ms']:.1f} ms;"
                    f" {verdict(row['targets'])}",
                    flush=True,
                )
                print(
                    f"run {number}: pcaq bulk-issue {args.bulk_options or '(defaults)'} {row['bulk']:.0f}/s ="
                    f" {row['bulk'] / row['e2e']:.2f} of the load client's end to end ({row['order']}); CPU per"
                    f" certificate {row['bulk_user_us']:.0f} us user, {row['bulk_system_us']:.0f} us system"
                    f" (load client: {row['load_user_us']:.0f} us, {row['load_system_us']:.0f} us)",
                    flush=True,
                )
        finally:
            up.stop()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
