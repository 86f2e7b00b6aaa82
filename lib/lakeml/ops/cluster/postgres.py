"""PostgreSQL (the Debian package) for the Hive metastore and MLflow: its own data folder,
127.0.0.1 only, password from ``LAKEML_PG_PASSWORD`` only; the databases and the metastore
schema are created when it first comes up."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from lakeml.core.paths import PROJECT_ROOT
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, StackError


def pg_bindir() -> Path:
    """The PostgreSQL server binaries (Debian puts them under /usr/lib/postgresql/<v>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    exe = shutil.which("postgres")
    if exe:
        return Path(exe).parent
    raise StackError("PostgreSQL server not installed: run ./scripts/setup.sh --cluster (installs the Debian package postgresql)")


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


def connect(stack: Stack, db: str = "postgres"):
    """A psycopg2 connection to database ``db`` of the stack's PostgreSQL, as user lakeml."""
    import psycopg2

    return psycopg2.connect(host=HOST, port=stack.ports.postgres, user="lakeml", password=stack.password(), dbname=db, connect_timeout=2)


def _pg_ready(stack: Stack) -> bool:
    import psycopg2

    try:
        connect(stack).close()
        return True
    except psycopg2.Error:  # refused, still starting up, or shutting down
        return False


def _pg_databases(stack: Stack) -> None:
    conn = connect(stack)
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
    conn = connect(stack, "metastore")
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
    from lakeml.core.session import jars_dir

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


def service(stack: Stack) -> Service:
    p = stack.ports
    return Service(
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
        needs_password=True,
    )
