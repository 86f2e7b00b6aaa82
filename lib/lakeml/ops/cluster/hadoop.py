"""What the stack's Hadoop daemons share: one configuration folder, the java command, Java 17 flags.

The HDFS daemons (NameNode, DataNode: :mod:`lakeml.ops.cluster.hdfs`) and the YARN daemons
(ResourceManager, NodeManager: :mod:`lakeml.ops.cluster.yarn`) are Hadoop 3.4.2's own
``main`` classes, each in a JVM of its own, as on a real cluster. They read one configuration
folder, ``<stack>/hadoop-conf`` (core-site, hdfs-site, yarn-site, capacity-scheduler,
log4j), which is also the ``HADOOP_CONF_DIR`` that ``--env yarn`` hands to ``spark-submit``.
Every file of it is defined here (:func:`core_site`, :func:`hdfs_site`, :func:`yarn_site`,
``CAPACITY_SCHEDULER``), with what they are made of (where HDFS keeps its blocks, what the
NodeManager offers): any daemon's start writes the whole folder (:func:`write_conf`; every
start, the ports may have moved), so it must know all of them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

from lakeml.ops.cluster.supervisor import HOST, Stack

# Hadoop 3.4 on Java 17: Guice and Jersey (the REST APIs) and Hadoop's reflection need these modules open
JAVA17_OPENS = [f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
    "java.lang", "java.lang.reflect", "java.util", "java.util.concurrent", "java.io", "java.net", "java.nio", "sun.nio.ch",
)]  # fmt: skip

LOG4J = """log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.yarn.server.nodemanager.containermanager.monitor=WARN
log4j.logger.com.sun.jersey=WARN
"""

HEARTBEAT_S = 3  # dfs.heartbeat.interval

CAPACITY_SCHEDULER = {
    "yarn.scheduler.capacity.root.queues": "default",
    "yarn.scheduler.capacity.root.default.capacity": "100",
    "yarn.scheduler.capacity.root.default.maximum-capacity": "100",
    # one node: the application masters may hold half of it (default 10 %: one driver)
    "yarn.scheduler.capacity.maximum-am-resource-percent": "0.5",
}


def java_bin() -> str:
    """$JAVA_HOME/bin/java if there is one, else java on the PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java") or "java"


def java_home() -> str:
    """JAVA_HOME for processes that need one (YARN's ``launch_container.sh`` runs ``$JAVA_HOME/bin/java``)."""
    return os.environ.get("JAVA_HOME") or str(Path(os.path.realpath(java_bin())).parent.parent)


def conf_dir(stack: Stack) -> Path:
    return stack.base / "hadoop-conf"


def dfs_dir(stack: Stack) -> Path:
    """Where HDFS keeps its state: the NameNode's image and edits, the DataNode's blocks."""
    return stack.base / "hdfs" / "dfs"


