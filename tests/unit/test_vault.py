"""CA keys at rest under the master key (pcaq.ca.vault; docs/security.md)."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from pcaq.ca import vault
from pcaq.errors import MasterKeyError, NotFound
from pcaq.pki import keys
from pcaq.platform.settings import Settings

KEK = bytes(range(32))
OTHER_KEK = bytes(range(1, 33))


class FakeStore:
    """The four store methods the vault uses, over dicts; counts reads of CA keys."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.check: bytes | None = None
        self.reads = 0

    def put_ca_key(self, ca_id: str, blob: bytes) -> None:
        self.blobs[ca_id] = blob

    def get_ca_key(self, ca_id: str) -> bytes | None:
        self.reads += 1
        return self.blobs.get(ca_id)

    def kek_check(self) -> bytes | None:
        return self.check

    def init_kek_check(self, blob: bytes) -> bool:
        if self.check is not None:
            return False
        self.check = blob
        return True


@pytest.fixture(scope="module")
def ec_key():
    return keys.generate_private_key("EC_prime256v1")


def _pem(key) -> bytes:
    return keys.private_key_to_pem(key)


# --- load_master_key ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(KEK).decode(),
        base64.urlsafe_b64encode(KEK).decode(),
        base64.urlsafe_b64encode(KEK).decode().rstrip("="),
        KEK.hex(),
        KEK.hex().upper(),
        "  " + base64.b64encode(KEK).decode() + "\n",
    ],
)
def test_master_key_from_env_accepts_base64_and_hex(tmp_path, text):
    key, path = vault.load_master_key(Settings(data_dir=tmp_path, master_key=text))
    assert key == KEK and path is None


def test_urlsafe_alphabet_really_differs_for_this_key():
    key = bytes([0xFB, 0xFF] * 16)  # encodes to '+' and '/' in standard base64
    std, url = base64.b64encode(key).decode(), base64.urlsafe_b64encode(key).decode()
    assert std != url
    for text in (std, url):
        assert vault.load_master_key(Settings(master_key=text))[0] == key


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(b"x" * 31).decode(),  # wrong length
        base64.b64encode(b"x" * 33).decode(),
        "zz" * 32,  # 64 chars, not hex, base64 of 48 bytes
        "not a key at all!",
        KEK.hex()[:-2],
    ],
)
def test_malformed_master_key_is_refused_without_echoing_it(tmp_path, text):
    with pytest.raises(MasterKeyError) as err:
        vault.load_master_key(Settings(data_dir=tmp_path, master_key=text))
    assert text.strip() not in err.value.message
    assert "PCAQ_MASTER_KEY" in err.value.message


def test_env_key_wins_over_the_key_file(tmp_path):
    key_file = tmp_path / "k"
    key_file.write_text(OTHER_KEK.hex())
    settings = Settings(data_dir=tmp_path, master_key=KEK.hex(), master_key_file=key_file)
    assert vault.load_master_key(settings) == (KEK, None)


def test_master_key_from_named_file_with_trailing_whitespace(tmp_path):
    key_file = tmp_path / "secret" / "kek"
    key_file.parent.mkdir()
    key_file.write_text(base64.b64encode(KEK).decode() + "\n\n")
    assert vault.load_master_key(Settings(data_dir=tmp_path, master_key_file=key_file)) == (KEK, key_file)


