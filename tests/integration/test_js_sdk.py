"""The AWS SDK for JavaScript v3 against a real ``pcaq up``: the Node suite in tests/js, run by ``node --test``.

botocore forgives a lot (error names from the body, timestamps of any JSON type, waiters that stop on any
error); the Smithy-generated JavaScript SDK parses errors into classes, timestamps into Dates and runs
its own waiters, so a second SDK family checks the wire that the Python tests cannot. The stack has
credentials configured, so every request the JavaScript signer makes is really verified.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support import REPO, running_stack

pytestmark = pytest.mark.integration

JS = REPO / "tests" / "js"


def _node_modules() -> None:
    """Install the pinned SDK from package-lock.json unless it is there (.ci/run installs it first)."""
    if (JS / "node_modules" / "@aws-sdk" / "client-acm-pca").is_dir():
        return
    npm = shutil.which("npm")
    assert npm, "npm is missing: install Node's npm, then run `npm ci` in tests/js"
    proc = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"npm ci in tests/js failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_sdk_runs_a_whole_flow(tmp_path, redis_base_url):
    _node_modules()
    env = {"PCAQ_CREDENTIALS": "AKIDEXAMPLE:secret"}
    with running_stack(tmp_path, env=env, redis_base_url=redis_base_url) as stack:
        node_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        node_env |= {
            "PCAQ_ENDPOINT": stack.endpoint_url,
            "PCAQ_SIGV4_ENFORCED": "1",
            # No user configuration: the suite gives the client its keys and region itself.
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        # cwd tests/js and no file arguments: node finds *.test.mjs there (Node 20 and later alike).
        proc = subprocess.run(
            ["node", "--test", "--test-reporter=tap"],
            cwd=JS,
            env=node_env,
            capture_output=True,
            text=True,
            timeout=110,
        )
        assert proc.returncode == 0, (
            f"node --test failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
            f"--- pcaq log ---\n{stack.log()[-5000:]}"
        )
    assert "# fail 0" in proc.stdout and "# pass 0" not in proc.stdout, proc.stdout
