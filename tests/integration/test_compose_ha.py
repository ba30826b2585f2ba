"""docker-compose.ha.yml: the multi-host shape (docs/operations.md, high availability), read and run.

No Docker engine runs here, so the file is checked twice: parsed (what each service is and how they
are wired), and its commands run for real on loopback, each service's own command line with only
its address changed: a primary, two replicas and three Sentinels, two API servers and a worker,
configured with the file's environment. A certificate issued through one API is fetched through the
other, as behind a load balancer.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis
import yaml

from pcaq.records import keys
from tests.acmpca import activate_root, fetch, issue, make_csr, pca_client
from tests.archive_db import SERVER_URL, private_database
from tests.support import REPO, base_env, free_port, http_status, kill_groups, wait_until

COMPOSE_HA = REPO / "docker-compose.ha.yml"
DATA = ("redis-primary", "redis-replica-1", "redis-replica-2")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
APIS = ("api-1", "api-2")


def _services() -> dict:
    return yaml.safe_load(COMPOSE_HA.read_text())["services"]


def _procfile() -> dict[str, str]:
    lines = (line.partition(":") for line in (REPO / "Procfile").read_text().splitlines() if ":" in line)
    return {name.strip(): command.strip() for name, _, command in lines}


def _flags(command: list) -> dict[str, str]:
    words = [str(word) for word in command]
    return dict(zip(words[1::2], words[2::2], strict=False))


def test_the_shape_primary_two_replicas_three_sentinels_two_apis_scaled_workers():
    services = _services()
    assert set(services) == {*DATA, *SENTINELS, *APIS, "worker", "postgres"}
    for name in DATA:
        flags = _flags(services[name]["command"])
        assert flags["--appendonly"] == "yes" and flags["--maxmemory-policy"] == "noeviction"
        assert int(flags["--min-replicas-to-write"]) >= 1, "a partitioned old primary must stop taking writes"
        assert "ports" not in services[name], "Redis must not be published on the host"
    for name in DATA[1:]:
        assert services[name]["command"][-3:] == ["--replicaof", "redis-primary", "6379"]
    for name in SENTINELS:
        script = services[name]["command"][-1]
        assert "sentinel monitor mymaster redis-primary 6379 2" in script  # quorum: two of three
        assert "redis-server /tmp/sentinel.conf --sentinel" in script  # a config file it may rewrite
    web, worker = (shlex.split(_procfile()[k].replace("${PORT:-8080}", "8080")) for k in ("web", "worker"))
    assert all(services[name]["command"] == web for name in APIS)
    assert services["worker"]["command"] == worker
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]


def test_every_pcaq_process_finds_redis_through_the_sentinels_and_reads_the_key_from_a_file():
    services = _services()
    for name in (*APIS, "worker"):
        env = services[name]["environment"]
        assert "REDIS_URL" not in env
        assert env["PCAQ_REDIS_SENTINELS"] == ",".join(f"{s}:26379" for s in SENTINELS)
        assert env["PCAQ_REDIS_MASTER"] == "mymaster"
        assert int(env["PCAQ_REDIS_MIN_REPLICAS"]) >= 1
        assert env["PCAQ_MASTER_KEY_FILE"] == "/run/secrets/pcaq_master_key"
        assert services[name]["secrets"] == ["pcaq_master_key"]
    assert yaml.safe_load(COMPOSE_HA.read_text())["secrets"]["pcaq_master_key"] == {"file": "./master.key"}


def test_every_host_shares_one_postgresql_archive():
    services = _services()
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:") and "ports" not in postgres
    assert any(str(volume).endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    for name in (*APIS, "worker"):
        url = services[name]["environment"]["PCAQ_ARCHIVE_URL"]
        assert re.fullmatch(r"postgresql://pcaq:\$\{PCAQ_ARCHIVE_PASSWORD:\?.+\}@postgres:5432/pcaq", url)
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def _here(argv: list[str]) -> list[str]:
    """A service's command (``granian ...`` or ``celery ...``) run by this interpreter, so that it runs
    this checkout's pcaq whatever else ``PATH`` holds (as ``pcaq up`` runs them)."""
    return [sys.executable, "-m", *argv]


