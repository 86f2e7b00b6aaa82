"""A real single-node HDFS for the local stack: one JVM with a NameNode and one DataNode.

It is Hadoop's own CLI minicluster (``org.apache.hadoop.mapreduce.MiniHadoopClusterManager``
with ``-nomr``: a ``MiniDFSCluster``, no YARN) from the jars that
``scripts/resolve_jars.sh hdfs`` puts in ``.cache/hdfs`` (``hadoop-client-minicluster``
3.4.2, the Hadoop that pyspark 4.1.2 bundles). RPC, HTTP/WebHDFS and the DataNode's ports
listen on 127.0.0.1 only; permissions are off, replication is 1.

All state lives under ``base_dir``: ``dfs/name-0-*`` (NameNode image and edits) and
``dfs/data/data*`` (DataNode blocks). Start with ``format=True`` only when
:func:`is_formatted` is False: formatting wipes ``base_dir/dfs``. A start without format
keeps every file written before. Stop it by killing the process (SIGTERM).

    cmd = hdfs_command(jars_dir(ROOT), base, format=not is_formatted(base))
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    while not webhdfs_ready("http://127.0.0.1:9870", timeout=2): time.sleep(1)

The supervised service of the stack is ``service(stack)``.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from lakeml.core.errors import SetupError

MAIN_CLASS = "org.apache.hadoop.mapreduce.MiniHadoopClusterManager"
HOST = "127.0.0.1"


def jars_dir(root: Path) -> Path:
    """Where scripts/resolve_jars.sh hdfs puts the jars: $LAKEML_HDFS_JARS_DIR or ROOT/.cache/hdfs."""
    return Path(os.environ.get("LAKEML_HDFS_JARS_DIR") or Path(root) / ".cache" / "hdfs")


def java_bin() -> str:
    """$JAVA_HOME/bin/java if there is one, else java on the PATH (the stack's Hadoop daemons)."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java") or "java"


def is_formatted(base_dir: Path) -> bool:
    """True when ``base_dir`` already holds a formatted NameNode (so start it without format)."""
    dfs = Path(base_dir) / "dfs"
    return any(dfs.glob("name*/current/VERSION"))


def conf_properties(base_dir: Path) -> dict[str, str]:
    """The Hadoop configuration the minicluster gets (``-D key=value``)."""
    base = Path(base_dir).resolve()
    return {
        # MiniDFSCluster's storage: name dirs and data dirs go under here (not ./target/test/data)
        "hdfs.minidfs.basedir": str(base / "dfs"),
        "hadoop.tmp.dir": str(base / "tmp"),
        # any client user may write anywhere (a local dev HDFS, not a secured one)
        "dfs.permissions.enabled": "false",
        "dfs.replication": "1",
        "dfs.webhdfs.enabled": "true",
        # the DataNode registers as 127.0.0.1, so WebHDFS redirects and the hdfs:// client
        # reach it on the loopback address its ports are bound to (not the machine's hostname)
        "dfs.datanode.hostname": HOST,
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


def hdfs_command(
    jars_dir: Path,
    base_dir: Path,
    nn_port: int = 9000,
    http_port: int = 9870,
    *,
    format: bool,
    heap: str = "1g",
    java: str | None = None,
) -> list[str]:
    """The ``java ...`` command that runs NameNode + one DataNode in one JVM.

    ``hdfs://127.0.0.1:<nn_port>`` is the file system, ``http://127.0.0.1:<http_port>`` the
    NameNode UI, JMX and WebHDFS. ``format=True`` wipes ``base_dir/dfs`` and makes a new
    empty file system: pass ``not is_formatted(base_dir)``. The effective configuration is
    written to ``base_dir/hdfs-conf.xml`` once the cluster is up.
    """
    jars_dir = Path(jars_dir).resolve()
    base = Path(base_dir).resolve()
    jars = sorted(jars_dir.glob("*.jar"))
    if not any(j.name.startswith("hadoop-client-minicluster-") for j in jars):
        raise SetupError(f"no hadoop-client-minicluster jar in {jars_dir}; run ./scripts/setup.sh --cluster (it resolves them with scripts/resolve_jars.sh hdfs)")
    java = java or java_bin()
    cmd = [
        java,
        "-Xms64m",
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",
        "-Djava.net.preferIPv4Stack=true",
        # anything of the Hadoop test harness that still looks at test.build.data stays here too
        f"-Dtest.build.data={base / 'test-data'}",
        # logging: slf4j-simple to stderr (so into the service log), INFO with time stamps
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss,SSS",
        "-cp",
        os.pathsep.join(str(j) for j in jars),
        MAIN_CLASS,
        "-nomr",
        *(["-format"] if format else []),
        "-nnport",
        str(nn_port),
        "-nnhttpport",
        str(http_port),
        "-datanodes",
        "1",
        "-writeConfig",
        str(base / "hdfs-conf.xml"),
    ]
    for key, value in conf_properties(base).items():
        cmd += ["-D", f"{key}={value}"]
    return cmd


def _get_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        if r.status != 200:
            raise urllib.error.HTTPError(url, r.status, "not 200", r.headers, None)
        return json.loads(r.read().decode("utf-8"))


def _jmx_bean(http_url: str, name: str, timeout: float) -> dict:
    beans = _get_json(f"{http_url}/jmx?qry=Hadoop:service=NameNode,name={name}", timeout).get("beans") or []
    return beans[0] if beans else {}


def webhdfs_ready(http_url: str, timeout: float) -> bool:
    """One probe (each HTTP call waits at most ``timeout`` s); True when HDFS serves clients.

    That is: WebHDFS answers ``GETFILESTATUS`` on ``/``, the NameNode has a live DataNode, and
    it is out of safe mode (which, with :func:`conf_properties`, means every block has been
    reported). Never raises: any error is False.
    """
    url = http_url.rstrip("/")
    try:
        st = _get_json(f"{url}/webhdfs/v1/?op=GETFILESTATUS", timeout)
        if st.get("FileStatus", {}).get("type") != "DIRECTORY":
            return False
        if int(_jmx_bean(url, "FSNamesystemState", timeout).get("NumLiveDataNodes", 0)) < 1:
            return False
        info = _jmx_bean(url, "NameNodeInfo", timeout)
        return "Safemode" in info and info["Safemode"] == ""
    except Exception:
        return False


def service(stack):
    """The stack's HDFS service (``lakeml.ops.cluster.supervisor.Service``)."""
    from lakeml.core.paths import PROJECT_ROOT
    from lakeml.ops.cluster.supervisor import Service

    p = stack.ports
    base = stack.base / "hdfs"
    return Service(
        "hdfs", f"hdfs://{HOST}:{p.namenode} (WebHDFS http://{HOST}:{p.webhdfs})", p.namenode,
        marker="MiniHadoopClusterManager",
        command=lambda st: hdfs_command(jars_dir(PROJECT_ROOT), base, nn_port=st.ports.namenode, http_port=st.ports.webhdfs, format=not is_formatted(base)),
        ready=lambda st: webhdfs_ready(f"http://{HOST}:{st.ports.webhdfs}", timeout=2),
        timeout=180,
    )
