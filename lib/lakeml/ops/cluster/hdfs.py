"""A real single-node HDFS for the local stack: a NameNode and a DataNode, each a JVM of its own.

They are Hadoop 3.4.2's own daemons (``org.apache.hadoop.hdfs.server.namenode.NameNode``,
``...datanode.DataNode``, the Hadoop that pyspark 4.1.2 bundles) from the unshaded jars that
``scripts/resolve_jars.sh hdfs`` puts in ``.cache/hdfs``; they read the stack's configuration
folder, whose hdfs-site.xml is :func:`lakeml.ops.cluster.hadoop.hdfs_site`. Their own
processes, as on a real cluster, so the DataNode can stop and come back while the NameNode
(and every client) goes on. Every port listens on 127.0.0.1: the NameNode's RPC and HTTP
(UI, JMX, WebHDFS), the DataNode's data transfer and HTTP (UI, JMX) ports; its IPC port is
picked free. Permissions are off, replication 1.

All state lives under ``<stack>/hdfs/dfs`` (:func:`lakeml.ops.cluster.hadoop.dfs_dir`):
``name-0-1``, ``name-0-2`` (the NameNode's image and edits, kept twice) and ``data/data1``,
``data/data2`` (the DataNode's blocks); the names are those of the minicluster earlier
versions ran, so a stack made by one keeps its files. The NameNode is formatted before its
first start only (:func:`is_formatted`); a start without format keeps every file written
before. Stop a daemon by killing it (SIGTERM).

The supervised services of the stack are ``namenode(stack)`` and ``datanode(stack)``.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from pathlib import Path

from lakeml.core.errors import SetupError
from lakeml.ops.cluster.hadoop import HEARTBEAT_S, daemon_command, dfs_dir, write_conf
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, StackError, http_json, tail

NN_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DN_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
# what a probe of a daemon not (yet) serving meets: nothing listening or a timeout (URLError
# is an OSError), an HTTP error status, an answer cut short or not JSON (ValueError)
PROBE_ERRORS = (OSError, ValueError, http.client.HTTPException)


def jars_dir(root: Path) -> Path:
    """Where scripts/resolve_jars.sh hdfs puts the jars: $LAKEML_HDFS_JARS_DIR or ROOT/.cache/hdfs."""
    return Path(os.environ.get("LAKEML_HDFS_JARS_DIR") or Path(root) / ".cache" / "hdfs")


def _jars() -> Path:
    from lakeml.core.paths import PROJECT_ROOT

    jars = jars_dir(PROJECT_ROOT)
    if not any(jars.glob("hadoop-hdfs-3*.jar")):
        raise SetupError(f"no HDFS jars in {jars}; run ./scripts/setup.sh --cluster (it resolves them with scripts/resolve_jars.sh hdfs)")
    return jars


def is_formatted(dfs: Path) -> bool:
    """True when ``dfs`` already holds a formatted NameNode (so start it without format)."""
    return any(Path(dfs).glob("name*/current/VERSION"))


def format_namenode(stack: Stack) -> None:
    """Formats a new, empty file system when there is none yet (never over an existing one)."""
    write_conf(stack)
    if is_formatted(dfs_dir(stack)):
        return
    log = stack.base / "logs" / "hdfs-format.log"
    with open(log, "ab") as out:
        p = subprocess.run(daemon_command(stack, _jars(), NN_CLASS, "256m", "-format", "-nonInteractive", "-clusterid", "lakeml"),
                           stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=stack.base, timeout=300)
    if p.returncode != 0:
        raise StackError(f"formatting the NameNode failed ({p.returncode}). Last lines of {log}:\n{tail(log)}")


def _jmx_bean(http_url: str, name: str, timeout: float) -> dict:
    beans = http_json(f"{http_url}/jmx?qry=Hadoop:service=NameNode,name={name}", timeout).get("beans") or []
    return beans[0] if beans else {}


def namenode_ready(http_url: str, timeout: float) -> bool:
    """One probe: WebHDFS answers ``GETFILESTATUS`` on ``/``. A daemon not serving is False, not an error."""
    try:
        st = http_json(f"{http_url.rstrip('/')}/webhdfs/v1/?op=GETFILESTATUS", timeout)
        return st.get("FileStatus", {}).get("type") == "DIRECTORY"
    except PROBE_ERRORS:
        return False


def webhdfs_ready(http_url: str, datanode_url: str, timeout: float) -> bool:
    """One probe (each HTTP call waits at most ``timeout`` s); True when HDFS serves clients.

    That is: WebHDFS answers, a DataNode has sent a heartbeat within two intervals, the
    NameNode is out of safe mode (which, with the stack's hdfs-site, means every block has been
    reported) and the DataNode at ``datanode_url`` (its HTTP address) itself says it is
    registered and running: a DataNode that just stopped stays "live" in the NameNode's
    eyes for minutes, so the NameNode's word alone cannot tell a restarted one. A daemon not
    serving is False, not an error.
    """
    url = http_url.rstrip("/")
    try:
        if not namenode_ready(url, timeout):
            return False
        info = _jmx_bean(url, "NameNodeInfo", timeout)
        nodes = json.loads(info.get("LiveNodes") or "{}").values()
        if not any(int(n.get("lastContact", 1 << 30)) <= 2 * HEARTBEAT_S for n in nodes):
            return False
        if not ("Safemode" in info and info["Safemode"] == ""):
            return False
        beans = http_json(f"{datanode_url.rstrip('/')}/jmx?qry=Hadoop:service=DataNode,name=DataNodeInfo", timeout).get("beans") or [{}]
        actors = json.loads(beans[0].get("BPServiceActorInfo") or "[]")
        return bool(actors) and all(a.get("ActorState") == "RUNNING" for a in actors)
    except PROBE_ERRORS:
        return False


def namenode(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "hdfs-nn", f"hdfs://{HOST}:{p.namenode} (UI and WebHDFS http://{HOST}:{p.webhdfs})", p.namenode, marker=NN_CLASS,
        command=lambda st: daemon_command(st, _jars(), NN_CLASS, "1g"),
        prepare=format_namenode,
        ready=lambda st: namenode_ready(f"http://{HOST}:{st.ports.webhdfs}", timeout=2),
        timeout=180,
    )


def datanode(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "hdfs-dn", f"{HOST}:{p.datanode} (UI http://{HOST}:{p.datanode_ui})", p.datanode, marker=DN_CLASS,
        command=lambda st: daemon_command(st, _jars(), DN_CLASS, "512m"),
        prepare=lambda st: write_conf(st) and None,
        ready=lambda st: webhdfs_ready(f"http://{HOST}:{st.ports.webhdfs}", f"http://{HOST}:{st.ports.datanode_ui}", timeout=2),
        timeout=180,
    )
