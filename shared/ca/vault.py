"""CA private keys at rest, encrypted under a key-encryption key (docs/security.md).

The key-encryption key (KEK, "master key") never lives in Redis: it comes from ``PCAQ_MASTER_KEY``,
from the file named by ``PCAQ_MASTER_KEY_FILE``, or from ``<data dir>/master.key``. Each CA key is
stored as ``version byte || 96-bit nonce || AES-256-GCM(PKCS#8 PEM)`` with the CA id as associated
data, so a blob copied onto another CA does not open. A known-plaintext check value stored once lets
:func:`verify_master_key` detect a changed master key at startup instead of silently minting a new one.

Nothing here logs or formats key material; messages name paths and CA ids only.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pcaq.errors import MasterKeyError, NotFound
from pcaq.pki import keys
from pcaq.platform.settings import Settings

log = logging.getLogger(__name__)

KEK_BYTES = 32
_VERSION = b"\x01"
_NONCE_BYTES = 12
_CA_KEY_AAD = b"pcaq/ca-key/v1/"
_CHECK_AAD = b"pcaq/kek-check/v1"
_CHECK_PLAINTEXT = b"pcaq key-encryption-key check, version 1"
_HOW_TO_SET = "set PCAQ_MASTER_KEY (base64 of 32 bytes) or PCAQ_MASTER_KEY_FILE"


def _parse_key_text(text: str, source: str) -> bytes:
    """Decode 32 key bytes from 64 hex digits or standard/urlsafe base64. Never echoes the text."""
    text = text.strip()
    if len(text) == 2 * KEK_BYTES and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    normalised = text.replace("-", "+").replace("_", "/")
    normalised += "=" * (-len(normalised) % 4)
    try:
        raw = base64.b64decode(normalised, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEK_BYTES:
        raise MasterKeyError(
            f"the master key from {source} is malformed: it must be 32 bytes written as base64 "
            "(standard or urlsafe) or as 64 hex digits"
        )
    return raw


def _read_key_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as exc:
        raise MasterKeyError(f"the master key file {path} is malformed: it must be ASCII text") from exc
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {path}: {exc.strerror}") from exc
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            log.warning("master key file %s is readable by group or others; chmod 600 it", path)
    except OSError:
        pass
    return _parse_key_text(text, f"file {path}")


def _create_key_file(path: Path) -> bytes:
    """Write a fresh random KEK to ``path`` with mode 0600; if another process won the race, read its."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(KEK_BYTES)
    try:
        # O_EXCL: two processes starting together must end up with one key, not overwrite each other.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key_file(path)
    except OSError as exc:
        raise MasterKeyError(f"cannot create the master key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(base64.b64encode(key).decode("ascii") + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    log.info("created a new master key file at %s", path)
    return key


def load_master_key(settings: Settings, create: bool = False) -> tuple[bytes, Path | None]:
    """The 32-byte KEK and the file it came from (``None`` when it came from ``PCAQ_MASTER_KEY``).

    Order: ``settings.master_key``, then the file ``settings.master_key_file`` (which must exist),
    then ``settings.data_dir / "master.key"``, which is created with mode 0600 when ``create`` is true.
    Raises :class:`MasterKeyError` when no key is found or the key text is malformed.
    """
    if settings.master_key:
        return _parse_key_text(settings.master_key, "PCAQ_MASTER_KEY"), None
    if settings.master_key_file is not None:
        # An explicitly named file is never created: a missing secret mount must not mint a new KEK.
        path = Path(settings.master_key_file)
        if not path.exists():
            raise MasterKeyError(f"PCAQ_MASTER_KEY_FILE names {path}, which does not exist")
        return _read_key_file(path), path
    path = Path(settings.data_dir) / "master.key"
    if path.exists():
        return _read_key_file(path), path
    if create:
        return _create_key_file(path), path
    raise MasterKeyError(f"no master key found (looked for {path}); {_HOW_TO_SET}")


class KeyVault(Protocol):
    """Custody of CA private keys; the worker signs through this interface only. Implemented for
    software keys here and, with PKCS#11 token keys beside them, by ``pcaq.ca.key_store.CaKeys``."""

    def generate(self, ca_id: str, key_algorithm: str, storage: str) -> Any:
        """A new private key for CA ``ca_id`` (``storage``: where, as ``pcaq.ca.key_policy`` decided)."""
        ...

    def put(self, ca_id: str, private_key: Any) -> None:
        """Store the private key of CA ``ca_id``."""
        ...

    def seal(self, ca_id: str, private_key: Any) -> bytes:
        """The private key of CA ``ca_id`` encrypted for storage, for the record store to store in
        the same atomic step as the CA's state change (``Authorities.key_generated``)."""
        ...

    def get(self, ca_id: str) -> Any:
        """The private key of CA ``ca_id``; :class:`NotFound` if none is stored."""
        ...

    def discard(self, ca_id: str, private_key: Any) -> None:
        """Destroy a key made for CA ``ca_id`` that no record came to point to."""
        ...


class _Sealer:
    """AES-256-GCM with a version prefix. Holds the KEK only inside the AESGCM object."""

    __slots__ = ("_aead",)

    def __init__(self, kek: bytes):
        if not isinstance(kek, bytes | bytearray) or len(kek) != KEK_BYTES:
            raise MasterKeyError(f"the master key must be exactly {KEK_BYTES} bytes")
        self._aead = AESGCM(bytes(kek))

    def __repr__(self) -> str:
        return "<sealer>"

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or ``None`` if the blob is not ours or does not authenticate."""
        if len(blob) < 1 + _NONCE_BYTES + 16 or blob[:1] != _VERSION:
            return None
        nonce, ciphertext = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            return None


def _ca_aad(ca_id: str) -> bytes:
    return _CA_KEY_AAD + ca_id.encode("utf-8")


class EncryptedRedisVault(KeyVault):
    """A :class:`KeyVault` keeping AES-256-GCM-encrypted PKCS#8 keys in the record store.

    ``store`` needs ``put_ca_key(ca_id, blob)``, ``get_ca_key(ca_id) -> bytes | None``,
    ``kek_check() -> bytes | None`` and ``init_kek_check(blob) -> bool`` (SET NX semantics).
    Decrypted keys are cached in-process because signing is the hot path.
    """

    def __init__(self, store: Any, kek: bytes):
        self._store = store
        self._sealer = _Sealer(kek)
        self._cache: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"EncryptedRedisVault(store={type(self._store).__name__}, cached_keys={len(self._cache)})"

    def generate(self, ca_id: str, key_algorithm: str, storage: str = "SOFTWARE") -> Any:
        """A new software private key for CA ``ca_id`` (this vault keeps no other kind)."""
        if storage != "SOFTWARE":
            raise MasterKeyError(f"CA {ca_id} is to keep its key in a PKCS#11 token; this vault has none")
        return keys.generate_private_key(key_algorithm)

    def put(self, ca_id: str, private_key: Any) -> None:
        """Encrypt and store the private key of CA ``ca_id`` (bound to that id)."""
        self._store.put_ca_key(ca_id, self.seal(ca_id, private_key))
        self._cache[ca_id] = private_key

    def seal(self, ca_id: str, private_key: Any) -> bytes:
        """The private key of CA ``ca_id`` encrypted (bound to that id), for the caller to store."""
        return self._sealer.seal(keys.private_key_to_pem(private_key), _ca_aad(ca_id))

    def cached(self, ca_id: str) -> Any | None:
        """The key of CA ``ca_id`` if this process has opened it already (no Redis read), else None."""
        return self._cache.get(ca_id)

    def get(self, ca_id: str) -> Any:
        """The private key of CA ``ca_id``.

        Raises :class:`NotFound` if no key is stored and :class:`MasterKeyError` if the master key
        does not open the stored blob.
        """
        cached = self._cache.get(ca_id)
        if cached is not None:
            return cached
        blob = self._store.get_ca_key(ca_id)
        if blob is None:
            raise NotFound(f"no private key is stored for CA {ca_id}")
        pem = self._sealer.open(bytes(blob), _ca_aad(ca_id))
        if pem is None:
            raise MasterKeyError(
                f"the master key does not open the stored key of CA {ca_id}; was PCAQ_MASTER_KEY changed?"
            )
        private_key = keys.load_private_key_pem(pem)
        self._cache[ca_id] = private_key
        return private_key

    def discard(self, ca_id: str, private_key: Any) -> None:
        """A software key that was never stored needs no destroying: only dropped from the cache."""
        self._cache.pop(ca_id, None)

    def forget(self, ca_id: str) -> None:
        """Drop a cached key (for example after the CA is deleted for good)."""
        self._cache.pop(ca_id, None)


def verify_master_key(store: Any, kek: bytes) -> None:
    """Check at startup that ``kek`` is the master key this store's data was written with.

    On first use an encrypted check value is stored (only if absent, so concurrent starters agree);
    afterwards the stored value must open with ``kek``, else :class:`MasterKeyError`.
    """
    sealer = _Sealer(kek)
    blob = store.kek_check()
    if blob is None:
        if store.init_kek_check(sealer.seal(_CHECK_PLAINTEXT, _CHECK_AAD)):
            return
        blob = store.kek_check()  # another process stored its check value first: verify against it
        if blob is None:
            raise MasterKeyError("the master key check value could not be stored or read back from Redis")
    if sealer.open(bytes(blob), _CHECK_AAD) != _CHECK_PLAINTEXT:
        raise MasterKeyError(
            "the master key does not open the data stored in Redis (its key check value fails); "
            "was PCAQ_MASTER_KEY or the master key file changed? Restore the original master key"
        )