class _Processes:
    """The processes a run starts, each in its own process group, all killed at the end."""

    def __init__(self, log: Path):
        self.log = log
        self.procs: list[subprocess.Popen] = []
        self.databases = ExitStack()

    def start(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> None:
        with open(self.log, "ab") as out:
            self.procs.append(
                subprocess.Popen(
                    argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, process_group=0
                )
            )

    def database(self) -> str:
        """A PostgreSQL database of its own, dropped at :meth:`stop`."""
        return self.databases.enter_context(private_database())

    def stop(self) -> None:
        kill_groups({proc.pid for proc in self.procs})
        for proc in self.procs:
            proc.wait(10)
        self.databases.close()


@pytest.mark.integration
def test_the_commands_of_the_file_run_a_failover_ready_pcaq(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("starts its own redis-server processes")
    services = _services()
    ports = {name: free_port() for name in (*DATA, *SENTINELS, *APIS)}
    procs = _Processes(tmp_path / "run.log")
    try:
        for name in DATA:  # the file's command, on a loopback port and folder of its own
            folder = tmp_path / name
            folder.mkdir()
            argv = " ".join(str(word) for word in services[name]["command"])
            argv = argv.replace(
                "--replicaof redis-primary 6379", f"--replicaof 127.0.0.1 {ports['redis-primary']}"
            )
            argv = re.sub(r"--replica-announce-ip \S+", "--replica-announce-ip 127.0.0.1", argv)
            procs.start(
                [*argv.split(), "--port", str(ports[name]), "--bind", "127.0.0.1", "--save", ""], cwd=folder
            )
        for name in SENTINELS:
            folder = tmp_path / name
            folder.mkdir()
            script = services[name]["command"][-1]
            script = script.replace("'port 26379'", f"'port {ports[name]}' 'bind 127.0.0.1'")
            script = script.replace("redis-primary 6379", f"127.0.0.1 {ports['redis-primary']}")
            script = script.replace("/tmp/sentinel.conf", str(folder / "sentinel.conf"))
            procs.start([*services[name]["command"][:-1], script], cwd=folder)

        key_file = tmp_path / "master.key"
        key_file.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
        key_file.chmod(0o600)
        env = base_env(tmp_path / "data", **{k: str(v) for k, v in services["worker"]["environment"].items()})
        env["PCAQ_REDIS_SENTINELS"] = ",".join(f"127.0.0.1:{ports[name]}" for name in SENTINELS)
        env["PCAQ_MASTER_KEY_FILE"] = str(key_file)
        env["PCAQ_PUBLIC_HOST"] = f"127.0.0.1:{ports['api-1']}"
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")  # the file's /tmp/pcaq-metrics, here
        if SERVER_URL:  # the file's PostgreSQL service: a database of the test's own on the test server
            env["PCAQ_ARCHIVE_URL"] = procs.database()
        else:  # none here: the file archive in the data folder
            del env["PCAQ_ARCHIVE_URL"]
        (tmp_path / "metrics").mkdir()
        procs.start(_here([str(word) for word in services["worker"]["command"]]), env)
        for name in APIS:
            argv = _here([str(word) for word in services[name]["command"]])
            argv[argv.index("--port") + 1] = str(ports[name])
            argv[argv.index("--host") + 1] = "127.0.0.1"
            procs.start(argv, env)
        for name in APIS:
            url = f"http://127.0.0.1:{ports[name]}/readyz"
            wait_until(lambda url=url: http_status(url) == 200, timeout=90, what=f"{url} == 200")

        first, second = (pca_client(f"http://127.0.0.1:{ports[name]}") for name in APIS)
        ca_arn, _ = activate_root(first)
        cert_arn = issue(first, ca_arn, make_csr())
        cert, _, chain = fetch(second, ca_arn, cert_arn)  # through the other API, as behind a balancer
        assert chain and cert.serial_number == int(cert_arn.rsplit("/", 1)[1], 16)
        # On the primary the Sentinels name, and nowhere else.
        with redis.Redis(port=ports["redis-primary"]) as primary:
            assert primary.exists(keys.ca(ca_arn.rsplit("/", 1)[1])) == 1
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n--- log ---\n{(tmp_path / 'run.log').read_text(errors='replace')[-4000:]}"
        ) from None
    finally:
        procs.stop()
