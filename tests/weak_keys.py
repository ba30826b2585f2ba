"""Weak RSA keys made from chosen primes, for the tests of the weak-key checks (unit and integration).

Close primes (Fermat), primes of the form k*M + 65537^a mod M (ROCA, the Infineon structure) and a
small prime factor.
"""

from __future__ import annotations

import secrets

import gmpy2
from cryptography.hazmat.primitives.asymmetric import rsa

E = 65537

# The modulus of badkeys' (and the ROCA paper's) fingerprint test: a product of small prime powers.
_ROCA_M = 0x924CBA6AE99DFA084537FACC54948DF0C23DA044D8CABE0EDD75BC6


def rsa_from_primes(p: int, q: int) -> rsa.RSAPrivateKey:
    """An RSA private key with the given primes (no sanity check: weak keys are the point)."""
    n, d = p * q, pow(E, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(E, n)
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _usable(candidate: int, bits: int) -> bool:
    return candidate.bit_length() == bits and gmpy2.is_prime(candidate) and gmpy2.gcd(E, candidate - 1) == 1


def _prime(bits: int) -> int:
    while True:
        candidate = int(gmpy2.next_prime(secrets.randbits(bits) | (3 << (bits - 2))))
        if _usable(candidate, bits):
            return candidate


def fermat_key() -> rsa.RSAPrivateKey:
    """RSA-2048 whose primes differ by about 2^256: Fermat's method factors it at once."""
    p = _prime(1024)
    q = int(gmpy2.next_prime(p + secrets.randbits(256)))
    while not _usable(q, 1024):
        q = int(gmpy2.next_prime(q))
    return rsa_from_primes(p, q)


def _roca_prime(bits: int) -> int:
    # p in [sqrt(2) * 2^(bits-1), 2^bits), so that the product of two has exactly 2 * bits bits
    low, high = (gmpy2.isqrt(2 << (2 * bits - 2)) + _ROCA_M) // _ROCA_M, (1 << bits) // _ROCA_M
    while True:
        k = low + secrets.randbelow(int(high - low))
        candidate = int(k * _ROCA_M + pow(E, secrets.randbelow(2**62), _ROCA_M))
        if _usable(candidate, bits):
            return candidate


def roca_key() -> rsa.RSAPrivateKey:
    """RSA-2048 with the structure of Infineon's vulnerable key generator (CVE-2017-15361)."""
    return rsa_from_primes(_roca_prime(1024), _roca_prime(1024))


def small_factor_key() -> rsa.RSAPrivateKey:
    """An RSA modulus of 2048 bits with the prime factor 65521."""
    while True:
        q = _prime(2033)
        if (65521 * q).bit_length() >= 2048:
            return rsa_from_primes(65521, q)
