"""How pcaq runs: ``pcaq up`` (supervision, embedded Redis, master key), the Procfile and docker-compose.

The Procfile lines are run exactly as a Procfile runner runs them (``sh -c LINE``), and a test keeps
them, docker-compose.yml and the commands ``pcaq up`` starts identical.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import boto3
import pytest
import redis
import yaml

from pcaq.ca.vault import verify_master_key
from pcaq.cli import embedded_redis as er
from pcaq.cli.children import api_args, worker_args
from pcaq.platform.redis_connect import redact
from pcaq.platform.settings import load
from pcaq.records import Store
from tests.acmpca import activate_root, fetch, issue, make_csr
from tests.support import (
    REPO,
    alive,
    base_env,
    children,
    descendants,
    free_port,
    http_status,
    in_groups,
    kill_groups,
    listening_tcp_ports,
    pcaq_argv,
    private_redis_db,
    redis_servers_on,
    running_stack,
    start_pcaq_up,
    wait_ready,
    wait_until,
)

pytestmark = pytest.mark.integration

PROCFILE = REPO / "Procfile"
COMPOSE = REPO / "docker-compose.yml"


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _procfile() -> dict[str, str]:
    lines = {}
    for raw in PROCFILE.read_text().splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            name, _, command = raw.partition(":")
            lines[name.strip()] = command.strip()
    return lines


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


# -- the files ------------------------------------------------------------------------------------


def test_procfile_runs_what_pcaq_up_runs():
    lines = _procfile()
    assert set(lines) == {"web", "worker"}
    assert "${PORT:-8080}" in lines["web"], "web must listen on $PORT (8080 by default)"
    web = shlex.split(lines["web"].replace("${PORT:-8080}", "8080"))
    assert web == ["granian", *api_args("0.0.0.0", 8080)]
    assert shlex.split(lines["worker"]) == ["celery", *worker_args()]
    assert "-B" not in shlex.split(lines["worker"]), "no celery beat: the sweeper runs inside the worker"


def test_compose_redis_is_durable_and_never_evicts():
    redis_service = _compose()["services"]["redis"]
    assert redis_service["image"].startswith("redis:7")
    command = redis_service["command"]
    command = shlex.split(command) if isinstance(command, str) else [str(part) for part in command]
    flags = dict(zip(command[1::2], command[2::2], strict=False))
    assert flags.get("--appendonly") == "yes"
    assert flags.get("--appendfsync") in ("everysec", "always")
    assert flags.get("--maxmemory-policy") == "noeviction"
    assert any(str(volume).endswith(":/data") for volume in redis_service["volumes"])
    assert "ports" not in redis_service, "Redis must not be published on the host"


def test_compose_runs_the_procfile_commands():
    services = _compose()["services"]
    lines = _procfile()
    assert services["api"]["command"] == shlex.split(lines["web"].replace("${PORT:-8080}", "8080"))
    assert services["worker"]["command"] == shlex.split(lines["worker"])
    assert "8080:8080" in [str(p) for p in services["api"]["ports"]]
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["api"]["build"] == services["worker"]["build"] == "."


def test_compose_workers_scale_and_share_the_settings():
    services = _compose()["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "--scale worker=N needs both absent"
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        # Required from the operator's environment: compose refuses to start without it.
        assert re.fullmatch(r"\$\{PCAQ_MASTER_KEY:\?.+\}", env["PCAQ_MASTER_KEY"])
        assert "PCAQ_PUBLIC_HOST" in env
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_archives_to_a_postgresql_service_every_container_shares():
    services = _compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert any(str(volume).endswith(":/var/lib/postgresql/data") for volume in postgres["volumes"])
    assert "ports" not in postgres, "PostgreSQL must not be published on the host"
    assert re.fullmatch(r"\$\{PCAQ_ARCHIVE_PASSWORD:\?.+\}", postgres["environment"]["POSTGRES_PASSWORD"])
    user, db = postgres["environment"]["POSTGRES_USER"], postgres["environment"]["POSTGRES_DB"]
    for name in ("api", "worker"):
        url = services[name]["environment"]["PCAQ_ARCHIVE_URL"]
        assert re.fullmatch(
            rf"postgresql://{user}:\$\{{PCAQ_ARCHIVE_PASSWORD:\?.+\}}@postgres:5432/{db}", url
        )
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dockerfile_installs_the_package_and_drops_root():
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert "pip install ." in text
    copied = set(re.findall(r"^COPY (\S+) \./\1$", text, re.M))
    mapped = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    )
    assert mapped <= copied, f"the image leaves out {mapped - copied}"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert cmd == ["granian", *api_args("0.0.0.0", 8080)], "the image runs the Procfile's web line"


def test_redact_hides_only_the_password():
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:s3cret@host/1") == "rediss://user:***@host/1"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    # The embedded Redis's URL: a Unix socket, the password in the user part (or, typed, a query).
    assert redact("unix://:s3cret@/var/lib/pcaq/redis/redis.sock?db=0") == (
        "unix://:***@/var/lib/pcaq/redis/redis.sock?db=0"
    )
    assert redact("unix:///r.sock?db=0&password=s3cret") == "unix:///r.sock?db=0&password=***"


# -- the supervisor, with stand-in children -------------------------------------------------------

_DRIVER = """
import json, logging, sys
from pcaq.cli.supervisor import ChildSpec, RestartPolicy, StopSignals, Supervisor
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
conf = json.loads(sys.argv[1])
children = [ChildSpec(name, argv) for name, argv in conf["children"]]
policy = RestartPolicy(**conf["policy"])
sys.exit(Supervisor(children, StopSignals(), policy=policy, stop_timeout=conf["stop_timeout"]).run())
"""


def _drive(tmp_path: Path, children: list, policy: dict, stop_timeout: float = 5.0):
    log_path = tmp_path / "supervisor.log"
    conf = json.dumps({"children": children, "policy": policy, "stop_timeout": stop_timeout})
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", _DRIVER, conf],
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
    return proc, log_path


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


_STUBBORN = _py(  # a child that ignores SIGTERM
    "import signal\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('stubborn ready', flush=True)\n"
    "signal.pause()"
)


def test_supervisor_gives_up_on_a_child_that_keeps_dying_at_start(tmp_path):
    policy = {"min_uptime": 5.0, "max_start_failures": 3, "backoff_initial": 0.01}
    proc, log_path = _drive(tmp_path, [["broken", _py("import sys; sys.exit(3)")]], policy)
    try:
        assert proc.wait(30) == 1
    finally:
        kill_groups({proc.pid})
    log = log_path.read_text()
    assert log.count("restarting it in") == 2, log
    assert "broken keeps dying at start (3 times in a row, last: exited with status 3" in log, log
    assert "Traceback" not in log


def test_supervisor_gives_up_on_a_program_that_cannot_start(tmp_path):
    proc, log_path = _drive(tmp_path, [["ghost", [str(tmp_path / "no-such-program")]]], {})
    assert proc.wait(30) == 1
    assert "cannot start ghost" in log_path.read_text()


def test_supervisor_restarts_a_killed_child_and_stops_everything(tmp_path):
    spawner = _py(
        "import signal, subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal; signal.pause()'])\n"
        "signal.pause()"
    )
    policy = {"min_uptime": 0.5, "backoff_initial": 0.05}
    roles = [["spawner", spawner], ["stubborn", _STUBBORN]]
    proc, log_path = _drive(tmp_path, roles, policy, stop_timeout=1.0)
    groups = {proc.pid}

    def spawner_with_grandchild():
        for child in children(proc.pid):
            if "subprocess.Popen" in child.cmdline and descendants(child.pid):
                return child
        return None

    try:
        first = wait_until(spawner_with_grandchild, what="the spawner and its grandchild")
        grandchild = descendants(first.pid)[0]
        groups |= {first.pgid, *(c.pgid for c in children(proc.pid))}
        assert first.pgid == first.pid != os.getpgid(proc.pid), "each child leads its own process group"
        assert grandchild.pgid == first.pgid

        os.kill(first.pid, signal.SIGKILL)
        second = wait_until(
            lambda: (s := spawner_with_grandchild()) is not None and s.pid != first.pid and s,
            what="a restarted spawner",
        )
        groups |= {second.pgid}
        wait_until(lambda: not alive(grandchild.pid), what="the killed child's group to be cleaned up")
        assert f"spawner (pid {first.pid}) was killed by SIGKILL" in log_path.read_text()

        wait_until(lambda: "stubborn ready" in log_path.read_text(), what="the stubborn child")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        log = log_path.read_text()
        assert "did not stop within 1 s; killing them" in log, log
        assert in_groups(groups) == [], "a supervised process survived the stop"
    finally:
        kill_groups(groups)


def test_supervisor_kills_at_once_on_a_second_stop_request(tmp_path):
    proc, log_path = _drive(tmp_path, [["stubborn", _STUBBORN]], {}, stop_timeout=600.0)
    try:
        wait_until(lambda: "stubborn ready" in log_path.read_text(), what="the stubborn child")
        child = children(proc.pid)[0]
        os.kill(proc.pid, signal.SIGTERM)
        wait_until(
            lambda: "stopping (signal received)" in log_path.read_text(), what="the first stop request"
        )
        assert alive(child.pid), "SIGTERM is ignored by this child: only the second request may kill it"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(15) == 0
        assert "second stop request: killing the children now" in log_path.read_text()
        assert not alive(child.pid)
    finally:
        kill_groups({proc.pid, *(c.pgid for c in children(proc.pid))})


# -- the embedded Redis ---------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_embedded_redis_server_is_private_durable_and_locked(tmp_path, monkeypatch):
    argvs = []

    def recording_popen(argv, *args, **kwargs):
        argvs.append(list(argv))
        return real_popen(argv, *args, **kwargs)

    real_popen = subprocess.Popen
    # redis-server overwrites its argv with a title once started: /proc/<pid>/cmdline cannot show
    # what ps showed every user meanwhile, so look at what it was started with.
    monkeypatch.setattr(er.subprocess, "Popen", recording_popen)
    with er.embedded_redis(tmp_path, er.REDIS_SERVER) as running:
        assert running.kind == er.REDIS_SERVER
        sock = (tmp_path / "redis" / "redis.sock").resolve()
        password = (tmp_path / "redis" / "password").read_text().strip()
        assert argvs and not any(password in arg for argv in argvs for arg in argv), argvs
        assert running.url == f"unix://:{password}@{sock}?db=0"  # the socket: half the CPU of loopback TCP
        assert er.embedded_redis_url(tmp_path) == running.url
        assert password not in repr(running)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o700, "only pcaq's own user may open the socket"
        client = redis.Redis.from_url(running.url, decode_responses=True)
        config = {k: v for p in ("appendonly", "appendfsync", "maxmemory-policy", "bind", "dir", "save")
                  for k, v in client.config_get(p).items()}  # fmt: skip
        client.close()
        assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
        assert config["maxmemory-policy"] == "noeviction"
        assert config["bind"] == "127.0.0.1" and config["save"] == ""
        assert Path(config["dir"]) == (tmp_path / "redis").resolve()
        with pytest.raises(er.EmbeddedRedisError, match="already running"):
            with er.embedded_redis(tmp_path, er.REDIS_SERVER):
                pass
        assert redis_servers_on(tmp_path / "redis") == [running.pid]
    assert not alive(running.pid)
    assert er.embedded_redis_url(tmp_path) is None, "a stopped Redis is not published"


def test_the_embedded_redis_password_file_is_made_once_and_kept_private(tmp_path):
    password = er.redis_password(tmp_path)
    path = tmp_path / "redis" / "password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(password) >= 40 and er.redis_password(tmp_path) == password  # 256 bits, made once
    assert [p.name for p in path.parent.iterdir()] == ["password"], "no temporary file is left behind"
    path.chmod(0o644)  # someone loosened it: the password may be known, refuse to use it
    with pytest.raises(er.EmbeddedRedisError, match="may be read by other users"):
        er.redis_password(tmp_path)


def test_embedded_fakeredis_runs_our_lua(tmp_path):
    with er.embedded_redis(tmp_path, er.FAKEREDIS) as running:
        assert running.kind == er.FAKEREDIS
        client = redis.Redis.from_url(running.url)
        assert client.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, "k", 41) == 41
        assert client.client_id() != redis.Redis.from_url(running.url).client_id()  # a connection each
        client.close()


# -- the Procfile, run for real -------------------------------------------------------------------


def _start_line(line: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            ["/bin/sh", "-c", line],  # as Procfile runners (foreman, honcho, Heroku) run a line
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            process_group=0,
        )


def _stop_group(proc: subprocess.Popen) -> bool:
    """SIGTERM the line's process group, as a Procfile runner does; True if all of it left in time."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        wait_until(lambda: in_groups({proc.pid}) == [], what="the Procfile line to stop")
        return True
    except AssertionError:
        return False
    finally:
        kill_groups({proc.pid})
        proc.wait()


