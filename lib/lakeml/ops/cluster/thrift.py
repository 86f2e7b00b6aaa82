"""The Spark Thrift Server (HiveServer2) on the shared metastore, Delta on its class path."""

from __future__ import annotations

from lakeml.core.paths import CONF_DIR, PROJECT_ROOT
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, port_open


def _thrift_cmd(stack: Stack) -> list[str]:
    from lakeml.core.config import load_env
    from lakeml.ops.submit import common_flags, spark_bin

    env = load_env(CONF_DIR, "cluster")
    flags = common_flags(env)
    # the SQL endpoint runs its own local executors, so analysts' queries never wait for a
    # job to free the worker's cores (and a job never waits for them)
    flags[flags.index("--master") + 1] = "local[2]"
    # ... inside its own JVM: the heap of a driver that runs the tasks too (a job's driver only drives)
    flags = ["spark.driver.memory=2g" if f.startswith("spark.driver.memory=") else f for f in flags]
    # HiveServer2 sessions load classes through their own class loader, which does not see
    # --jars (delta-io/delta#1332): Delta goes on the driver's system class path as well
    from lakeml.core.session import jar_paths

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


def service(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "thriftserver", f"jdbc:hive2://{HOST}:{p.thrift}", p.thrift, marker="HiveThriftServer2",
        command=_thrift_cmd, ready=_thrift_ready, timeout=240, needs_password=True,
    )
