"""A real single-node HDFS for the local stack: a NameNode and a DataNode, each a JVM of its own.

They are Hadoop 3.4.2's own daemons (``org.apache.hadoop.hdfs.server.namenode.NameNode``,
``...datanode.DataNode``, the Hadoop that pyspark 4.1.2 bundles) from the unshaded jars that
``scripts/resolve_jars.sh hdfs`` puts in ``.cache/hdfs``; they read the stack's configuration
folder (:mod:`lakeml.ops.cluster.hadoop`). Their own processes, as on a real cluster, so the
DataNode can stop and come back while the NameNode (and every client) goes on. Every port
listens on 127.0.0.1: the NameNode's RPC and HTTP (UI, JMX, WebHDFS), the DataNode's data
transfer and HTTP (UI, JMX) ports; its IPC port is picked free. Permissions are off, replication 1.

All state lives under ``<stack>/hdfs/dfs``: ``name-0-1``, ``name-0-2`` (the NameNode's image and
edits, kept twice) and ``data/data1``, ``data/data2`` (the DataNode's blocks); the names are
those of the minicluster earlier versions ran, so a stack made by one keeps its files. The
NameNode is formatted before its first start only (:func:`is_formatted`); a start without
format keeps every file written before. Stop a daemon by killing it (SIGTERM).

The supervised services of the stack are ``namenode(stack)`` and ``datanode(stack)``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lakeml.core.errors import SetupError
from lakeml.ops.cluster.hadoop import daemon_command, write_conf
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, StackError, http_json, tail

NN_CLASS = "org.apache.hadoop.hdfs.server.namenode.NameNode"
DN_CLASS = "org.apache.hadoop.hdfs.server.datanode.DataNode"
HEARTBEAT_S = 3  # dfs.heartbeat.interval


def jars_dir(root: Path) -> Path:
    """Where scripts/resolve_jars.sh hdfs puts the jars: $LAKEML_HDFS_JARS_DIR or ROOT/.cache/hdfs."""
    return Path(os.environ.get("LAKEML_HDFS_JARS_DIR") or Path(root) / ".cache" / "hdfs")


def _jars() -> Path:
    from lakeml.core.paths import PROJECT_ROOT

    jars = jars_dir(PROJECT_ROOT)
    if not any(jars.glob("hadoop-hdfs-3*.jar")):
        raise SetupError(f"no HDFS jars in {jars}; run ./scripts/setup.sh --cluster (it resolves them with scripts/resolve_jars.sh hdfs)")
    return jars


def dfs_dir(stack: Stack) -> Path:
    return stack.base / "hdfs" / "dfs"


def is_formatted(dfs: Path) -> bool:
    """True when ``dfs`` already holds a formatted NameNode (so start it without format)."""
    return any(Path(dfs).glob("name*/current/VERSION"))


def site(stack: Stack) -> dict[str, str]:
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
    """One probe: WebHDFS answers ``GETFILESTATUS`` on ``/``. Never raises: any error is False."""
    try:
        st = http_json(f"{http_url.rstrip('/')}/webhdfs/v1/?op=GETFILESTATUS", timeout)
        return st.get("FileStatus", {}).get("type") == "DIRECTORY"
    except Exception:
        return False


def webhdfs_ready(http_url: str, datanode_url: str, timeout: float) -> bool:
    """One probe (each HTTP call waits at most ``timeout`` s); True when HDFS serves clients.

    That is: WebHDFS answers, a DataNode has sent a heartbeat within two intervals, the
    NameNode is out of safe mode (which, with :func:`site`, means every block has been
    reported) and the DataNode at ``datanode_url`` (its HTTP address) itself says it is
    registered and running: a DataNode that just stopped stays "live" in the NameNode's
    eyes for minutes, so the NameNode's word alone cannot tell a restarted one. Never raises.
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
    except Exception:
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
