"""How long the console's certificate pages take for a CA with many certificates, against one with few.

Fills two CAs through the record store's own submit, claim and commit (so the indexes are written as
the workers write them), then times the pages through the Flask application (no HTTP server):
the first page, a page deep in the list (from a cursor), a search by name prefix, a serial lookup and
the expiring filter. Use a Redis database of its own: it is emptied first.

    python bench/console_pages.py --redis-url redis://127.0.0.1:6379/9 [--count 1000000]
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
import uuid

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pcaq.api.app import create_app
from pcaq.platform.settings import load
from pcaq.records import Result, Store

ACCOUNT = "123456789012"  # open development mode's account
BATCH = 2000


def _der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _ca(store: Store) -> str:
    ca_id = str(uuid.uuid4())
    doc = {
        "Arn": f"arn:aws:acm-pca:us-east-1:{ACCOUNT}:certificate-authority/{ca_id}",
        "OwnerAccount": ACCOUNT,
        "CreatedAt": time.time(),
        "LastStateChangeAt": time.time(),
        "Type": "ROOT",
        "Status": "ACTIVE",
        "CertificateAuthorityConfiguration": {
            "KeyAlgorithm": "EC_prime256v1",
            "SigningAlgorithm": "SHA256WITHECDSA",
            "Subject": {"CommonName": f"bench {ca_id[:8]}"},
        },
        "RevocationConfiguration": {},
        "KeyStorageSecurityStandard": "FIPS_140_2_LEVEL_3_OR_HIGHER",
        "UsageMode": "GENERAL_PURPOSE",
        "internal": {"tags": []},
    }
    store.create_ca(ca_id, doc, ACCOUNT, None, None)
    return ca_id


def _fill(store: Store, ca_id: str, count: int, der: bytes) -> None:
    now = time.time()
    for start in range(0, count, BATCH):
        serials = [f"{start + i:032x}" for i in range(min(BATCH, count - start))]
        for serial in serials:
            store.submit_certificate(ca_id, ACCOUNT, serial, b"req", None)
        claimed = store.claim_ready("bench", len(serials))
        store.commit(
            "bench",
            [
                Result(
                    m,
                    True,
                    der,
                    "",
                    None,
                    (f"host-{m[-8:]}.example.com",),
                    now + int(m[-6:], 16) % 86400 * 90,
                )
                for m, _ in claimed
            ],
        )


def _time(client, path: str, runs: int) -> float:
    """Median milliseconds of GET path."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    redis.Redis.from_url(args.redis_url).flushdb()
    settings = load({"REDIS_URL": args.redis_url})
    store = Store.from_settings(settings)
    der = _der()
    small, large = _ca(store), _ca(store)
    _fill(store, small, 10, der)
    started = time.perf_counter()
    _fill(store, large, args.count, der)
    fill_seconds = time.perf_counter() - started
    client = create_app(settings).test_client()
    client.get("/console/")  # the session of open development mode
    rows = {}
    for name, ca_id, n in (("small", small, 10), ("large", large, args.count)):
        base = f"/console/cas/{ca_id}/certificates"
        middle = f"{n // 2:032x}"
        score = store.index_page(ca_id, "issued", 1)[0][1]
        rows[name] = {
            "certificates": n,
            "first page ms": _time(client, base, args.runs),
            "deep page ms": _time(client, f"{base}?after={score!r}:{middle}", args.runs),
            "name search ms": _time(client, f"{base}?q=host-{middle[-8:-2]}", args.runs),
            "serial ms": _time(client, f"{base}?q={middle}", args.runs),
            "expiring ms": _time(client, f"{base}?status=expiring&days=30", args.runs),
            "CA list ms": _time(client, "/console/", args.runs),
        }
    print(json.dumps({"fill seconds": round(fill_seconds, 1), **rows}, indent=1))


if __name__ == "__main__":
    main()
