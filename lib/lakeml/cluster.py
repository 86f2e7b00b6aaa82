"""The cluster stack on one machine: HDFS, PostgreSQL (metastore + MLflow), MLflow server,
Spark standalone master + worker, Spark Thrift Server.

    ./scripts/cluster.sh up | down | status | logs [SERVICE]

Every service is a real server process started here, bound to 127.0.0.1 on a fixed port,
with its data, logs and pid file under ``var/cluster/`` (``LAKEML_CLUSTER_DIR``). ``up``
starts what is not running, in dependency order, and waits on a readiness check per
service (a query, not a sleep); ``down`` stops only the processes its pid files name,
after checking that the pid still belongs to that service. The PostgreSQL password comes
from ``LAKEML_PG_PASSWORD`` and nowhere else.

The ports are the ones ``conf/envs/cluster.yaml`` points at; both read the same
variables (``LAKEML_PG_PORT`` ...), so moving a port is one variable.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class StackError(RuntimeError):
    """A service could not be started or stopped; the message says which and why."""


def _port(var: str, default: int) -> int:
    return int(os.environ.get(var, default))


@dataclass
class Ports:
    postgres: int = field(default_factory=lambda: _port("LAKEML_PG_PORT", 5433))
    namenode: int = field(default_factory=lambda: _port("LAKEML_HDFS_PORT", 9000))
    webhdfs: int = field(default_factory=lambda: _port("LAKEML_WEBHDFS_PORT", 9870))
    mlflow: int = field(default_factory=lambda: _port("LAKEML_MLFLOW_PORT", 5000))
    spark_master: int = field(default_factory=lambda: _port("LAKEML_SPARK_MASTER_PORT", 7077))
    spark_master_ui: int = field(default_factory=lambda: _port("LAKEML_SPARK_MASTER_UI_PORT", 8080))
    spark_worker_ui: int = field(default_factory=lambda: _port("LAKEML_SPARK_WORKER_UI_PORT", 8081))
    thrift: int = field(default_factory=lambda: _port("LAKEML_THRIFT_PORT", 10000))


HOST = "127.0.0.1"


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _http_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _http_text(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def pg_bindir() -> Path:
    """The PostgreSQL server binaries (Debian puts them under /usr/lib/postgresql/<v>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    exe = shutil.which("postgres")
    if exe:
        return Path(exe).parent
    raise StackError("PostgreSQL server not installed: run `make setup-cluster` (installs the Debian package postgresql)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


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


class Stack:
    def __init__(self, base: str | Path | None = None, ports: Ports | None = None):
        self.base = Path(base or os.environ.get("LAKEML_CLUSTER_DIR") or PROJECT_ROOT / "var" / "cluster").resolve()
        self.ports = ports or Ports()
        self.py = Path(sys.executable)
        self.services = _services(self)

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
        if _pid_alive(pid) and s.marker in _cmdline(pid):
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
    def up(self, names: list[str] | None = None) -> None:
        todo = [self.get(n) for n in names] if names else self.services
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
                f"(variables in lib/lakeml/cluster.py: Ports)"
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
        while time.time() < deadline:
            if proc is not None and proc.poll() is not None or not _pid_alive(pid):
                self.pid_file(s).unlink(missing_ok=True)
                raise StackError(f"{s.name} exited while starting. Last lines of {self.log_file(s)}:\n{tail(self.log_file(s))}")
            try:
                if s.ready(self):
                    return
            except Exception:
                pass
            time.sleep(1)
        raise StackError(
            f"{s.name} did not become ready within {s.timeout:.0f}s (pid {pid} still running). "
            f"Last lines of {self.log_file(s)}:\n{tail(self.log_file(s))}"
        )

    def down(self) -> None:
        for s in reversed(self.services):
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
            except Exception:
                ok = False
            health = "ready" if ok else ("starting or unhealthy" if pid else ("down (port taken by another process)" if port_open(s.port) else "down"))
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
            if not _pid_alive(pid):
                # reap it if it is our child (tests run up/down in-process)
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                return
            time.sleep(0.2)


# --------------------------------------------------------------------------- services


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the Debian package's postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _pg_prepare(stack: Stack) -> None:
    data = stack.base / "postgres"
    if (data / "PG_VERSION").is_file():
        return
    data.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        os.chmod(data, 0o700)
        # the postgres user must be able to reach its data dir
        p = data.parent
        while p != p.parent:
            p.chmod(p.stat().st_mode | 0o001)
            p = p.parent
    pwfile = stack.base / "run" / ".pgpass-init"
    pwfile.write_text(stack.password() + "\n")
    os.chmod(pwfile, 0o600)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    try:
        subprocess.run(
            _as_pg_user([str(pg_bindir() / "initdb"), "-D", str(data), "-U", "lakeml", f"--pwfile={pwfile}",
                         "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]),
            check=True, capture_output=True, text=True,
        )
    except subprocess.CalledProcessError as e:
        raise StackError(f"postgres: initdb failed:\n{e.stdout}\n{e.stderr}") from e
    finally:
        pwfile.unlink(missing_ok=True)


def _pg_connect(stack: Stack, db: str = "postgres"):
    import psycopg2

    return psycopg2.connect(host=HOST, port=stack.ports.postgres, user="lakeml", password=stack.password(), dbname=db, connect_timeout=2)


def _pg_ready(stack: Stack) -> bool:
    try:
        _pg_connect(stack).close()
        return True
    except Exception:
        return False


def _pg_databases(stack: Stack) -> None:
    conn = _pg_connect(stack)
    conn.autocommit = True
    with conn.cursor() as cur:
        for db in ("metastore", "mlflow"):
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{db}"')
    conn.close()


def _metastore_schema(stack: Stack) -> None:
    """Create the Hive metastore schema up front, with DataNucleus' SchemaTool over the
    metastore's own package.jdo (from the hive-metastore jar Spark ships). Left to lazy
    creation (datanucleus.schema.autoCreateAll), PostgreSQL deadlocks: the first CREATE
    TABLE alters TBL_PRIVS from a second connection while the first holds TBLS."""
    conn = _pg_connect(stack, "metastore")
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('\"TBLS\"') IS NOT NULL")
        exists = cur.fetchone()[0]
    conn.close()
    if exists:
        return
    import zipfile

    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    work = stack.base / "run" / "metastore-schema"
    work.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(next(jars.glob("hive-metastore-*.jar"))) as z:
        (work / "package.jdo").write_bytes(z.read("package.jdo"))
    props = work / "datanucleus.properties"
    props.touch(mode=0o600)
    props.write_text(
        f"javax.jdo.option.ConnectionURL=jdbc:postgresql://{HOST}:{stack.ports.postgres}/metastore\n"
        "javax.jdo.option.ConnectionDriverName=org.postgresql.Driver\n"
        "javax.jdo.option.ConnectionUserName=lakeml\n"
        f"javax.jdo.option.ConnectionPassword={stack.password()}\n"
        # the identifiers and value strategy Hive's ObjectStore uses
        "datanucleus.identifierFactory=datanucleus1\n"
        "datanucleus.rdbms.useLegacyNativeValueStrategy=true\n"
        "datanucleus.storeManagerType=rdbms\n"
    )
    from lakeml.session import jars_dir

    driver = ":".join(str(p) for p in jars_dir(PROJECT_ROOT).glob("postgresql-*.jar"))
    try:
        out = subprocess.run(
            ["java", "-cp", f"{jars}/*:{driver}", "org.datanucleus.store.schema.SchemaTool", "-create", "-api", "JDO",
             "-props", str(props), str(work / "package.jdo")],
            capture_output=True, text=True, cwd=work, timeout=300,
        )
    finally:
        props.unlink(missing_ok=True)
    if out.returncode != 0 or "completed successfully" not in out.stdout + out.stderr:
        raise StackError(f"postgres: creating the Hive metastore schema failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    print("postgres      Hive metastore schema created")


def _pg_after_start(stack: Stack) -> None:
    _pg_databases(stack)
    _metastore_schema(stack)


def _hdfs_cmd(stack: Stack) -> list[str]:
    from lakeml import hdfs_service

    base = stack.base / "hdfs"
    return hdfs_service.hdfs_command(
        hdfs_service.jars_dir(PROJECT_ROOT), base, nn_port=stack.ports.namenode, http_port=stack.ports.webhdfs,
        format=not hdfs_service.is_formatted(base),
    )


def _hdfs_ready(stack: Stack) -> bool:
    from lakeml import hdfs_service

    return hdfs_service.webhdfs_ready(f"http://{HOST}:{stack.ports.webhdfs}", timeout=2)


def _spark_class() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def _master_state(stack: Stack) -> dict:
    return _http_json(f"http://{HOST}:{stack.ports.spark_master_ui}/json/")


def _mlflow_env(stack: Stack) -> dict[str, str]:
    # the password goes in through the environment, never on a command line
    return {"MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://lakeml:{stack.password()}@{HOST}:{stack.ports.postgres}/mlflow"}


def _thrift_cmd(stack: Stack) -> list[str]:
    from lakeml.config import load_env
    from lakeml.submit import common_flags, spark_bin

    env = load_env(PROJECT_ROOT / "conf", "cluster")
    flags = common_flags(env)
    # the SQL endpoint runs its own local executors, so analysts' queries never wait for a
    # job to free the worker's cores (and a job never waits for them)
    flags[flags.index("--master") + 1] = "local[2]"
    # HiveServer2 sessions load classes through their own class loader, which does not see
    # --jars (delta-io/delta#1332): Delta goes on the driver's system class path as well
    from lakeml.session import jar_paths

    cp = ":".join(jar_paths(PROJECT_ROOT))
    flags = [f"spark.driver.extraClassPath={cp}" if f.startswith("spark.driver.extraClassPath=") else f for f in flags]
    if f"spark.driver.extraClassPath={cp}" not in flags:
        flags += ["--conf", f"spark.driver.extraClassPath={cp}"]
    return [
        spark_bin("spark-submit"), "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
        "--name", "lakeml-thriftserver", *flags,
        "--conf", "spark.sql.hive.thriftServer.singleSession=false",
        # HiveServer2 turns on java.time dates, and Delta's metadata-only answer to
        # min/max(date) still builds java.sql.Date: ClassCastException. Compute it instead.
        "--conf", "spark.databricks.delta.optimizeMetadataQuery.enabled=false",
        "--hiveconf", f"hive.server2.thrift.bind.host={HOST}",
        "--hiveconf", f"hive.server2.thrift.port={stack.ports.thrift}",
        "--hiveconf", "hive.server2.transport.mode=binary",
        "spark-internal",
    ]


def _thrift_ready(stack: Stack) -> bool:
    if not port_open(stack.ports.thrift):
        return False
    from pyhive import hive

    conn = hive.connect(host=HOST, port=stack.ports.thrift, username="lakeml")
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        return cur.fetchall() == [(1,)]
    finally:
        conn.close()


def _services(stack: Stack) -> list[Service]:
    p = stack.ports
    venv_bin = Path(sys.executable).parent
    return [
        Service(
            "postgres", f"postgresql://{HOST}:{p.postgres} (databases metastore, mlflow)", p.postgres,
            marker="postgres",
            prepare=_pg_prepare,
            command=lambda st: _as_pg_user([
                str(pg_bindir() / "postgres"), "-D", str(st.base / "postgres"),
                "-c", f"listen_addresses={HOST}", "-p", str(st.ports.postgres),
                "-c", f"unix_socket_directories={st.base / 'postgres'}",
                # every Spark driver (jobs, notebooks, the Thrift Server) opens metastore
                # connection pools, and MLflow its own: the default 100 runs out
                "-c", "max_connections=300",
            ]),
            ready=_pg_ready,
            after_start=_pg_after_start,
            timeout=60,
        ),
        Service(
            "hdfs", f"hdfs://{HOST}:{p.namenode} (WebHDFS http://{HOST}:{p.webhdfs})", p.namenode,
            marker="MiniHadoopClusterManager", command=_hdfs_cmd, ready=_hdfs_ready, timeout=180,
        ),
        Service(
            "mlflow", f"http://{HOST}:{p.mlflow}", p.mlflow, marker="mlflow",
            command=lambda st: [
                str(venv_bin / "mlflow"), "server", "--host", HOST, "--port", str(st.ports.mlflow),
                "--serve-artifacts", "--artifacts-destination", str(st.base / "mlflow-artifacts"), "--workers", "1",
            ],
            env=_mlflow_env,
            ready=lambda st: _http_text(f"http://{HOST}:{st.ports.mlflow}/health").strip() == "OK",
            timeout=120,
        ),
        Service(
            "spark-master", f"spark://{HOST}:{p.spark_master} (UI http://{HOST}:{p.spark_master_ui})", p.spark_master,
            marker="deploy.master.Master",
            command=lambda st: [_spark_class(), "org.apache.spark.deploy.master.Master", "--host", HOST,
                                "--port", str(st.ports.spark_master), "--webui-port", str(st.ports.spark_master_ui)],
            ready=lambda st: _master_state(st).get("status") == "ALIVE",
            timeout=90,
        ),
        Service(
            "spark-worker", f"{os.environ.get('LAKEML_WORKER_CORES', '2')} cores (UI http://{HOST}:{p.spark_worker_ui})",
            p.spark_worker_ui, marker="deploy.worker.Worker",
            command=lambda st: [_spark_class(), "org.apache.spark.deploy.worker.Worker", f"spark://{HOST}:{st.ports.spark_master}",
                                "--host", HOST, "--webui-port", str(st.ports.spark_worker_ui),
                                "--cores", os.environ.get("LAKEML_WORKER_CORES", "2"),
                                "--memory", os.environ.get("LAKEML_WORKER_MEMORY", "6g"),
                                "--work-dir", str(st.base / "spark-work")],
            ready=lambda st: _master_state(st).get("aliveworkers", 0) >= 1,
            timeout=90,
        ),
        Service(
            "thriftserver", f"jdbc:hive2://{HOST}:{p.thrift}", p.thrift, marker="HiveThriftServer2",
            command=_thrift_cmd, ready=_thrift_ready, timeout=240,
        ),
    ]


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = "usage: cluster.sh up [SERVICE ...] | down | status | logs [SERVICE]"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    stack = Stack()
    cmd, rest = argv[0], argv[1:]
    try:
        if cmd == "up":
            stack.up(rest or None)
            _print_status(stack)
        elif cmd == "down":
            stack.down()
        elif cmd == "status":
            rows = _print_status(stack)
            return 0 if all(r[3] == "ready" for r in rows) else 3
        elif cmd == "logs":
            for s in [stack.get(n) for n in rest] or stack.services:
                print(f"==> {stack.log_file(s)} <==\n{tail(stack.log_file(s), 60)}\n")
        else:
            print(usage, file=sys.stderr)
            return 2
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _print_status(stack: Stack) -> list[tuple[str, str, str, str]]:
    rows = stack.status()
    print(f"{'SERVICE':13} {'PID':>8}  {'HEALTH':10} ADDRESS")
    for name, addr, pid, health in rows:
        print(f"{name:13} {pid:>8}  {health:10} {addr}")
    print(f"data and logs: {stack.base}")
    return rows


if __name__ == "__main__":
    sys.exit(main())
