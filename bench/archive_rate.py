"""How fast the archive takes records: the archiver's whole step (Redis queue -> archive -> retention
index) over a standing backlog, for the file archive and PostgreSQL.

    python bench/archive_rate.py [--records 20000] [--batch 500] [--archive-url postgresql://...]

It fills a private Redis (a ``redis-server`` on a Unix socket) with finished records of real P-256
certificates through the commit script, as workers do, then runs ``archive_step`` until the queue is
empty and prints records a second and CPU microseconds per record (this process: the archiver's own
work, not Redis's or PostgreSQL's), and the archive's bytes per record. Then it removes them all, as
retention does once they are due, and prints how long one removal slice holds Redis. A benchmark
prints figures.
"""

from __future__ import annotations

import argparse
import datetime
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

from bench.stack import wait_for  # noqa: E402
from pcaq.archive import open_archive  # noqa: E402
from pcaq.platform.settings import load  # noqa: E402
from pcaq.records import Store  # noqa: E402
from pcaq.records.retention import REMOVE_SLICE  # noqa: E402
from pcaq.worker.archiver import archive_step  # noqa: E402


def certificate(issuer_key, n: int) -> bytes:
    """A P-256 leaf of a fresh key, signed by ``issuer_key`` (as big as the ones pcaq issues)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"device-{n}.example.com")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench root")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"device-{n}.example.com")]), False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--archive-url", default=None)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="pcaq-archive-rate-"))
    sock = workdir / "redis.sock"
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"unix://{sock}?db=0"
        wait_for(lambda: sock.exists(), 10, "redis-server")
        env = {"REDIS_URL": url, "PCAQ_DATA_DIR": str(workdir), "PCAQ_ARCHIVE_BATCH": str(args.batch)}
        if args.archive_url:
            env["PCAQ_ARCHIVE_URL"] = args.archive_url
        settings = load(env)
        store = Store(redis.Redis.from_url(url), settings)
        issuer = ec.generate_private_key(ec.SECP256R1())
        # One certificate each: repeated ones would flatter the file archive's compression.
        ders = [certificate(issuer, n) for n in range(args.records)]
        for first in range(0, args.records, 100):
            serials = [f"{n:032x}" for n in range(first, min(first + 100, args.records))]
            for serial in serials:
                store.submit_certificate("bench-ca", "123456789012", serial, b"{}", None)
            leased = store.claim_ready("bench", 100)
            store.commit("bench", [(m, True, ders[int(m.rsplit(":", 1)[1], 16)]) for m, _ in leased])
        archive = open_archive(settings)
        wall, cpu, done = time.perf_counter(), time.process_time(), 0
        while n := archive_step(store, archive, settings):
            done += n
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if args.archive_url:
            import psycopg

            with psycopg.connect(args.archive_url) as conn:
                size = conn.execute("SELECT pg_total_relation_size('pcaq_records')").fetchone()[0]
        else:
            size = sum(p.stat().st_size for p in settings.archive_dir.glob("*.gz"))
        kind = "PostgreSQL" if args.archive_url else "files"
        assert store.get_certificate("bench-ca", f"{0:032x}") is not None
        assert archive.get("bench-ca", f"{args.records - 1:032x}") is not None  # the last one is there
        print(f"{kind}: {done} records in {wall:.2f} s = {done / wall:,.0f} records/s; "
              f"{1e6 * cpu / done:.0f} us CPU per record in the archiver; "
              f"{size / done:.0f} bytes per record on disk (batch {args.batch})")  # fmt: skip
        # Removal: how long Redis is held by one slice of the removal script (what an IssueCertificate
        # arriving meanwhile may wait), over the same records once due.
        store.clock = lambda: time.time() + 40 * 86400
        members = store.due_for_removal(store.clock(), args.records)
        held = []
        for first in range(0, len(members), REMOVE_SLICE):
            t0 = time.perf_counter()
            store.remove_records(members[first : first + REMOVE_SLICE])
            held.append(time.perf_counter() - t0)
        print(f"removal: {len(members)} records in {sum(held):.2f} s = {len(members) / sum(held):,.0f} "
              f"records/s; one slice of {REMOVE_SLICE} (one call, round trip included): median "
              f"{1e3 * sorted(held)[len(held) // 2]:.2f} ms, max {1e3 * max(held):.2f} ms")  # fmt: skip
        archive.close()
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
