"""The one Spark session builder.

Under ``spark-submit`` (``./spark-submit.sh``) the JVM already has the master, the jars and
every conf of the env, passed as flags; the builder then only attaches to it. Started from
plain Python (tests, notebooks) it launches the JVM itself with the same confs, so a
notebook and a job see the same catalog, warehouse and Delta settings.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from lakeml.core.config import EnvConfig
from lakeml.core.errors import SetupError

log = logging.getLogger(__name__)


def jars_dir(project_root: str | Path) -> Path:
    return Path(os.environ.get("LAKEML_JARS_DIR") or Path(project_root) / ".cache" / "jars")


def jvm_jar_name(project_root: str | Path) -> str:
    """The name of the project's own jar built from the current ``jvm/src`` (its sources'
    sha256, as ``scripts/build_jvm.sh`` names it)."""
    root = Path(project_root)
    sources = sorted(p.relative_to(root).as_posix() for p in (root / "jvm" / "src").rglob("*.java"))
    listing = "".join(f"{hashlib.sha256((root / s).read_bytes()).hexdigest()}  {s}\n" for s in sources)
    return f"lakeml-jvm-{hashlib.sha256(listing.encode()).hexdigest()[:12]}.jar"


def jar_paths(project_root: str | Path) -> list[str]:
    """The cached Delta jars and the project's own jar; a clear error when they were never
    resolved, or when the project's jar is older than its sources."""
    d = jars_dir(project_root)
    jars = sorted(str(p) for p in d.glob("*.jar"))
    if not any("delta-spark" in Path(j).name for j in jars):
        raise SetupError(
            f"Delta Lake jars not found in {d}. Resolve them once with `make jars` "
            "(runs scripts/resolve_jars.sh delta: Maven, then cached for offline use)."
        )
    if (Path(project_root) / "jvm" / "src").is_dir() and not (d / jvm_jar_name(project_root)).is_file():
        raise SetupError(f"the project's jar {jvm_jar_name(project_root)} is not in {d} (built from jvm/src): run `make setup`")
    return jars


def driver_classpath(project_root: str | Path, env: EnvConfig) -> str:
    """JDBC drivers the Hive metastore client must load from the driver's system class
    path (``--jars`` comes too late for java.sql.DriverManager)."""
    if env.storage.metastore != "external":
        return ""
    return ":".join(sorted(str(p) for p in jars_dir(project_root).glob("postgresql-*.jar")))


def java_bin() -> Path:
    """The java spark-submit starts: JAVA_HOME's, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else Path(shutil.which("java") or "java")
    return found.resolve() if found.exists() else found


def cds_archive(project_root: str | Path) -> Path:
    """The driver's class-data-sharing archive (``make cds`` writes it: lakeml.bench.cds):
    the classes a daily run loads, mapped from one file instead of read, verified and
    parsed from ~300 jars at every JVM start. Named by what it is valid for (the java
    binary, Spark's jars, the project's jars): a change of any of them names a new file."""
    import pyspark

    java = java_bin()
    spark_jars = Path(pyspark.__file__).parent / "jars"
    parts = [str(java), str(java.stat().st_mtime_ns) if java.exists() else "", pyspark.__version__,
             *(sorted(os.listdir(spark_jars)) if spark_jars.is_dir() else []),
             *sorted(p.name for p in jars_dir(project_root).glob("*.jar"))]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    return Path(project_root) / ".cache" / "cds" / f"driver-{key}.jsa"


def cds_opts(project_root: str | Path) -> str:
    """The driver JVM's options that map the archive, or "" when there is none. A JVM that
    cannot use it (another class path, e.g. the cluster env's JDBC driver first) starts as
    without it, quietly: its cds log is off."""
    if os.environ.get("LAKEML_CDS") == "0":
        return ""
    try:
        archive = cds_archive(project_root)
    except OSError:
        return ""
    if not archive.is_file():
        return ""
    return f"-XX:SharedArchiveFile={archive} -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off"


def driver_java_opts(env: EnvConfig) -> str:
    """The driver JVM's options when this process starts it: the project's log4j file, Derby's
    log in the data folder, and the class-data-sharing archive when there is one."""
    log4j = Path(env.project_root) / "conf" / "log4j2.properties"
    if not log4j.is_file():
        return ""
    opts = f"-Dlog4j.configurationFile=file:{log4j} -Dderby.stream.error.file={env.data_dir}/derby.log"
    return f"{opts} {cds_opts(env.project_root)}".strip()


def under_spark_submit() -> bool:
    # spark-submit starts the Python driver with a gateway to its JVM
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(env: EnvConfig, app_name: str = "lakeml", extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Return the active session, or build one for ``env`` (one per process)."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name)
    conf = env.spark_conf()
    if not under_spark_submit():
        builder = builder.master(env.spark.master)
        conf["spark.jars"] = ",".join(jar_paths(env.project_root))
        conf.setdefault("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        if driver_classpath(env.project_root, env):
            conf.setdefault("spark.driver.extraClassPath", driver_classpath(env.project_root, env))
        opts = driver_java_opts(env)
        if opts:
            conf.setdefault("spark.driver.extraJavaOptions", opts)
    conf.update(extra_conf or {})
    for k, v in conf.items():
        builder = builder.config(k, v)
    if env.is_local_fs:
        Path(env.data_dir).mkdir(parents=True, exist_ok=True)
    spark = builder.enableHiveSupport().getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s, master %s, warehouse %s", spark.version, spark.sparkContext.master, env.warehouse_dir)
    return spark
