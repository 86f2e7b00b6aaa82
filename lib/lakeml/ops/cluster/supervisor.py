"""A process supervisor for local servers: start, wait until ready, status, stop.

Each ``Service`` says how to start one server (its command, environment, preparation),
how to recognise its process (a marker in the command line) and when it is ready (a real
query, not a sleep). ``Stack`` runs a list of them in dependency order, each in its own
process group, with data, logs and a pid file under one folder; ``down`` stops only the
processes its pid files name, after checking that the pid still belongs to that service.

Generic: it knows no service. The recipes are the sibling modules (postgres, hdfs, yarn,
mlflow_server, spark_standalone, history, thrift), each importing this one; the project's
stack, the list ``./scripts/cluster.sh`` runs, is put together on top of them in
``lakeml.ops.cluster.stack``. ``Ports`` holds every port of that stack (each read from its
own variable), so a recipe finds its own and its neighbours' on ``stack.ports``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lakeml.core import lock
from lakeml.core.errors import LakemlError
from lakeml.core.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class StackError(LakemlError):
    """A service could not be started or stopped; the message says which and why."""


def _port(var: str, default: int) -> int:
    return int(os.environ.get(var, default))


@dataclass
class Ports:
    postgres: int = field(default_factory=lambda: _port("LAKEML_PG_PORT", 5433))
    namenode: int = field(default_factory=lambda: _port("LAKEML_HDFS_PORT", 9000))
    webhdfs: int = field(default_factory=lambda: _port("LAKEML_WEBHDFS_PORT", 9870))
    datanode: int = field(default_factory=lambda: _port("LAKEML_HDFS_DATANODE_PORT", 9866))
    datanode_ui: int = field(default_factory=lambda: _port("LAKEML_HDFS_DATANODE_UI_PORT", 9864))
    mlflow: int = field(default_factory=lambda: _port("LAKEML_MLFLOW_PORT", 5000))
    spark_master: int = field(default_factory=lambda: _port("LAKEML_SPARK_MASTER_PORT", 7077))
    spark_master_ui: int = field(default_factory=lambda: _port("LAKEML_SPARK_MASTER_UI_PORT", 8080))
    spark_worker_ui: int = field(default_factory=lambda: _port("LAKEML_SPARK_WORKER_UI_PORT", 8081))
    thrift: int = field(default_factory=lambda: _port("LAKEML_THRIFT_PORT", 10000))
    # YARN: the ResourceManager's client port (its scheduler, tracker and admin ports are the
    # two below and the one above it), its UI/REST; the NodeManager's port (its localizer
    # is the one below), its UI/REST
    yarn_rm: int = field(default_factory=lambda: _port("LAKEML_YARN_RM_PORT", 8032))
    yarn_rm_ui: int = field(default_factory=lambda: _port("LAKEML_YARN_RM_UI_PORT", 8088))
    yarn_nm: int = field(default_factory=lambda: _port("LAKEML_YARN_NM_PORT", 8041))
    yarn_nm_ui: int = field(default_factory=lambda: _port("LAKEML_YARN_NM_UI_PORT", 8042))
    history_ui: int = field(default_factory=lambda: _port("LAKEML_HISTORY_UI_PORT", 18080))
    redis: int = field(default_factory=lambda: _port("LAKEML_REDIS_PORT", 6380))  # the online store


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def http_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 64 * 1024))
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Service:
    name: str
    address: str
    port: int
    marker: str  # a string the process's command line contains (to recognise our pid)
    command: Callable[[Stack], list[str]]
    ready: Callable[[Stack], bool]
    env: Callable[[Stack], dict[str, str]] = lambda stack: {}
    prepare: Callable[[Stack], None] = lambda stack: None
    after_start: Callable[[Stack], None] = lambda stack: None
    timeout: float = 180.0
    needs_password: bool = False  # it reads LAKEML_PG_PASSWORD (checked before anything starts)


class Stack:
    """The services ``services(stack)`` lists, run in that order, with their data, logs and
    pid files under ``base`` (default ``$LAKEML_CLUSTER_DIR``, else ``var/cluster``)."""

    def __init__(
        self,
        base: str | Path | None = None,
        ports: Ports | None = None,
        *,
        services: Callable[[Stack], list[Service]],
    ):
        self.base = Path(base or os.environ.get("LAKEML_CLUSTER_DIR") or PROJECT_ROOT / "var" / "cluster").resolve()
        self.ports = ports or Ports()
        self.py = Path(sys.executable)
        self.services = services(self)

    # paths ------------------------------------------------------------------------
    def pid_file(self, s: Service) -> Path:
        return self.base / "run" / f"{s.name}.pid"

    def log_file(self, s: Service) -> Path:
        return self.base / "logs" / f"{s.name}.log"

    def get(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise StackError(f"no service {name!r}; services: {', '.join(s.name for s in self.services)}")

    # state ------------------------------------------------------------------------
    def pid(self, s: Service) -> int | None:
        """The live pid of ``s`` from its pid file; a stale file is removed with a note."""
        f = self.pid_file(s)
        if not f.is_file():
            return None
        try:
            pid = int(f.read_text().split()[0])
        except (ValueError, IndexError):
            print(f"{s.name}: unreadable pid file {f}; removing it", file=sys.stderr)
            f.unlink()
            return None
        if lock.pid_alive(pid) and s.marker in _cmdline(pid):
            return pid
        print(f"{s.name}: stale pid file {f} (process {pid} is gone); removing it", file=sys.stderr)
        f.unlink()
        return None

    def password(self) -> str:
        pw = os.environ.get("LAKEML_PG_PASSWORD")
        if not pw:
            raise StackError(
                "LAKEML_PG_PASSWORD is not set: the PostgreSQL password comes only from the environment. "
                "Set it, e.g. `export LAKEML_PG_PASSWORD=$(openssl rand -hex 16)`, and use the same value for jobs."
            )
        return pw

    # lifecycle ----------------------------------------------------------------------
    def named(self, names: list[str] | None) -> list[Service]:
        """The services ``names`` lists (in that order), or all of them."""
        return [self.get(n) for n in names] if names else self.services

    def up(self, names: list[str] | None = None) -> None:
        todo = self.named(names)
        if any(s.needs_password for s in todo):
            self.password()
        for s in todo:
            self._start(s)

    def _start(self, s: Service) -> None:
        pid = self.pid(s)
        if pid is not None:
            if not s.ready(self):
                self._wait(s, pid)
            s.after_start(self)  # idempotent: e.g. databases dropped by hand come back
            print(f"{s.name:13} already up (pid {pid}) at {s.address}")
            return
        if port_open(s.port):
            raise StackError(
                f"{s.name}: port {HOST}:{s.port} is already taken by a process this stack did not start "
                f"(see `ss -ltnp 'sport = :{s.port}'`); stop it or move the port "
                f"(variables: Ports in lib/lakeml/ops/cluster/supervisor.py)"
            )
        (self.base / "run").mkdir(parents=True, exist_ok=True)
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        s.prepare(self)
        log = self.log_file(s)
        env = {**os.environ, "SPARK_LOCAL_IP": HOST, "PYSPARK_PYTHON": str(self.py), **s.env(self)}
        t0 = time.time()
        with open(log, "ab") as out:
            out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {s.name}\n".encode())
            out.flush()
            p = subprocess.Popen(
                s.command(self), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.base, start_new_session=True,
            )
        self.pid_file(s).write_text(f"{p.pid}\n")
        self._wait(s, p.pid, p)
        s.after_start(self)
        print(f"{s.name:13} up (pid {p.pid}) at {s.address} in {time.time() - t0:.0f}s")

    def _wait(self, s: Service, pid: int, proc: subprocess.Popen | None = None) -> None:
        deadline = time.time() + s.timeout
        failed = ""  # what the last readiness check raised, if it raised
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None or not lock.pid_alive(pid):  # a zombie child of ours is gone
                self.pid_file(s).unlink(missing_ok=True)
                raise StackError(f"{s.name} exited while starting. Last lines of {self.log_file(s)}:\n{tail(self.log_file(s))}")
            try:
                if s.ready(self):
                    return
                failed = ""
            except Exception as e:  # noqa: BLE001 - a server still starting fails a check in its own way (refused, 503, half an answer)
                failed = f"{type(e).__name__}: {e}"
                log.debug("%s: not ready yet: %s", s.name, failed)
            time.sleep(1)
        raise StackError(
            f"{s.name} did not become ready within {s.timeout:.0f}s (pid {pid} still running"
            + (f"; its last readiness check failed with {failed}" if failed else "")
            + f"). Last lines of {self.log_file(s)}:\n{tail(self.log_file(s))}"
        )

    def down(self, names: list[str] | None = None) -> None:
        for s in reversed(self.named(names)):
            pid = self.pid(s)
            if pid is None:
                continue
            _stop_group(pid)
            self.pid_file(s).unlink(missing_ok=True)
            print(f"{s.name:13} stopped (pid {pid})")

    def status(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for s in self.services:
            pid = self.pid(s)
            try:
                ok = pid is not None and s.ready(self)
            except Exception as e:  # noqa: BLE001 - any failed check means "not ready"; what failed goes to the debug log
                log.debug("%s: readiness check failed: %s: %s", s.name, type(e).__name__, e)
                ok = False
            if ok:
                health = "ready"
            elif pid:
                health = "starting or unhealthy"
            else:
                health = "down (port taken by another process)" if port_open(s.port) else "down"
            rows.append((s.name, s.address, str(pid or "-"), health))
        return rows


def _stop_group(pid: int, timeout: float = 30.0) -> None:
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not lock.pid_alive(pid):
                # reap it if it is our child (tests run up/down in-process)
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                return
            time.sleep(0.2)