def test_procfile_web_and_worker_serve_on_redis(tmp_path, redis_base_url):
    lines = _procfile()
    port = free_port()
    log_path = tmp_path / "procfile.log"
    with private_redis_db(redis_base_url) as redis_url:
        env = base_env(tmp_path / "data", REDIS_URL=redis_url, PCAQ_MASTER_KEY=_new_key(), PORT=str(port))
        env["PCAQ_PUBLIC_HOST"] = f"127.0.0.1:{port}"
        url = f"http://127.0.0.1:{port}"
        web = _start_line(lines["web"], env, log_path)
        worker = None
        try:
            wait_until(lambda: http_status(url + "/healthz") == 200, what="/healthz from the web line")
            assert http_status(url + "/readyz") == 503, "no worker runs yet: not ready"
            worker = _start_line(lines["worker"], env, log_path)
            wait_ready(url, worker, log_path)
        finally:
            stopped = [_stop_group(p) for p in (web, worker) if p is not None]
        assert stopped == [True, True], log_path.read_text()
        log = log_path.read_text()
        assert "Granian shutdown completed" in log and "Warm shutdown" in log, log


# -- pcaq up --------------------------------------------------------------------------------------


def test_pcaq_up_runs_heals_and_stops_cleanly(tmp_path):
    with running_stack(tmp_path, workers=1) as stack:
        log = stack.log()
        assert f"pcaq listening on {stack.endpoint_url}" in log
        assert http_status(stack.endpoint_url + "/healthz") == 200

        key_file = stack.data_dir / "master.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert str(key_file) in log
        assert key_file.read_text().strip() not in log, "the master key itself must never be logged"

        pids = stack.child_pids()
        assert set(pids) == {"api", "worker", "redis"}, pids
        # Signing yields the CPU to answering requests (PCAQ_WORKER_NICE, 19 by default).
        base = os.getpriority(os.PRIO_PROCESS, 0)  # (this test's own; pcaq up's children start from it)
        pool = wait_until(lambda: descendants(pids["worker"]), what="celery pool processes")
        workers = {os.getpriority(os.PRIO_PROCESS, p) for p in [pids["worker"], *(q.pid for q in pool)]}
        assert workers == {min(19, base + 19)}
        assert os.getpriority(os.PRIO_PROCESS, pids["api"]) == base
        # ... which needs them in one session: with autogroup scheduling (Linux's default) each session
        # shares the CPU as one, and a nice counts only against processes of its own session.
        assert (
            len({os.getsid(pids["api"]), os.getsid(pids["worker"]), *(os.getsid(q.pid) for q in pool)}) == 1
        )
        assert "using the embedded Redis (redis-server)" in log
        assert redis_servers_on(stack.data_dir / "redis") == [pids["redis"]]

        # A worker killed outright comes back, and its pool processes go with the old one.
        old_worker = pids["worker"]
        old_pool = wait_until(lambda: descendants(old_worker), what="celery pool processes")
        os.kill(old_worker, signal.SIGKILL)
        new_worker = wait_until(
            lambda: (p := stack.child_pids().get("worker")) not in (None, old_worker) and p,
            what="a new worker process",
        )
        wait_until(lambda: not any(alive(p.pid) for p in old_pool), what="the old pool to be gone")
        wait_until(lambda: in_groups({old_worker}) == [], what="the old worker's group to be empty")
        assert f"worker (pid {old_worker}) was killed by SIGKILL" in stack.log()
        wait_until(lambda: descendants(new_worker), what="the new worker's pool")
        assert http_status(stack.endpoint_url + "/readyz") == 200

        # The embedded Redis killed outright comes back on the same data, and the service with it.
        client = redis.Redis.from_url(stack.redis_url)
        client.set("pcaq:test:survives", "1")
        client.close()
        # With appendfsync everysec Redis may answer a write before it reaches the append-only file (it
        # holds the write back for up to 2 s while an fsync is still running): wait until it is there,
        # in the page cache, where a SIGKILL of Redis cannot take it.
        aof = stack.data_dir / "redis" / "appendonlydir"
        wait_until(
            lambda: any(b"pcaq:test:survives" in f.read_bytes() for f in aof.glob("*.aof")),
            what="the write in the append-only file",
        )
        os.kill(pids["redis"], signal.SIGKILL)
        new_redis = wait_until(
            lambda: (p := redis_servers_on(stack.data_dir / "redis")) and p[0] != pids["redis"] and p[0],
            what="the embedded Redis to be started again",
        )
        wait_until(lambda: http_status(stack.endpoint_url + "/readyz") == 200, what="ready again")
        client = redis.Redis.from_url(stack.redis_url)
        assert client.get("pcaq:test:survives") == b"1"
        client.close()
        assert "exited with status -9; starting it again" in stack.log()
        pids["redis"] = new_redis

        # SIGTERM stops every child and the embedded Redis.
        stack.remember_groups()
        os.kill(stack.proc.pid, signal.SIGTERM)
        assert stack.proc.wait(30) == 0, stack.log()
        assert in_groups(stack.groups) == [], f"left running: {in_groups(stack.groups)}"
        assert not alive(pids["redis"])
        assert redis_servers_on(stack.data_dir / "redis") == []
        assert http_status(stack.endpoint_url + "/healthz") is None


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_pcaq_up_embedded_redis_lets_in_only_who_holds_its_password(tmp_path):
    with running_stack(tmp_path, workers=1) as stack:
        folder = stack.data_dir / "redis"
        assert stat.S_IMODE((folder / "password").stat().st_mode) == 0o600
        password = (folder / "password").read_text().strip()
        assert f":{password}@" in stack.redis_url  # built from the data folder, as pcaq's commands do
        redis_pid = stack.child_pids()["redis"]
        (port,) = listening_tcp_ports(redis_pid)  # loopback TCP, for operators' tools: also locked
        strangers = [
            redis.Redis(host="127.0.0.1", port=port),
            redis.Redis(unix_socket_path=str(folder / "redis.sock")),
            redis.Redis(host="127.0.0.1", port=port, password="not-the-password"),
        ]
        for client in strangers:
            for command in (client.ping, lambda c=client: c.get("pcaq:x"), lambda c=client: c.keys("*")):
                with pytest.raises(redis.AuthenticationError):
                    command()
            client.close()

        # The API, the worker and the broker connect with it: the stack issues.
        pca = boto3.client(
            "acm-pca",
            endpoint_url=stack.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
        )
        ca_arn, _ = activate_root(pca)
        cert, _, _ = fetch(pca, ca_arn, issue(pca, ca_arn, make_csr()))
        assert cert.subject.rfc4514_string() == "CN=leaf.example.com"

        # pcaq's own commands find the embedded Redis and its password in the data folder.
        audit = subprocess.run(
            pcaq_argv("audit", "--ca", ca_arn), env=stack.env, capture_output=True, text=True, timeout=60
        )
        assert audit.returncode == 0 and "CertificateIssued" in audit.stdout, audit.stdout + audit.stderr
        assert "REDIS_URL" not in stack.env

        # Nobody sees it: not in any command line (ps shows them to every user), nor in the output.
        processes = [stack.proc.pid, *(p.pid for p in descendants(stack.proc.pid))]
        assert redis_pid in processes and len(processes) >= 4  # redis-server, API, worker and their pools
        for pid in processes:
            assert password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), pid
    log = stack.log()
    assert "using the embedded Redis (redis-server) at unix://:***@" in log
    assert password not in log and password not in audit.stdout + audit.stderr


