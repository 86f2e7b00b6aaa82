"""The one Spark session builder.

Under ``spark-submit`` (``./spark-submit.sh``) the JVM already has the master, the jars and
every conf of the env, passed as flags; the builder then only attaches to it. Started from
plain Python (tests, notebooks) it launches the JVM itself with the same confs, so a
notebook and a job see the same catalog, warehouse and Delta settings.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from lakeml.core.config import EnvConfig
from lakeml.core.errors import SetupError

log = logging.getLogger(__name__)


def jars_dir(project_root: str | Path) -> Path:
    return Path(os.environ.get("LAKEML_JARS_DIR") or Path(project_root) / ".cache" / "jars")


def jar_paths(project_root: str | Path) -> list[str]:
    """The cached Delta jars; a clear error when they were never resolved."""
    d = jars_dir(project_root)
    jars = sorted(str(p) for p in d.glob("*.jar"))
    if not any("delta-spark" in Path(j).name for j in jars):
        raise SetupError(
            f"Delta Lake jars not found in {d}. Resolve them once with `make jars` "
            "(runs scripts/resolve_jars.sh delta: Maven, then cached for offline use)."
        )
    return jars


def driver_classpath(project_root: str | Path, env: EnvConfig) -> str:
    """JDBC drivers the Hive metastore client must load from the driver's system class
    path (``--jars`` comes too late for java.sql.DriverManager)."""
    if env.storage.metastore != "external":
        return ""
    return ":".join(sorted(str(p) for p in jars_dir(project_root).glob("postgresql-*.jar")))


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
        log4j = Path(env.project_root) / "conf" / "log4j2.properties"
        if log4j.is_file():
            opts = f"-Dlog4j.configurationFile=file:{log4j} -Dderby.stream.error.file={env.data_dir}/derby.log"
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
