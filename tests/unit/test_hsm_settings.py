"""The PKCS#11 token settings and where a new CA's key goes (pcaq.ca.key_policy)."""

from __future__ import annotations

import pytest

from pcaq.ca import key_policy
from pcaq.ca.pkcs11_token import TOKEN_KEY_ALGORITHMS
from pcaq.errors import InvalidArgument
from pcaq.platform.settings import load

PIN = "s3cret-pin-7781"


@pytest.fixture
def module(tmp_path):
    path = tmp_path / "libtoken.so"  # any file: the settings check that it exists, not what it is
    path.write_bytes(b"\x7fELF")
    return str(path)


def test_no_module_means_software_keys_for_every_type():
    settings = load({})
    assert not settings.token_configured
    for algorithm in ("RSA_2048", "EC_prime256v1", "ML_DSA_65"):
        assert key_policy.key_storage(settings, algorithm) == key_policy.SOFTWARE


def test_a_token_takes_rsa_and_ec_keys_and_refuses_ml_dsa_unless_software_keys_are_allowed(module):
    env = {"PCAQ_PKCS11_MODULE": module, "PCAQ_PKCS11_TOKEN_LABEL": "ca", "PCAQ_PKCS11_PIN": PIN}
    settings = load(env)
    assert settings.token_configured and settings.pkcs11_pin == PIN
    assert PIN not in repr(settings)  # never printed with the settings
    for algorithm in key_policy.TOKEN_KEY_ALGORITHMS:
        assert key_policy.key_storage(settings, algorithm) == key_policy.PKCS11
    with pytest.raises(InvalidArgument, match="PCAQ_ALLOW_SOFTWARE_KEYS"):
        key_policy.key_storage(settings, "ML_DSA_65")
    allowed = load({**env, "PCAQ_ALLOW_SOFTWARE_KEYS": "true"})
    assert key_policy.key_storage(allowed, "ML_DSA_65") == key_policy.SOFTWARE
    assert set(key_policy.TOKEN_KEY_ALGORITHMS) == set(TOKEN_KEY_ALGORITHMS)  # the token makes them all


def test_the_pin_can_come_from_a_file(module, tmp_path):
    pin_file = tmp_path / "pin"
    pin_file.write_text(PIN + "\n")
    env = {
        "PCAQ_PKCS11_MODULE": module,
        "PCAQ_PKCS11_TOKEN_LABEL": "ca",
        "PCAQ_PKCS11_PIN_FILE": str(pin_file),
    }
    assert load(env).pkcs11_pin == PIN


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PCAQ_PKCS11_TOKEN_LABEL": "ca"}, "PCAQ_PKCS11_MODULE"),
        (
            {
                "PCAQ_PKCS11_MODULE": "/nonexistent/lib.so",
                "PCAQ_PKCS11_TOKEN_LABEL": "ca",
                "PCAQ_PKCS11_PIN": PIN,
            },
            "PCAQ_PKCS11_MODULE",
        ),
        ({"PCAQ_PKCS11_MODULE": "{module}", "PCAQ_PKCS11_PIN": PIN}, "PCAQ_PKCS11_TOKEN_LABEL"),
        ({"PCAQ_PKCS11_MODULE": "{module}", "PCAQ_PKCS11_TOKEN_LABEL": "ca"}, "PCAQ_PKCS11_PIN"),
        (
            {
                "PCAQ_PKCS11_MODULE": "{module}",
                "PCAQ_PKCS11_TOKEN_LABEL": "ca",
                "PCAQ_PKCS11_PIN": PIN,
                "PCAQ_PKCS11_PIN_FILE": "/x",
            },
            "PCAQ_PKCS11_PIN_FILE",
        ),
        (
            {
                "PCAQ_PKCS11_MODULE": "{module}",
                "PCAQ_PKCS11_TOKEN_LABEL": "ca",
                "PCAQ_PKCS11_PIN_FILE": "/nonexistent/pin",
            },
            "PCAQ_PKCS11_PIN_FILE",
        ),
        ({"PCAQ_ALLOW_SOFTWARE_KEYS": "maybe"}, "PCAQ_ALLOW_SOFTWARE_KEYS"),
    ],
)
def test_an_incomplete_or_bad_token_setting_stops_the_process_naming_the_variable(module, env, named):
    env = {k: v.format(module=module) for k, v in env.items()}
    with pytest.raises(SystemExit) as exc:
        load(env)
    assert named in str(exc.value) and PIN not in str(exc.value)
