"""Weak and compromised public keys, refused before anything is signed for them.

Two sources:

- the ``badkeys`` library: for RSA its default checks (invalid exponent, small factors, ROCA,
  polynomial-pattern moduli, small private exponent, Fermat / close primes, primes shared with
  known-factored keys), and, for every key type, its blocklist of published compromised keys
  (Debian's weak OpenSSL keys, keys in firmware and documentation) when that list has been downloaded
  with ``badkeys --update-bl`` (it is not shipped with the package; without it the check is skipped
  and a warning is logged once);
- the operator's blocklist: SHA-256 fingerprints of SubjectPublicKeyInfo DER from the file named by
  ``PCAQ_KEY_BLOCKLIST_FILE`` and from a Redis set that ``pcaq blocklist add <pem file>`` adds to.

The worker calls :func:`refresh_blocklist` once per batch (one GET of a version counter; the set is
read again only when it changed) and ``csrs.check_csr`` calls :func:`check_public_key`.
Verdicts are cached per key fingerprint, so a key seen again costs one SHA-256. When no list could
name the key (the operator's blocklist is empty and badkeys' is not installed) and badkeys has no
other check for its type (every type but RSA), there is nothing to look up: no fingerprint is taken.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pcaq.errors import InvalidArgument

log = logging.getLogger("pcaq.key_checks")

# Cheapest first: a key is refused on the first finding. Costs per distinct RSA-2048 key on a 2-core
# development machine: rsainvalid, rsapoly, smalld, roca < 5 us; smallfactors ~85 us; fermat ~120 us;
# sharedprimes ~350 us (about 20 us for RSA-4096). All of them run.
RSA_CHECKS = ("rsainvalid", "rsapoly", "smalld", "roca", "smallfactors", "fermat", "sharedprimes")
_BLOCKLIST = "blocklist"
_FINGERPRINT = re.compile(r"(?:[0-9a-fA-F]{2}:){31}[0-9a-fA-F]{2}|[0-9a-fA-F]{64}")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\s.*?-----END \1-----", re.DOTALL)
_VERDICT_CACHE_SIZE = 65536
_ADVICE = "Generate a new key pair and a new CSR."


def spki_fingerprint(public_key: Any) -> str:
    """Lower-case hex SHA-256 of the key's SubjectPublicKeyInfo DER (what blocklists hold)."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


# -- the operator's blocklist ------------------------------------------------------------------


def fingerprints_in_text(text: str) -> set[str]:
    """Fingerprints named in ``text``: 64-hex SHA-256 values (colons allowed) and PEM blocks of public
    keys, certificates, CSRs or private keys (their public key's fingerprint). ValueError otherwise."""
    found: set[str] = set()
    for block in _PEM_BLOCK.finditer(text):
        found.add(spki_fingerprint(_public_key_of_pem(block.group(0), block.group(1))))
    rest = _PEM_BLOCK.sub("", text)
    for number, line in enumerate(rest.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _FINGERPRINT.fullmatch(line):
            raise ValueError(
                f"line {number} is neither a SHA-256 fingerprint (64 hex digits) nor inside a PEM block"
            )
        found.add(line.replace(":", "").lower())
    return found


def _public_key_of_pem(pem: str, label: str) -> Any:
    data = pem.encode("ascii", "replace")
    try:
        if label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            return serialization.load_pem_public_key(data)
        if label == "CERTIFICATE":
            return x509.load_pem_x509_certificate(data).public_key()
        if label in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"):
            return x509.load_pem_x509_csr(data).public_key()
        if label.endswith("PRIVATE KEY") and "ENCRYPTED" not in label:
            return serialization.load_pem_private_key(data, password=None).public_key()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"a PEM block {label} could not be read: {exc}") from None
    raise ValueError(f"a PEM block {label} holds no public key this tool can read")


class KeyBlocklist:
    """The operator's blocklist held in memory: the file's fingerprints plus the Redis set's."""

    def __init__(self) -> None:
        self.error: str | None = None  # set while a configured list cannot be read: refuse everything
        self._from_file: frozenset[str] = frozenset()
        self._from_store: frozenset[str] = frozenset()
        self._file_state: tuple | None = None
        self._store_version: int | None = None

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._from_store or fingerprint in self._from_file

    def __len__(self) -> int:
        return len(self._from_file | self._from_store)

    @property
    def empty(self) -> bool:
        """True when neither the file nor the Redis set names any key."""
        return not self._from_file and not self._from_store

    def refresh(self, path: Path | None, store: Any | None) -> None:
        """Re-read the file if it changed (by mtime and size) and the set if its version moved.

        A configured file that cannot be read or parsed must not silently turn into "allow all": until
        it can, :attr:`error` is set and :func:`check_public_key` refuses every key.
        """
        if path is None:
            self._from_file, self._file_state, self.error = frozenset(), None, None
        else:
            try:
                st = os.stat(path)
                state = (st.st_mtime_ns, st.st_size)
                if state != self._file_state:
                    self._from_file = frozenset(fingerprints_in_text(Path(path).read_text(encoding="utf-8")))
                    self._file_state = state
                    log.info("key blocklist file %s: %d fingerprints", path, len(self._from_file))
                self.error = None
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                if self.error is None:
                    log.error("PCAQ_KEY_BLOCKLIST_FILE %s cannot be used (%s); refusing to sign", path, exc)
                self._file_state = None
                self.error = "The key blocklist of this service cannot be read; ask its operator to fix it."
        if store is not None:
            version = store.blocklist_version()
            if version != self._store_version:
                self._from_store = frozenset(store.blocklist_members())
                self._store_version = version


