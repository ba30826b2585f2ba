"""The README's worked example, run as written with the real AWS CLI against a running stack."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.acmpca import CLIENT_ENV
from tests.support import readme_example

pytestmark = pytest.mark.integration


def test_readme_example_creates_and_activates_a_root(stack, tmp_path):
    script = readme_example().replace("http://127.0.0.1:8080", stack.endpoint_url)
    assert stack.endpoint_url in script  # the example must point at the default endpoint we replace
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | CLIENT_ENV
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert '"Status": "ACTIVE"' in proc.stdout
    assert (tmp_path / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
