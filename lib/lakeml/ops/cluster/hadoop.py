"""What the stack's Hadoop daemons share: one configuration folder, the java command, Java 17 flags.

The HDFS daemons (NameNode, DataNode: :mod:`lakeml.ops.cluster.hdfs`) and the YARN daemons
(ResourceManager, NodeManager: :mod:`lakeml.ops.cluster.yarn`) are Hadoop 3.4.2's own
``main`` classes, each in a JVM of its own, as on a real cluster. They read one configuration
folder, ``<stack>/hadoop-conf`` (core-site, hdfs-site, yarn-site, capacity-scheduler,
log4j), which is also the ``HADOOP_CONF_DIR`` that ``--env yarn`` hands to ``spark-submit``.
:func:`write_conf` writes it before any of them starts (every start: the ports may have moved).
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


def core_site(stack: Stack) -> dict[str, str]:
    return {
        "fs.defaultFS": f"hdfs://{HOST}:{stack.ports.namenode}",
        "hadoop.tmp.dir": str(stack.base / "hadoop-tmp"),
    }


def site_xml(props: dict[str, str]) -> str:
    rows = "".join(f"  <property><name>{escape(k)}</name><value>{escape(v)}</value></property>\n" for k, v in props.items())
    return f'<?xml version="1.0"?>\n<!-- written by lakeml.ops.cluster.hadoop; rewritten at every start -->\n<configuration>\n{rows}</configuration>\n'


def write_conf(stack: Stack) -> Path:
    """The stack's Hadoop configuration folder, every file of it (the daemons' and the jobs')."""
    from lakeml.ops.cluster import hdfs, yarn  # they import this module

    d = conf_dir(stack)
    d.mkdir(parents=True, exist_ok=True)
    files = {"core-site.xml": core_site(stack), "hdfs-site.xml": hdfs.site(stack), **yarn.site(stack)}
    for name, props in files.items():
        (d / name).write_text(site_xml(props))
    (d / "log4j.properties").write_text(LOG4J)
    return d


def daemon_command(stack: Stack, jars: Path, main_class: str, heap: str, *args: str) -> list[str]:
    """``java ... main_class args`` with the stack's configuration folder first on the class path."""
    cp = os.pathsep.join([str(conf_dir(stack)), str(Path(jars).resolve() / "*")])
    return [java_bin(), "-Xms64m", f"-Xmx{heap}", "-XX:+UseSerialGC", "-Djava.net.preferIPv4Stack=true", *JAVA17_OPENS,
            f"-Dhadoop.log.dir={stack.base / 'logs'}", "-cp", cp, main_class, *args]
