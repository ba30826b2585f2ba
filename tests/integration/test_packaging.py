"""A user's install: ``pip install .`` of a clean checkout into a fresh virtualenv adds one import
package, ``pcaq``, and its ``pcaq up`` serves the README's AWS CLI example."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import urllib.request
import venv
from pathlib import Path

import pytest

from pcaq.cli.embedded_redis import free_port
from tests.acmpca import run_readme_example
from tests.support import REPO, base_env, kill_groups, wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv (no system packages) with pcaq installed from the files git tracks."""
    root = tmp_path_factory.mktemp("install")
    checkout = root / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():  # a file deleted in the work tree but not yet in git
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [
            env_dir / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(checkout),
        ],
        check=True,
        timeout=600,
    )
    return env_dir


def _python(env_dir: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [env_dir / "bin" / "python", "-c", code], cwd=env_dir, capture_output=True, text=True, timeout=60
    )


def test_the_install_adds_pcaq_alone(installed):
    (dist_info,) = (installed / "lib").glob("python3*/site-packages/pcaq-*.dist-info")
    assert (dist_info / "top_level.txt").read_text().split() == ["pcaq"]
    for generic in ("api", "worker", "shared", "cli"):
        assert "ModuleNotFoundError" in _python(installed, f"import {generic}").stderr
    ok = _python(installed, "import pcaq.api.app, pcaq.worker.app, pcaq.cli.main, pcaq.pki.certificates")
    assert ok.returncode == 0, ok.stderr


def test_pcaq_up_from_the_install_serves_the_readme_example(installed, tmp_path):
    port = free_port()
    env = base_env(tmp_path / "data")
    env["PATH"] = os.pathsep.join([str(installed / "bin"), env["PATH"]])
    log_path = tmp_path / "pcaq.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [installed / "bin" / "pcaq", "up", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_ready(endpoint, proc, log_path)
        run = run_readme_example(endpoint, tmp_path)
        assert run.returncode == 0, run.stderr
        assert '"Status": "ACTIVE"' in run.stdout
        # The console's templates and stylesheet came with the install (package data)
        with urllib.request.urlopen(f"{endpoint}/console/", timeout=10) as page:
            assert b"Example Root" in page.read()
        with urllib.request.urlopen(f"{endpoint}/console/static/console.css", timeout=10) as css:
            assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            kill_groups({proc.pid})
            proc.wait()