def test_named_key_file_that_is_missing_is_an_error_even_with_create(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(MasterKeyError, match="PCAQ_MASTER_KEY_FILE"):
        vault.load_master_key(Settings(data_dir=tmp_path, master_key_file=missing), create=True)
    assert not missing.exists()


def test_malformed_key_file_does_not_echo_its_content(tmp_path):
    key_file = tmp_path / "kek"
    key_file.write_text("secret-but-wrong")
    with pytest.raises(MasterKeyError) as err:
        vault.load_master_key(Settings(data_dir=tmp_path, master_key_file=key_file))
    assert "secret-but-wrong" not in err.value.message and str(key_file) in err.value.message


def test_no_key_and_no_create_says_how_to_set_one(tmp_path):
    with pytest.raises(MasterKeyError) as err:
        vault.load_master_key(Settings(data_dir=tmp_path))
    assert "PCAQ_MASTER_KEY" in err.value.message and "PCAQ_MASTER_KEY_FILE" in err.value.message


def test_create_writes_a_private_file_and_reuses_it(tmp_path):
    data_dir = tmp_path / "deep" / "data"
    settings = Settings(data_dir=data_dir)
    old_umask = os.umask(0)  # even with a permissive umask the file must not be readable by others
    try:
        key, path = vault.load_master_key(settings, create=True)
    finally:
        os.umask(old_umask)
    assert path == data_dir / "master.key"
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert vault.load_master_key(settings) == (key, path)
    assert vault.load_master_key(settings, create=True) == (key, path)
    other_key, _ = vault.load_master_key(Settings(data_dir=tmp_path / "elsewhere"), create=True)
    assert other_key != key  # random, not a constant


# --- EncryptedRedisVault ------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["EC_prime256v1", "ML_DSA_44"])
def test_round_trip_through_a_fresh_vault(alg, ec_key):
    key = ec_key if alg == "EC_prime256v1" else keys.generate_private_key(alg)
    store = FakeStore()
    vault.EncryptedRedisVault(store, KEK).put("ca-1", key)
    again = vault.EncryptedRedisVault(store, KEK).get("ca-1")  # no cache: decrypts from the store
    assert _pem(again) == _pem(key)
    assert store.reads == 1


def test_stored_blob_is_versioned_ciphertext_not_the_key(ec_key):
    store = FakeStore()
    vault.EncryptedRedisVault(store, KEK).put("ca-1", ec_key)
    blob = store.blobs["ca-1"]
    assert blob[:1] == b"\x01"
    assert b"PRIVATE KEY" not in blob
    pem = _pem(ec_key)
    assert pem not in blob and base64.b64encode(pem) not in blob
    # A fresh random nonce every time: the same key stored twice gives different blobs.
    vault.EncryptedRedisVault(store, KEK).put("ca-1", ec_key)
    assert store.blobs["ca-1"] != blob


def test_wrong_master_key_raises_master_key_error(ec_key):
    store = FakeStore()
    vault.EncryptedRedisVault(store, KEK).put("ca-1", ec_key)
    with pytest.raises(MasterKeyError) as err:
        vault.EncryptedRedisVault(store, OTHER_KEK).get("ca-1")
    assert "ca-1" in err.value.message and "PCAQ_MASTER_KEY" in err.value.message


def test_blob_is_bound_to_its_ca_id(ec_key):
    store = FakeStore()
    vault.EncryptedRedisVault(store, KEK).put("ca-a", ec_key)
    store.blobs["ca-b"] = store.blobs["ca-a"]
    fresh = vault.EncryptedRedisVault(store, KEK)
    assert _pem(fresh.get("ca-a")) == _pem(ec_key)
    with pytest.raises(MasterKeyError, match="ca-b"):
        fresh.get("ca-b")


@pytest.mark.parametrize("blob", [b"", b"\x01short", b"\x02" + b"\x00" * 60])
def test_truncated_or_foreign_blob_is_a_master_key_error(blob):
    store = FakeStore()
    store.blobs["ca-1"] = blob
    with pytest.raises(MasterKeyError):
        vault.EncryptedRedisVault(store, KEK).get("ca-1")


def test_tampered_ciphertext_does_not_open(ec_key):
    store = FakeStore()
    vault.EncryptedRedisVault(store, KEK).put("ca-1", ec_key)
    blob = bytearray(store.blobs["ca-1"])
    blob[-1] ^= 1
    store.blobs["ca-1"] = bytes(blob)
    with pytest.raises(MasterKeyError):
        vault.EncryptedRedisVault(store, KEK).get("ca-1")


def test_unknown_ca_is_not_found():
    with pytest.raises(NotFound, match="ca-x"):
        vault.EncryptedRedisVault(FakeStore(), KEK).get("ca-x")


def test_decrypted_keys_are_cached(ec_key):
    store = FakeStore()
    vault.EncryptedRedisVault(store, KEK).put("ca-1", ec_key)
    v = vault.EncryptedRedisVault(store, KEK)
    first = v.get("ca-1")
    assert v.get("ca-1") is first and store.reads == 1
    v.forget("ca-1")
    v.get("ca-1")
    assert store.reads == 2


def test_repr_and_attributes_do_not_show_the_kek(ec_key):
    v = vault.EncryptedRedisVault(FakeStore(), KEK)
    v.put("ca-1", ec_key)
    shown = repr(v) + str(v) + repr(vars(v))
    for form in (repr(KEK), KEK.hex(), base64.b64encode(KEK).decode()):
        assert form not in shown
    assert "PRIVATE" not in shown


@pytest.mark.parametrize("bad", [b"", b"x" * 16, b"x" * 31, b"x" * 33])
def test_vault_refuses_a_kek_of_the_wrong_size(bad):
    with pytest.raises(MasterKeyError, match="32 bytes"):
        vault.EncryptedRedisVault(FakeStore(), bad)


def test_vault_satisfies_the_protocol():
    v: vault.KeyVault = vault.EncryptedRedisVault(FakeStore(), KEK)
    assert callable(v.put) and callable(v.get)


# --- verify_master_key -------------------------------------------------------------------------


def test_first_verify_stores_a_check_and_later_ones_use_it():
    store = FakeStore()
    vault.verify_master_key(store, KEK)
    check = store.check
    assert check is not None and check[:1] == b"\x01"
    vault.verify_master_key(store, KEK)
    assert store.check == check  # never replaced
    with pytest.raises(MasterKeyError, match="changed"):
        vault.verify_master_key(store, OTHER_KEK)
    assert store.check == check


def test_verify_after_losing_the_race_checks_the_winners_value():
    store = FakeStore()
    vault.verify_master_key(store, OTHER_KEK)  # the other process stored first

    class LateStore(FakeStore):
        """Reports no check value at first read, as if another process was just writing it."""

        def __init__(self, winner: bytes):
            super().__init__()
            self._winner = winner

        def kek_check(self):
            return self.check

        def init_kek_check(self, blob):
            self.check = self._winner
            return False

    with pytest.raises(MasterKeyError):
        vault.verify_master_key(LateStore(store.check), KEK)
    vault.verify_master_key(LateStore(store.check), OTHER_KEK)


def test_check_value_cannot_be_passed_off_as_a_ca_key():
    store = FakeStore()
    vault.verify_master_key(store, KEK)
    store.blobs["ca-1"] = store.check  # different associated data, so it must not open
    with pytest.raises(MasterKeyError):
        vault.EncryptedRedisVault(store, KEK).get("ca-1")