def test_pcaq_up_refuses_a_master_key_that_does_not_open_the_data(tmp_path):
    data_dir = tmp_path / "data"
    # The data folder's Redis already holds a check value written under another key.
    with er.embedded_redis(data_dir, er.REDIS_SERVER) as running:
        settings = load({"REDIS_URL": running.url, "PCAQ_DATA_DIR": str(data_dir)})
        store = Store.from_settings(settings)
        verify_master_key(store, secrets.token_bytes(32))
        store.r.close()

    env = base_env(data_dir, PCAQ_MASTER_KEY=_new_key())
    proc, log_path = start_pcaq_up(tmp_path, env, "up", "--port", str(free_port()), "--workers", "1")
    try:
        status = proc.wait(60)
    finally:
        kill_groups({proc.pid})
    log = log_path.read_text()
    assert status != 0
    assert re.search(r"^pcaq: the master key does not open the data stored in Redis", log, re.M), log
    assert "Traceback" not in log
    assert "started api" not in log and "started worker" not in log
    assert redis_servers_on(data_dir / "redis") == [], "the embedded Redis must be stopped on the way out"


def test_pcaq_up_refuses_a_malformed_master_key(tmp_path):
    env = base_env(tmp_path / "data", PCAQ_MASTER_KEY="not a key")
    proc, log_path = start_pcaq_up(tmp_path, env, "up", "--port", str(free_port()))
    assert proc.wait(30) != 0
    log = log_path.read_text()
    assert "pcaq: the master key from PCAQ_MASTER_KEY is malformed" in log, log
    assert "not a key" not in log and "Traceback" not in log
    assert not (tmp_path / "data" / "master.key").exists(), "a bad key must never be replaced by a new one"


def test_pcaq_up_without_redis_server_falls_back_to_fakeredis(tmp_path):
    # A fresh machine: nothing on PATH but this Python (pcaq up starts granian and celery through it).
    bare_path = str(Path(sys.executable).parent)
    assert shutil.which("redis-server", path=bare_path) is None
    with running_stack(tmp_path, env={"PATH": bare_path}) as stack:
        log = stack.log()
        assert "using the embedded Redis (fakeredis)" in log
        assert re.search(r"WARNING .*fakeredis.*slow \(about 17 tasks/s\)", log), log
        assert "redis" not in stack.child_pids()
        assert redis.Redis.from_url(stack.redis_url).ping()
        # fakeredis takes any password: it listens on no TCP port, only on a socket of its owner's.
        assert listening_tcp_ports(stack.proc.pid) == set()
        sock = stack.data_dir / "redis" / "redis.sock"
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

        # Ctrl-C at a terminal: SIGINT to the foreground process group, which holds pcaq up alone.
        stack.remember_groups()
        os.killpg(stack.proc.pid, signal.SIGINT)
        assert stack.proc.wait(30) == 0, stack.log()
        assert in_groups(stack.groups) == [], f"left running: {in_groups(stack.groups)}"
