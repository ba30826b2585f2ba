"""Signatures a second: CA keys in a PKCS#11 token (SoftHSM2) against software keys, per key type.

    SOFTHSM2_CONF=... python bench/hsm_signing.py --module /usr/lib/softhsm/libsofthsm2.so \\
        --label pcaq-bench --pin 1234 [--seconds 2]

For each key type it signs the same 32-byte digest-sized message for ``--seconds`` in one process, one
thread, first with a software key (cryptography), then through pcaq's token key object (the token's
session kept, as a worker keeps it), and prints signatures a second, the mean time per signature and
the ratio. It also signs whole leaf certificates (cryptography's builder, key in the token) to show
what the builder adds. A token with keys labelled ``pcaq-bench-*`` left from an earlier run is fine.
No assertion: a benchmark prints figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID

from pcaq.ca.pkcs11_keys import token_key
from pcaq.ca.pkcs11_token import Token
from pcaq.pki import keys

KEY_TYPES = ["EC_prime256v1", "EC_secp384r1", "EC_secp521r1", "RSA_2048", "RSA_3072", "RSA_4096"]
MESSAGE = b"m" * 32


def _sign_once(key, key_algorithm: str) -> None:
    if key_algorithm.startswith("RSA"):
        key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))


def rate(key, key_algorithm: str, seconds: float) -> tuple[float, float]:
    """Signatures a second and mean milliseconds per signature, over ``seconds``."""
    _sign_once(key, key_algorithm)  # warm: the token's key handle is found once
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        _sign_once(key, key_algorithm)
        n += 1
    return n / elapsed, 1000 * elapsed / n


def certificates_rate(key, seconds: float) -> float:
    """Leaf certificates a second built and signed by cryptography with ``key``."""
    leaf = ec.generate_private_key(ec.SECP256R1()).public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example.com")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(leaf)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
    )
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        builder.serial_number(n + 1).sign(key, hashes.SHA256())
        n += 1
    return n / elapsed


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", default=os.environ.get("PCAQ_PKCS11_MODULE"), required=False)
    parser.add_argument("--label", default=os.environ.get("PCAQ_PKCS11_TOKEN_LABEL"))
    parser.add_argument("--pin", default=os.environ.get("PCAQ_PKCS11_PIN"))
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if not (args.module and args.label and args.pin):
        raise SystemExit("give --module, --label and --pin (or the PCAQ_PKCS11_* variables)")
    token = Token(Path(args.module), args.label, args.pin)
    print(
        f"# {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, python {platform.python_version()}"
    )
    print(
        f"# {args.seconds:.1f} s per figure, one process, one thread; token {args.label!r} via {args.module}"
    )
    print(f"{'key':<15}{'software/s':>12}{'token/s':>10}{'token ms':>10}{'ratio':>8}{'certs/s token':>15}")
    for key_algorithm in KEY_TYPES:
        software = keys.generate_private_key(key_algorithm)
        ca_id = str(uuid.uuid4())
        in_token = token_key(token, ca_id, token.generate(ca_id, key_algorithm))
        soft_rate, _ = rate(software, key_algorithm, args.seconds)
        token_rate, token_ms = rate(in_token, key_algorithm, args.seconds)
        certs = certificates_rate(in_token, args.seconds / 2)
        print(
            f"{key_algorithm:<15}{soft_rate:>12.0f}{token_rate:>10.0f}{token_ms:>10.3f}"
            f"{soft_rate / token_rate:>8.1f}{certs:>15.0f}"
        )


if __name__ == "__main__":
    main()
