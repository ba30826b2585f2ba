"""What replication and ``PCAQ_REDIS_MIN_REPLICAS`` cost, and Redis's CPU and memory per certificate.

    python bench/replicated.py [--count 3000] [--runs 2] [--quick]

In one run, on one machine, ``pcaq up`` (``--workers 1``) is started three times against:

- **single**: one ``redis-server`` (append-only file, ``everysec``) over loopback TCP, through
  ``REDIS_URL``;
- **sentinel, 0**: a primary with two replicas and three Sentinels (bench/sentinel_cluster.py), found
  through ``PCAQ_REDIS_SENTINELS``, with ``PCAQ_REDIS_MIN_REPLICAS=0``;
- **sentinel, 1**: the same with ``PCAQ_REDIS_MIN_REPLICAS=1`` (every answered write waits for a replica).

Each gets a P-256 root and then ``--runs`` times: 8 keep-alive connections send one IssueCertificate
per CSR and poll GetCertificate until all are issued (bench/issuance.py). Around each run it reads, per
certificate: the primary's CPU (user + system, from /proc), the replicas' CPU, the primary's
``used_memory`` growth, the replication stream (``master_repl_offset``), and the primary's own time per
command family (``INFO commandstats``: scripts are submit, claim and commit; HMGET is the poll; the
rest is the Celery queue, heartbeats and the sweeper). No assertion: a benchmark prints figures.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.against_up import CA, PcaqUp, run_once  # noqa: E402
from bench.cpu import tree_seconds  # noqa: E402
from bench.issuance import make_csrs, raw_loop  # noqa: E402
from bench.sentinel_cluster import Node, SentinelCluster  # noqa: E402
from bench.stack import Client, activate_root, free_port  # noqa: E402

ROLES = {"api": "granian", "worker": "celery"}
FAMILIES = {"evalsha": "scripts", "eval": "scripts", "hmget": "poll"}  # any other command: "other"


def _service_roots(up: PcaqUp) -> dict[str, int]:
    """The API (granian) and worker (celery) children of ``pcaq up``, by role."""
    roots = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if int(stat[1]) == up.proc.pid:
                roots.update({role: int(entry.name) for role, marker in ROLES.items() if marker in cmdline})
    return roots


def _redis_figures(primary: Node, replicas: list[Node], roots: dict[str, int]) -> dict:
    with primary.client() as client:
        memory = client.info("memory")["used_memory"]
        offset = client.info("replication")["master_repl_offset"]
        stats = client.info("commandstats")
    families: dict[str, float] = {}
    for name, stat in stats.items():
        family = FAMILIES.get(name.removeprefix("cmdstat_"), "other")
        families[family] = families.get(family, 0.0) + float(stat["usec"])
    return {
        "primary_cpu": tree_seconds(primary.proc.pid),
        "replica_cpu": sum(tree_seconds(node.proc.pid) for node in replicas),
        **{f"{role}_cpu": tree_seconds(pid) for role, pid in roots.items()},
        "memory": memory,
        "stream": offset,
        **{f"usec_{k}": v for k, v in families.items()},
    }


def _per_cert(before: dict, after: dict, count: int) -> dict:
    return {
        "redis_us": 1e6 * (after["primary_cpu"] - before["primary_cpu"]) / count,
        "replicas_us": 1e6 * (after["replica_cpu"] - before["replica_cpu"]) / count,
        **{f"{role}_us": 1e6 * (after[f"{role}_cpu"] - before[f"{role}_cpu"]) / count for role in ROLES},
        "bytes": (after["memory"] - before["memory"]) / count,
        "stream_bytes": (after["stream"] - before["stream"]) / count,
        **{
            key.removeprefix("usec_") + "_us": (after.get(key, 0.0) - before.get(key, 0.0)) / count
            for key in after
            if key.startswith("usec_")
        },
    }


def _measure(
    name: str,
    settings: dict[str, str],
    primary: Node,
    replicas: list[Node],
    csrs,
    runs,
    tmp,
    raw_seconds: float,
) -> list:
    rows = []
    up = PcaqUp(Path(tempfile.mkdtemp(dir=tmp)), ["--workers", "1"], settings)
    try:
        ca_arn = activate_root(Client(up.port), CA)
        for number in range(1, runs + 1):
            raw = raw_loop(CA, csrs, raw_seconds)  # this VM's speed now, against which the run is read
            with primary.client() as client:
                client.config_resetstat()
            roots = _service_roots(up)
            before = _redis_figures(primary, replicas, roots)
            row = run_once(up.port, ca_arn, csrs, raw)
            time.sleep(0.5)  # the last commits' replication and the replicas' acks land in the figures
            row |= _per_cert(before, _redis_figures(primary, replicas, roots), len(csrs))
            row["setup"] = name
            rows.append(row)
            print(
                f"{name} run {number}: raw {row['raw']:.0f}/s, end to end {row['e2e']:.0f}/s, IssueCertificate p50 {row['p50_ms']:.1f} ms"
                f" p99 {row['p99_ms']:.1f} ms; Redis primary {row['redis_us']:.0f} us CPU/cert (scripts"
                f" {row.get('scripts_us', 0):.0f}, poll {row.get('poll_us', 0):.0f}, other {row.get('other_us', 0):.0f}"
                f" us of command time), replicas {row['replicas_us']:.0f} us/cert together,"
                f" memory {row['bytes']:.0f} B/cert, replication stream {row['stream_bytes']:.0f} B/cert;"
                f" API {row['api_us']:.0f} us/cert, worker {row['worker_us']:.0f} us/cert",
                flush=True,
            )
    finally:
        up.stop()
    return rows


def _single(folder: Path) -> Node:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", ".", "--appendonly", "yes"]
    argv += [
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--logfile",
        "redis.log",
    ]
    node = Node(folder, port, argv)
    node.start()
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=3000, help="certificates per run")
    parser.add_argument("--runs", type=int, default=2, help="runs per setup")
    parser.add_argument("--quick", action="store_true", help="tiny run (a smoke test of the benchmark)")
    args = parser.parse_args(argv)
    raw_seconds = 3.0
    if args.quick:
        args.count, args.runs, raw_seconds = 100, 1, 0.5
    if not shutil.which("redis-server"):
        raise SystemExit("bench: redis-server is not installed")
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores; making {args.count} P-256 CSRs ...",
        flush=True,
    )
    csrs = make_csrs(args.count)
    key = {
        "PCAQ_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()
    }  # one key: the setups share a cluster
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="pcaq-bench-ha-") as tmp:
        single = _single(Path(tmp) / "single")
        try:
            rows += _measure(
                "single", {"REDIS_URL": single.url, **key}, single, [], csrs, args.runs, tmp, raw_seconds
            )
        finally:
            single.stop()
        cluster = SentinelCluster(Path(tmp) / "cluster")
        try:
            cluster.start()
            primary, replicas = cluster.data[0], cluster.data[1:]
            for wait in ("0", "1"):
                settings = {
                    "PCAQ_REDIS_SENTINELS": cluster.sentinel_setting,
                    "PCAQ_REDIS_MIN_REPLICAS": wait,
                    **key,
                }
                rows += _measure(
                    f"sentinel, {wait}", settings, primary, replicas, csrs, args.runs, tmp, raw_seconds
                )
        finally:
            cluster.stop()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