def node_memory_mb() -> int:
    """What the NodeManager offers: ``LAKEML_YARN_MEMORY_MB``, else a third of this machine's memory."""
    if os.environ.get("LAKEML_YARN_MEMORY_MB"):
        return int(os.environ["LAKEML_YARN_MEMORY_MB"])
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return max(4096, total // 3 // 512 * 512)


def node_vcores() -> int:
    return int(os.environ.get("LAKEML_YARN_VCORES") or os.cpu_count() or 2)


def core_site(stack: Stack) -> dict[str, str]:
    return {
        "fs.defaultFS": f"hdfs://{HOST}:{stack.ports.namenode}",
        "hadoop.tmp.dir": str(stack.base / "hadoop-tmp"),
    }


def hdfs_site(stack: Stack) -> dict[str, str]:
    """hdfs-site.xml of the stack: the daemons' storage and addresses, the clients' behaviour."""
    p, dfs = stack.ports, dfs_dir(stack)
    return {
        "dfs.namenode.name.dir": f"{dfs / 'name-0-1'},{dfs / 'name-0-2'}",
        "dfs.datanode.data.dir": f"{dfs / 'data' / 'data1'},{dfs / 'data' / 'data2'}",
        "dfs.namenode.rpc-address": f"{HOST}:{p.namenode}",
        "dfs.namenode.http-address": f"{HOST}:{p.webhdfs}",
        "dfs.namenode.secondary.http-address": f"{HOST}:0",
        "dfs.datanode.address": f"{HOST}:{p.datanode}",
        "dfs.datanode.http.address": f"{HOST}:{p.datanode_ui}",
        "dfs.datanode.ipc.address": f"{HOST}:0",
        # the DataNode registers as 127.0.0.1, so WebHDFS redirects and the hdfs:// client
        # reach it on the loopback address its ports are bound to (not the machine's hostname)
        "dfs.datanode.hostname": HOST,
        "dfs.heartbeat.interval": str(HEARTBEAT_S),
        # any client user may write anywhere (a local dev HDFS, not a secured one)
        "dfs.permissions.enabled": "false",
        "dfs.replication": "1",
        "dfs.webhdfs.enabled": "true",
        # safe mode ends only when the DataNode is registered and has reported every block:
        # with the default 0.999 a namespace of < 1000 blocks leaves safe mode at once (the
        # threshold truncates to 0 blocks), so right after a restart reads could fail with
        # "No active nodes contain this block" although readiness said yes
        "dfs.namenode.safemode.threshold-pct": "1.0",
        "dfs.namenode.safemode.min.datanodes": "1",
        "dfs.namenode.safemode.extension": "0",
        # a file's close is often "COMMITTED but not COMPLETE" for a moment with one DataNode;
        # the client's first retry waits 400 ms by default: landing 100 files over WebHDFS
        # took 2-3x longer than with 20 ms (measured)
        "dfs.client.block.write.locateFollowingBlock.initial.delay.ms": "20",
    }


def yarn_site(stack: Stack) -> dict[str, str]:
    """yarn-site.xml of the stack: the daemons' addresses and folders, what the node offers."""
    p = stack.ports
    base = stack.base / "yarn"
    mem = node_memory_mb()
    return {
        "yarn.resourcemanager.hostname": HOST,
        "yarn.resourcemanager.address": f"{HOST}:{p.yarn_rm}",
        "yarn.resourcemanager.scheduler.address": f"{HOST}:{p.yarn_rm - 2}",
        "yarn.resourcemanager.resource-tracker.address": f"{HOST}:{p.yarn_rm - 1}",
        "yarn.resourcemanager.admin.address": f"{HOST}:{p.yarn_rm + 1}",
        "yarn.resourcemanager.webapp.address": f"{HOST}:{p.yarn_rm_ui}",
        "yarn.nodemanager.hostname": HOST,
        "yarn.nodemanager.address": f"{HOST}:{p.yarn_nm}",
        "yarn.nodemanager.localizer.address": f"{HOST}:{p.yarn_nm - 1}",
        "yarn.nodemanager.webapp.address": f"{HOST}:{p.yarn_nm_ui}",
        "yarn.nodemanager.local-dirs": str(base / "nm-local"),
        "yarn.nodemanager.log-dirs": str(base / "nm-logs"),
        # container logs stay on the node (no aggregation service here) for a day
        "yarn.nodemanager.log.retain-seconds": "86400",
        "yarn.nodemanager.resource.memory-mb": str(mem),
        "yarn.nodemanager.resource.cpu-vcores": str(node_vcores()),
        "yarn.scheduler.minimum-allocation-mb": "256",
        "yarn.scheduler.maximum-allocation-mb": str(mem),
        "yarn.nodemanager.vmem-check-enabled": "false",
        # a full disk of the one node must not take it out of service for a small stack
        "yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage": "98",
        # an application master that dies is started again once (Spark: spark.yarn.maxAppAttempts)
        "yarn.resourcemanager.am.max-attempts": "2",
    }


def site_xml(props: dict[str, str]) -> str:
    rows = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n" for k, v in props.items())
    return (
        '<?xml version="1.0"?>\n<!-- written by lakeml.ops.cluster.hadoop; rewritten at every start -->\n'
        f"<configuration>\n{rows}</configuration>\n"
    )


def write_conf(stack: Stack) -> Path:
    """The stack's Hadoop configuration folder, every file of it (the daemons' and the jobs')."""
    d = conf_dir(stack)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "core-site.xml": core_site(stack),
        "hdfs-site.xml": hdfs_site(stack),
        "yarn-site.xml": yarn_site(stack),
        "capacity-scheduler.xml": CAPACITY_SCHEDULER,
    }
    for name, props in files.items():
        (d / name).write_text(site_xml(props))
    (d / "log4j.properties").write_text(LOG4J)
    return d


def daemon_command(stack: Stack, jars: Path, main_class: str, heap: str, *args: str) -> list[str]:
    """``java ... main_class args`` with the stack's configuration folder first on the class path."""
    cp = os.pathsep.join([str(conf_dir(stack)), str(Path(jars).resolve() / "*")])
    return [java_bin(), "-Xms64m", f"-Xmx{heap}", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true", *JAVA17_OPENS,
            f"-Dhadoop.log.dir={stack.base / 'logs'}", "-cp", cp, main_class, *args]
