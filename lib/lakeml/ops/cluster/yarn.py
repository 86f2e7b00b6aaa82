"""YARN on this machine: Hadoop's own ResourceManager and one NodeManager, each a JVM of its own.

The daemons are the unshaded Hadoop 3.4.2 server jars (``scripts/resolve_jars.sh yarn`` puts
them in ``.cache/yarn``), the Hadoop that pyspark 4.1.2's ``spark-yarn`` client speaks to.
Every port listens on 127.0.0.1. The NodeManager offers ``LAKEML_YARN_MEMORY_MB`` (default: a
third of this machine's memory) and ``LAKEML_YARN_VCORES`` (default: its cores); containers
are real processes it launches (``launch_container.sh``), killed by its memory monitor when
their process tree outgrows what they asked for (virtual memory is not checked: a JVM
reserves far more than it uses).

:func:`site` is their part of the stack's Hadoop configuration folder
(:func:`lakeml.ops.cluster.hadoop.write_conf`: ``<stack>/hadoop-conf``), which ``spark-submit``
also gets as ``HADOOP_CONF_DIR``: what ``conf/envs/yarn.yaml`` points at unless
``HADOOP_CONF_DIR`` is set (``core-site.xml``: the stack's HDFS is the default file system;
``yarn-site.xml``: where the ResourceManager is).
"""

from __future__ import annotations

import os
from pathlib import Path

from lakeml.core.errors import SetupError
from lakeml.ops.cluster.hadoop import daemon_command, java_home, write_conf
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, http_json

RM_CLASS = "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager"
NM_CLASS = "org.apache.hadoop.yarn.server.nodemanager.NodeManager"
# Hadoop 3.4 on Java 17: Guice (the REST APIs) and Hadoop's reflection need these modules open
JAVA17_OPENS = [f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
    "java.lang", "java.lang.reflect", "java.util", "java.util.concurrent", "java.io", "java.net", "java.nio", "sun.nio.ch",
)]  # fmt: skip


def jars_dir(root: Path) -> Path:
    """Where scripts/resolve_jars.sh yarn puts the jars: $LAKEML_YARN_JARS_DIR or ROOT/.cache/yarn."""
    return Path(os.environ.get("LAKEML_YARN_JARS_DIR") or Path(root) / ".cache" / "yarn")


def node_memory_mb() -> int:
    """What the NodeManager offers: ``LAKEML_YARN_MEMORY_MB``, else a third of this machine's memory."""
    if os.environ.get("LAKEML_YARN_MEMORY_MB"):
        return int(os.environ["LAKEML_YARN_MEMORY_MB"])
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return max(4096, total // 3 // 512 * 512)


def node_vcores() -> int:
    return int(os.environ.get("LAKEML_YARN_VCORES") or os.cpu_count() or 2)


def site(stack: Stack) -> dict[str, dict[str, str]]:
    """YARN's files of the stack's Hadoop configuration folder."""
    p = stack.ports
    base = stack.base / "yarn"
    mem = node_memory_mb()
    return {
        "yarn-site.xml": {
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
        },
        "capacity-scheduler.xml": {
            "yarn.scheduler.capacity.root.queues": "default",
            "yarn.scheduler.capacity.root.default.capacity": "100",
            "yarn.scheduler.capacity.root.default.maximum-capacity": "100",
            # one node: the application masters may hold half of it (default 10 %: one driver)
            "yarn.scheduler.capacity.maximum-am-resource-percent": "0.5",
        },
    }


def _daemon(stack: Stack, main_class: str, heap: str) -> list[str]:
    from lakeml.core.paths import PROJECT_ROOT

    jars = jars_dir(PROJECT_ROOT)
    if not any(jars.glob("hadoop-yarn-server-resourcemanager-*.jar")):
        raise SetupError(f"no YARN jars in {jars}; run ./scripts/setup.sh --cluster (it resolves them with scripts/resolve_jars.sh yarn)")
    return daemon_command(stack, jars, main_class, heap)


def rm_info(stack: Stack) -> dict:
    return http_json(f"http://{HOST}:{stack.ports.yarn_rm_ui}/ws/v1/cluster/info").get("clusterInfo", {})


def running_nodes(stack: Stack) -> list[dict]:
    nodes = (http_json(f"http://{HOST}:{stack.ports.yarn_rm_ui}/ws/v1/cluster/nodes").get("nodes") or {}).get("node") or []
    return [n for n in nodes if n.get("state") == "RUNNING"]


def resource_manager(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "yarn-rm", f"{HOST}:{p.yarn_rm} (UI and REST http://{HOST}:{p.yarn_rm_ui})", p.yarn_rm, marker=RM_CLASS,
        command=lambda st: _daemon(st, RM_CLASS, "768m"),
        prepare=lambda st: write_conf(st) and None,
        ready=lambda st: rm_info(st).get("state") == "STARTED",
        timeout=120,
    )


def node_manager(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "yarn-nm", f"{node_memory_mb()} MB, {node_vcores()} vcores (UI http://{HOST}:{p.yarn_nm_ui})", p.yarn_nm, marker=NM_CLASS,
        command=lambda st: _daemon(st, NM_CLASS, "512m"),
        env=lambda st: {"JAVA_HOME": java_home()},
        prepare=lambda st: write_conf(st) and None,
        ready=lambda st: len(running_nodes(st)) >= 1,
        timeout=120,
    )