_operator_blocklist = KeyBlocklist()


def refresh_blocklist(path: Path | None, store: Any | None) -> None:
    """Bring this process's copy of the operator's blocklist up to date (the worker, per batch)."""
    _operator_blocklist.refresh(path, store)


# -- badkeys -----------------------------------------------------------------------------------

_badkeys_blocklist: bool | None = None
_verdicts: dict[str, str | None] = {}


def badkeys_blocklist_available() -> bool:
    """True when badkeys' downloaded blocklist (``badkeys --update-bl``) is present."""
    global _badkeys_blocklist
    if _badkeys_blocklist is None:
        from badkeys.utils import _cachedir  # where badkeys keeps (and looks for) its blocklist

        folder = Path(_cachedir())
        _badkeys_blocklist = (folder / "blocklist.dat").is_file() and (folder / "badkeysdata.json").is_file()
        if not _badkeys_blocklist:
            log.warning(
                "badkeys' blocklist of compromised keys (Debian weak keys and others) is not installed in %s; "
                "run `badkeys --update-bl` as this user to enable it. The other key checks run.",
                folder,
            )
    return _badkeys_blocklist


def _badkeys_findings(public_key: Any) -> dict:
    import badkeys
    from badkeys import checks as bk

    use_blocklist = badkeys_blocklist_available()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            numbers = public_key.public_numbers()
            names = RSA_CHECKS + ((_BLOCKLIST,) if use_blocklist else ())
            return badkeys.checkrsa(numbers.n, e=numbers.e, checks=names)
        if not use_blocklist:
            return {}
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            return bk.checkall(public_key.public_numbers().x, checks=[_BLOCKLIST])
        if hasattr(public_key, "public_bytes_raw"):  # ML-DSA, Ed25519 and the like
            return bk.checkall(public_key.public_bytes_raw(), checks=[_BLOCKLIST])
    except SystemExit:
        # badkeys exits the process when its blocklist files are damaged: never let it end a worker.
        global _badkeys_blocklist
        _badkeys_blocklist = False
        log.error("badkeys' blocklist files are unreadable; its blocklist check is now off")
        return _badkeys_findings(public_key)
    return {}


def _describe(name: str, finding: Any) -> str:
    from badkeys.checks import allchecks

    text = allchecks.get(name, {}).get("desc", name)
    subtest = finding.get("subtest") if isinstance(finding, dict) else None
    return f"{text} ({name}{', ' + str(subtest) if subtest else ''})"


def weakness_of(public_key: Any, fingerprint: str | None = None) -> str | None:
    """Why ``public_key`` must not be certified, or None. Cached per fingerprint."""
    fingerprint = fingerprint or spki_fingerprint(public_key)
    if fingerprint in _verdicts:
        return _verdicts[fingerprint]
    findings = _badkeys_findings(public_key)
    verdict = None
    if findings:
        name = next((n for n in (*RSA_CHECKS, _BLOCKLIST) if n in findings), next(iter(findings)))
        verdict = _describe(name, findings[name])
    if len(_verdicts) >= _VERDICT_CACHE_SIZE:
        _verdicts.clear()
    _verdicts[fingerprint] = verdict
    return verdict


def check_public_key(public_key: Any) -> None:
    """Refuse (InvalidArgument, with the reason) a key on a blocklist or with a known weakness."""
    if _operator_blocklist.error:
        raise InvalidArgument(_operator_blocklist.error)
    if (
        _operator_blocklist.empty
        and not isinstance(public_key, rsa.RSAPublicKey)
        and not badkeys_blocklist_available()
    ):
        return  # no list to look the key up in, and badkeys checks only RSA keys otherwise
    fingerprint = spki_fingerprint(public_key)
    if fingerprint in _operator_blocklist:
        raise InvalidArgument(
            f"The CSR's public key is on this service's blocklist of compromised keys "
            f"(SubjectPublicKeyInfo SHA-256 {fingerprint}). {_ADVICE}"
        )
    verdict = weakness_of(public_key, fingerprint)
    if verdict:
        raise InvalidArgument(f"The CSR's public key is known to be weak: {verdict}. {_ADVICE}")
