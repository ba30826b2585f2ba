"""The PKCS#11 token of the HSM tests: the one CI initialises (``PCAQ_TEST_PKCS11_*``, see .ci/run), or a
private SoftHSM2 token made for one test that breaks it on purpose."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE = os.environ.get("PCAQ_TEST_PKCS11_MODULE", "")
LABEL = os.environ.get("PCAQ_TEST_PKCS11_TOKEN_LABEL", "pcaq-test")
PIN = os.environ.get("PCAQ_TEST_PKCS11_PIN", "")

needs_token = pytest.mark.skipif(not MODULE, reason="no PKCS#11 module given (PCAQ_TEST_PKCS11_MODULE)")


@dataclass
class HsmToken:
    """A token and the environment that makes pcaq use it."""

    module: str
    label: str
    pin: str
    extra_env: dict[str, str]  # SOFTHSM2_CONF for a private SoftHSM2 token

    def stack_env(self, pin_file: Path) -> dict[str, str]:
        """pcaq's variables for this token, the PIN in a file (as production would)."""
        pin_file.write_text(self.pin + "\n")
        pin_file.chmod(0o600)
        return {
            "PCAQ_PKCS11_MODULE": self.module,
            "PCAQ_PKCS11_TOKEN_LABEL": self.label,
            "PCAQ_PKCS11_PIN_FILE": str(pin_file),
            **self.extra_env,
        }


def ci_token() -> HsmToken:
    """The token CI initialised (its SOFTHSM2_CONF, if any, is already in the environment)."""
    return HsmToken(MODULE, LABEL, PIN, {})


def private_softhsm_token(folder: Path, label: str = "pcaq-private") -> HsmToken:
    """A fresh SoftHSM2 token of its own in ``folder`` (skips when SoftHSM2's tools are missing)."""
    util = shutil.which("softhsm2-util")
    if util is None or "softhsm" not in MODULE:
        pytest.skip("a private token needs SoftHSM2 (softhsm2-util and its module)")
    tokens = folder / "tokens"
    tokens.mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        [util, "--init-token", "--free", "--label", label, "--pin", "4321", "--so-pin", "87654321"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return HsmToken(MODULE, label, "4321", {"SOFTHSM2_CONF": str(conf)})
