"""A running pcaq stack per test module, and clients for it: boto3 and the AWS CLI v1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.acmpca import CLIENT_ENV, pca_client
from tests.support import running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_base_url):
    """``pcaq up`` with two worker processes, on a private Redis database."""
    with running_stack(tmp_path_factory.mktemp("stack"), redis_base_url=redis_base_url, workers=2) as s:
        yield s


@pytest.fixture(scope="module")
def pca(stack):
    """A boto3 acm-pca client pointed at the stack."""
    return pca_client(stack.endpoint_url)


class AwsCli:
    """Runs the real ``aws`` CLI (v1) against the stack."""

    def __init__(self, endpoint_url: str):
        self.endpoint_url = endpoint_url

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | CLIENT_ENV
        cmd = [sys.executable, "-m", "awscli", "acm-pca", *args, "--endpoint-url", self.endpoint_url]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def json(self, *args: str) -> dict:
        out = self(*args, "--output", "json").stdout
        return json.loads(out) if out.strip() else {}


@pytest.fixture(scope="module")
def aws(stack) -> AwsCli:
    """The AWS CLI bound to the stack's endpoint."""
    return AwsCli(stack.endpoint_url)
