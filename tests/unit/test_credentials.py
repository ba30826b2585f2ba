"""Credentials (shared/platform/credentials.py) and the open development mode rules of ``pcaq up``."""

from __future__ import annotations

import logging

import pytest

from pcaq.cli import main as cli
from pcaq.cli import up
from pcaq.platform.credentials import (
    Credential,
    Credentials,
    CredentialsError,
    check_bind,
    is_loopback,
    load_credentials,
    parse_credentials,
)
from pcaq.platform.settings import load

DEFAULT = "123456789012"


def test_entries_with_and_without_an_account():
    creds = parse_credentials("AKIDA:secretA:111122223333, AKIDB:secretB", DEFAULT)
    assert creds["AKIDA"] == Credential("AKIDA", "secretA", "111122223333")
    assert creds["AKIDB"] == Credential("AKIDB", "secretB", DEFAULT)
    assert len(creds) == 2
    assert not creds.open_mode


def test_newlines_comments_and_blank_entries():
    text = "# operators\nAKIDA:s1:111122223333\n\n  AKIDB:s2 # the batch job\n,,AKIDC:s3,\n"
    assert sorted(parse_credentials(text, DEFAULT)) == ["AKIDA", "AKIDB", "AKIDC"]


def test_secrets_may_hold_base64_characters():
    creds = parse_credentials("AKIDA:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY+=", DEFAULT)
    assert creds["AKIDA"].secret == "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY+="


@pytest.mark.parametrize(
    "text, message",
    [
        ("AKIDA", "expected ACCESS_KEY:SECRET"),
        ("AKIDA:s:111122223333:extra", "expected ACCESS_KEY:SECRET"),
        ("AKIDA:", "empty secret"),
        ("AKID/A:s", "access key must be"),
        ("AKIDA:s:12345", "must be 12 digits"),
        ("AKIDA:s:abcdefghijkl", "must be 12 digits"),
        ("AKIDA:s1,AKIDA:s2", "more than once"),
    ],
)
def test_malformed_entries_are_refused_with_the_reason(text, message):
    with pytest.raises(CredentialsError, match=message):
        parse_credentials(text, DEFAULT)


def test_errors_and_reprs_never_show_a_secret():
    secret = "TOPSECRETVALUE"
    with pytest.raises(CredentialsError) as caught:
        parse_credentials(f"AKIDA:{secret}:999", DEFAULT)
    assert secret not in str(caught.value)
    creds = parse_credentials(f"AKIDA:{secret}", DEFAULT)
    assert secret not in repr(creds)
    assert secret not in repr(creds["AKIDA"])
    assert secret not in str(creds["AKIDA"])
    assert secret not in repr(load({"PCAQ_CREDENTIALS": f"AKIDA:{secret}"}))


def test_the_default_account_is_the_configured_one():
    settings = load({"PCAQ_CREDENTIALS": "AKIDA:s", "PCAQ_ACCOUNT_ID": "210987654321"})
    assert load_credentials(settings)["AKIDA"].account == "210987654321"


def test_variable_and_file_are_merged(tmp_path):
    path = tmp_path / "creds"
    path.write_text("AKIDB:s2:222233334444\n")
    settings = load({"PCAQ_CREDENTIALS": "AKIDA:s1", "PCAQ_CREDENTIALS_FILE": str(path)})
    creds = load_credentials(settings)
    assert creds["AKIDA"].account == DEFAULT and creds["AKIDB"].account == "222233334444"


def test_a_key_in_both_places_is_refused(tmp_path):
    path = tmp_path / "creds"
    path.write_text("AKIDA:s2\n")
    with pytest.raises(CredentialsError, match="more than once"):
        load_credentials(load({"PCAQ_CREDENTIALS": "AKIDA:s1", "PCAQ_CREDENTIALS_FILE": str(path)}))


def test_a_missing_file_is_an_error_not_open_mode(tmp_path):
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials(load({"PCAQ_CREDENTIALS_FILE": str(tmp_path / "absent")}))


def test_a_configured_but_empty_source_is_an_error(tmp_path):
    path = tmp_path / "creds"
    path.write_text("# nothing yet\n")
    with pytest.raises(CredentialsError, match="hold no entry"):
        load_credentials(load({"PCAQ_CREDENTIALS_FILE": str(path)}))


def test_nothing_configured_is_open_mode():
    creds = load_credentials(load({}))
    assert creds.open_mode and len(creds) == 0
    assert Credentials().open_mode


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "192.0.2.7", "example.invalid"])
def test_other_hosts(host):
    assert not is_loopback(host)


def test_open_mode_binds_loopback_only():
    check_bind("127.0.0.1", Credentials())
    with pytest.raises(CredentialsError, match="refusing to listen on 0.0.0.0 without credentials"):
        check_bind("0.0.0.0", Credentials())
    check_bind("0.0.0.0", parse_credentials("AKIDA:s", DEFAULT))


@pytest.fixture
def no_pcaq_env(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("PCAQ_") or name == "REDIS_URL":
            monkeypatch.delenv(name)


def test_pcaq_up_refuses_a_public_address_without_credentials(no_pcaq_env, monkeypatch, capsys):
    started = []
    monkeypatch.setattr(up, "_run_up", lambda *a: started.append(a) or 0)
    assert cli.main(["up", "--host", "0.0.0.0"]) == 2
    assert "refusing to listen on 0.0.0.0 without credentials" in capsys.readouterr().err
    assert not started


def test_pcaq_up_warns_loudly_in_open_mode(no_pcaq_env, monkeypatch, caplog):
    monkeypatch.setattr(up, "_run_up", lambda *a: 0)
    with caplog.at_level(logging.WARNING):
        assert cli.main(["up", "--host", "127.0.0.1"]) == 0
    assert any(
        "OPEN DEVELOPMENT MODE" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )


def test_pcaq_up_with_credentials_binds_anywhere_without_the_warning(no_pcaq_env, monkeypatch, caplog):
    monkeypatch.setenv("PCAQ_CREDENTIALS", "AKIDA:s1:111122223333")
    monkeypatch.setattr(up, "_run_up", lambda *a: 0)
    with caplog.at_level(logging.INFO):
        assert cli.main(["up", "--host", "0.0.0.0"]) == 0
    assert not any("OPEN DEVELOPMENT MODE" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PCAQ_CREDENTIALS": "AKIDA:s1:42"}, "must be 12 digits"),
        ({"PCAQ_CREDENTIALS": "AKIDA:s1", "PCAQ_RATE_LIMITS": "IssueCertificat=5"}, "not an operation"),
        ({"PCAQ_CREDENTIALS": "AKIDA:s1", "PCAQ_KEY_BLOCKLIST_FILE": "/nonexistent/x"}, "cannot read"),
    ],
)
def test_pcaq_up_refuses_bad_security_settings(no_pcaq_env, monkeypatch, capsys, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(up, "_run_up", lambda *a: 0)
    assert cli.main(["up"]) == 2
    assert message in capsys.readouterr().err


def test_check_secret_accepts_only_the_keys_own_secret():
    creds = parse_credentials("AK1:s3cret:111111111111,AK2:other:222222222222", "123456789012")
    assert creds.check_secret("AK1", "s3cret").account == "111111111111"
    assert creds.check_secret("AK1", "other") is None  # another key's secret
    assert creds.check_secret("AK1", "s3cre") is None and creds.check_secret("AK1", "") is None
    assert creds.check_secret("NOPE", "s3cret") is None
