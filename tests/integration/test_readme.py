"""The README's worked example, run as written with the real AWS CLI against a running stack."""

from __future__ import annotations

import pytest

from tests.acmpca import run_readme_example

pytestmark = pytest.mark.integration


def test_readme_example_creates_and_activates_a_root(stack, tmp_path):
    proc = run_readme_example(stack.endpoint_url, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '"Status": "ACTIVE"' in proc.stdout
    assert (tmp_path / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
