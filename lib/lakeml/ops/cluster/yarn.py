"""YARN on this machine: Hadoop's own ResourceManager and one NodeManager, each a JVM of its own.

The daemons are the unshaded Hadoop 3.4.2 server jars (``scripts/resolve_jars.sh yarn`` puts
them in ``.cache/yarn``), the Hadoop that pyspark 4.1.2's ``spark-yarn`` client speaks to.
Every port listens on 127.0.0.1. The NodeManager offers ``LAKEML_YARN_MEMORY_MB`` (default: a
third of this machine's memory) and ``LAKEML_YARN_VCORES`` (default: its cores); containers
are real processes it launches (``launch_container.sh``), killed by its memory monitor when
their process tree outgrows what they asked for (virtual memory is not checked: a JVM
reserves far more than it uses).

Their part of the stack's Hadoop configuration folder (``<stack>/hadoop-conf``, written by
:func:`lakeml.ops.cluster.hadoop.write_conf`) is :func:`lakeml.ops.cluster.hadoop.yarn_site`
and its capacity scheduler. ``spark-submit`` also gets that folder as ``HADOOP_CONF_DIR``:
what ``conf/envs/yarn.yaml`` points at unless ``HADOOP_CONF_DIR`` is set (``core-site.xml``:
the stack's HDFS is the default file system; ``yarn-site.xml``: where the ResourceManager is).
"""

from __future__ import annotations

import os
from pathlib import Path

from lakeml.core.errors import SetupError
from lakeml.ops.cluster.hadoop import daemon_command, java_home, node_memory_mb, node_vcores, write_conf
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, http_json

RM_CLASS = "org.apache.hadoop.yarn.server.resourcemanager.ResourceManager"
NM_CLASS = "org.apache.hadoop.yarn.server.nodemanager.NodeManager"


def jars_dir(root: Path) -> Path:
    """Where scripts/resolve_jars.sh yarn puts the jars: $LAKEML_YARN_JARS_DIR or ROOT/.cache/yarn."""
    return Path(os.environ.get("LAKEML_YARN_JARS_DIR") or Path(root) / ".cache" / "yarn")


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
