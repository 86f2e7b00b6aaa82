"""The YARN and Kubernetes envs cannot run here: their exact spark-submit command is the test.

Each expected command is written out piece by piece from the variables set in the test, so
a change to what spark-submit.sh would submit to a real cluster shows up here.
"""

import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import CONF, ROOT, run_cmd
from lakeml.core.config import referenced_vars
from lakeml.core.errors import ConfigError, UsageError
from lakeml.core.session import jvm_jar_name
from lakeml.ops import submit

SPARK_HOME = "/opt/spark"  # a cluster client's Spark install (never started: --dry-run)
PY_SUBMITTER = sys.executable
# a driver on the cluster gets the commit of this checkout (MLflow's git_commit tag)
GIT_COMMIT = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
JOB = str(ROOT / "jobs" / "pipeline.py")
LIB_ZIP = str(ROOT / "dist" / "lakeml.zip")
CONF_ZIP = str(ROOT / "dist" / "conf.zip")
JARS = ["delta-spark_4.1_2.13-4.4.0.jar", "delta-storage-4.4.0.jar", jvm_jar_name(ROOT)]

YARN_VARS = [
    "LAKEML_VENV_ARCHIVE",
    "YARN_QUEUE",
    "LAKEML_DRIVER_MEMORY",
    "LAKEML_EXECUTORS",
    "LAKEML_EXECUTOR_CORES",
    "LAKEML_EXECUTOR_MEMORY",
    "LAKEML_EXECUTOR_OVERHEAD",
    "LAKEML_YARN_ATTEMPTS",
    "LAKEML_EVENT_LOG_DIR",
    "LAKEML_HDFS_PORT",
    "HIVE_METASTORE_URIS",
    "LAKEML_PG_PORT",
    "LAKEML_PG_PASSWORD",
    "LAKEML_LAKE",
    "LAKEML_WEBHDFS",
    "LAKEML_WEBHDFS_PORT",
    "MLFLOW_TRACKING_URI",
    "LAKEML_MLFLOW_PORT",
    "LAKEML_THRIFT_PORT",
    "LAKEML_REDIS_PORT",  # the online store (online.redis_url)
]
K8S_VARS = [
    "K8S_API",
    "LAKEML_IMAGE",
    "K8S_NAMESPACE",
    "K8S_SERVICE_ACCOUNT",
    "LAKEML_UPLOAD_PATH",
    "LAKEML_DRIVER_MEMORY",
    "LAKEML_EXECUTORS",
    "LAKEML_EXECUTOR_CORES",
    "LAKEML_EXECUTOR_MEMORY",
    "LAKEML_IMAGE_PYTHON",
    "HIVE_METASTORE_URIS",
    "LAKEML_LAKE",
    "MLFLOW_TRACKING_URI",
]


@pytest.fixture()
def submitter(monkeypatch, tmp_path):
    """A clean submitting environment: none of the envs' variables set, fixed Spark install,
    a jar folder of known content; the job path is resolved from the project root."""
    for var in {*YARN_VARS, *K8S_VARS, "PYSPARK_DRIVER_PYTHON", "YARN_CONF_DIR", "LAKEML_CLUSTER_DIR"}:
        monkeypatch.delenv(var, raising=False)
    hadoop_conf = tmp_path / "hadoop-conf"  # the cluster's client configuration (never read: --dry-run)
    hadoop_conf.mkdir()
    (hadoop_conf / "yarn-site.xml").write_text("<configuration/>")
    monkeypatch.setenv("HADOOP_CONF_DIR", str(hadoop_conf))
    jars = tmp_path / "jars"
    jars.mkdir()
    for j in JARS:
        (jars / j).write_bytes(b"")
    monkeypatch.setenv("LAKEML_JARS_DIR", str(jars))
    monkeypatch.setenv("SPARK_HOME", SPARK_HOME)
    monkeypatch.setenv("PYSPARK_PYTHON", PY_SUBMITTER)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    monkeypatch.chdir(ROOT)
    return jars


def _confs(*pairs: str) -> list[str]:
    return [x for kv in pairs for x in ("--conf", kv)]


def _delta_confs(warehouse: str) -> list[str]:
    """What every env implies (EnvConfig.spark_conf), external metastore: no Derby URL."""
    return [
        "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog",
        f"spark.sql.warehouse.dir={warehouse}",
        "spark.sql.catalogImplementation=hive",
        "spark.hadoop.hive.metastore.disallow.incompatible.col.type.changes=false",
    ]


def _yarn_command(jars, v: dict[str, str], forwarded: list[str], mode: str = "client") -> list[str]:
    """The YARN command for the values ``v`` in deploy ``mode``; ``forwarded``: the variables
    set at submit (handed to a cluster-mode driver). A packed venv when LAKEML_VENV_ARCHIVE
    is set, else this machine's venv and Spark jars."""
    packed = v["LAKEML_VENV_ARCHIVE"] != "local"
    py = "./environment/bin/python" if packed else PY_SUBMITTER
    lake = v["LAKEML_LAKE"]
    archives = [f"{v['LAKEML_VENV_ARCHIVE']}#environment"] if packed else []
    archives += [f"{CONF_ZIP}#conf"] if mode == "cluster" else []
    return [
        f"{SPARK_HOME}/bin/spark-submit",
        "--master", "yarn",
        *(["--deploy-mode", "cluster"] if mode == "cluster" else []),
        "--jars", ",".join(str(jars / j) for j in JARS),
        *_confs(
            *_delta_confs(f"{lake}/warehouse"),
            f"spark.yarn.queue={v['YARN_QUEUE']}",
            f"spark.driver.memory={v['LAKEML_DRIVER_MEMORY']}",
            "spark.yarn.am.memory=512m",
            f"spark.executor.instances={v['LAKEML_EXECUTORS']}",
            f"spark.executor.cores={v['LAKEML_EXECUTOR_CORES']}",
            f"spark.executor.memory={v['LAKEML_EXECUTOR_MEMORY']}",
            f"spark.executor.memoryOverhead={v['LAKEML_EXECUTOR_OVERHEAD']}",
            f"spark.yarn.maxAppAttempts={v['LAKEML_YARN_ATTEMPTS']}",
            "spark.sql.shuffle.partitions=4",
            "spark.default.parallelism=4",
            "spark.sql.adaptive.enabled=true",
            "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning=true",
            "spark.sql.session.timeZone=UTC",
            "spark.ui.showConsoleProgress=false",
            "spark.sql.sources.parallelPartitionDiscovery.threshold=10000",
            "spark.databricks.delta.snapshotPartitions=2",
            "spark.eventLog.enabled=true",
            f"spark.eventLog.dir={v['LAKEML_EVENT_LOG_DIR']}",
            f"spark.hadoop.hive.metastore.uris={v['HIVE_METASTORE_URIS']}",
            f"spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:postgresql://127.0.0.1:{v['LAKEML_PG_PORT']}/metastore",
            "spark.hadoop.javax.jdo.option.ConnectionDriverName=org.postgresql.Driver",
            "spark.hadoop.javax.jdo.option.ConnectionUserName=lakeml",
            "spark.hadoop.javax.jdo.option.ConnectionPassword=${env.LAKEML_PG_PASSWORD}",
            "spark.hadoop.datanucleus.schema.autoCreateAll=true",
            "spark.hadoop.hive.metastore.schema.verification=false",
            "spark.hadoop.dfs.client.use.datanode.hostname=false",
            "spark.hadoop.dfs.client.block.write.locateFollowingBlock.initial.delay.ms=20",
            f"spark.pyspark.python={py}",
            f"spark.yarn.appMasterEnv.PYSPARK_PYTHON={py}",
            f"spark.executorEnv.PYSPARK_PYTHON={py}",
            *([] if packed else [f"spark.yarn.jars=local:{SPARK_HOME}/jars/*"]),
            *([f"spark.driver.extraJavaOptions=-Dlog4j.configurationFile=file:{ROOT}/conf/log4j2.properties"] if mode == "client" else []),
            *(f"spark.yarn.appMasterEnv.{k}={v[k]}" for k in forwarded if mode == "cluster"),
            *([f"spark.yarn.appMasterEnv.LAKEML_GIT_COMMIT={GIT_COMMIT}"] if mode == "cluster" else []),
        ),
        "--name", "lakeml-pipeline",
        "--py-files", LIB_ZIP,
        *(["--archives", ",".join(archives)] if archives else []),
    ]  # fmt: skip


# what the env file says when nothing is set: the one-machine stack of scripts/cluster.sh
YARN_DEFAULTS = {
    "LAKEML_VENV_ARCHIVE": "local",
    "YARN_QUEUE": "default",
    "LAKEML_DRIVER_MEMORY": "1g",
    "LAKEML_EXECUTORS": "1",
    "LAKEML_EXECUTOR_CORES": "2",
    "LAKEML_EXECUTOR_MEMORY": "3g",
    "LAKEML_EXECUTOR_OVERHEAD": "1536m",
    "LAKEML_YARN_ATTEMPTS": "2",
    "LAKEML_EVENT_LOG_DIR": "hdfs://127.0.0.1:9000/lakeml/spark-events",
    "HIVE_METASTORE_URIS": "",
    "LAKEML_PG_PORT": "5433",
    "LAKEML_LAKE": "hdfs://127.0.0.1:9000/lakeml",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
}
# a real cluster: every variable a user of one sets
YARN_CLUSTER = {
    "LAKEML_VENV_ARCHIVE": "hdfs:///user/ml/envs/lakeml-venv-2026.07.tar.gz",
    "YARN_QUEUE": "analytics",
    "LAKEML_DRIVER_MEMORY": "6g",
    "LAKEML_EXECUTORS": "10",
    "LAKEML_EXECUTOR_CORES": "5",
    "LAKEML_EXECUTOR_MEMORY": "16g",
    "LAKEML_EXECUTOR_OVERHEAD": "4g",
    "LAKEML_YARN_ATTEMPTS": "1",
    "LAKEML_EVENT_LOG_DIR": "hdfs://nameservice1/spark-history",
    "HIVE_METASTORE_URIS": "thrift://hms1.example.com:9083,thrift://hms2.example.com:9083",
    "LAKEML_PG_PORT": "5433",
    "LAKEML_LAKE": "hdfs://nameservice1/data/lakeml",
    "MLFLOW_TRACKING_URI": "https://mlflow.example.com",
}


def test_envs_refer_to_these_variables():
    # the order in which they are handed to the driver
    assert referenced_vars(CONF / "envs" / "yarn.yaml") == YARN_VARS
    assert referenced_vars(CONF / "envs" / "k8s.yaml") == K8S_VARS
    assert referenced_vars(CONF / "envs" / "embedded.yaml") == []


def test_yarn_command(submitter, monkeypatch):
    """A real cluster, cluster deploy mode from the command line: a packed venv, the
    variables that are set handed to the driver."""
    v = YARN_CLUSTER
    for k, val in v.items():
        monkeypatch.setenv(k, val)
    cmd, extra, dry, env = submit.job_command(["--env", "yarn", "--deploy-mode", "cluster", "--dry-run",
                                               "jobs/pipeline.py", "--only", "score"])[:4]
    assert dry is True
    # a secret: handed to the driver through a file only this user reads, never on the command line
    monkeypatch.setenv("LAKEML_PG_PASSWORD", "p=w d\\#1")
    sub = submit.job_command(["--env", "yarn", "--deploy-mode", "cluster", "--dry-run", "jobs/pipeline.py", "--only", "score"])
    i = sub.cmd.index("--properties-file")
    assert sub.cmd[:i] + sub.cmd[i + 3:] == cmd and sub.cmd[i + 1:i + 3] == [str(sub.secrets_file), "--load-spark-defaults"]
    assert sub.secrets == {"spark.yarn.appMasterEnv.LAKEML_PG_PASSWORD": "p=w d\\#1"} and not [a for a in sub.cmd if "p=w" in a]
    expected = _yarn_command(submitter, v, forwarded=[k for k in YARN_VARS if k in v], mode="cluster")
    expected += ["--deploy-mode", "cluster", JOB, "--env", "yarn", "--conf-dir", "conf", "--only", "score"]
    assert cmd == expected
    assert {k: extra[k] for k in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP", "HADOOP_CONF_DIR")} == {
        "PYSPARK_PYTHON": PY_SUBMITTER, "SPARK_LOCAL_IP": "127.0.0.1", "HADOOP_CONF_DIR": str(submitter.parent / "hadoop-conf")}
    assert env.spark.deploy_mode == "cluster"
    # the env's storage and MLflow locations, as the driver will resolve them
    assert (env.landing_dir, env.warehouse_dir) == ("hdfs://nameservice1/data/lakeml/landing", "hdfs://nameservice1/data/lakeml/warehouse")
    assert env.landing_zone("churn") == "hdfs://nameservice1/data/lakeml/landing/churn"  # each use case lands under its own zone
    assert env.archive_zone("churn") == "hdfs://nameservice1/data/lakeml/archive/churn"
    assert env.tracking_uri == env.registry_uri == "https://mlflow.example.com"
    assert env.artifact_root == "mlflow-artifacts:/"  # the server's store, through the tracking URI


@pytest.mark.subprocess
def test_yarn_dry_run_as_typed(submitter):
    """./spark-submit.sh as a user types it, no variable set: the local stack, client mode,
    this venv's Python and Spark jars."""
    p = run_cmd(["./spark-submit.sh", "--env", "yarn", "--dry-run", "jobs/pipeline.py", "--only", "score"])
    expected = [f"PYSPARK_PYTHON={PY_SUBMITTER}", "SPARK_LOCAL_IP=127.0.0.1", f"HADOOP_CONF_DIR={submitter.parent / 'hadoop-conf'}"]
    expected += _yarn_command(submitter, YARN_DEFAULTS, forwarded=[])
    expected += [JOB, "--env", "yarn", "--conf-dir", str(CONF), "--only", "score"]
    assert shlex.split(p.stdout.strip()) == expected


def test_yarn_without_a_hadoop_configuration_says_what_to_set(submitter, monkeypatch, tmp_path):
    monkeypatch.delenv("HADOOP_CONF_DIR")
    monkeypatch.setenv("LAKEML_CLUSTER_DIR", str(tmp_path / "no-stack"))
    with pytest.raises(UsageError) as e:
        submit.job_command(["--env", "yarn", "--dry-run", "jobs/pipeline.py"])
    assert "set HADOOP_CONF_DIR" in str(e.value) and "./scripts/cluster.sh up" in str(e.value) and "yarn.yaml" in str(e.value)


def test_yarn_user_archives_and_py_files_are_merged_not_lost(submitter, monkeypatch):
    # spark-submit keeps the last --archives / --py-files only: one flag each, all entries
    monkeypatch.setenv("LAKEML_VENV_ARCHIVE", "hdfs:///lakeml/envs/lakeml-venv.tar.gz")
    cmd = submit.job_command(
        ["--env", "yarn", "--deploy-mode", "cluster", "--dry-run", "--archives", "extra.tar.gz#extra", "--py-files", "helpers.zip",
         "jobs/pipeline.py"]
    ).cmd
    assert cmd.count("--archives") == 1 and cmd.count("--py-files") == 1
    archives = cmd[cmd.index("--archives") + 1]
    assert archives == f"hdfs:///lakeml/envs/lakeml-venv.tar.gz#environment,{CONF_ZIP}#conf,extra.tar.gz#extra"
    assert cmd[cmd.index("--py-files") + 1] == f"{LIB_ZIP},helpers.zip"


def test_k8s_command(submitter, monkeypatch):
    v = {
        "K8S_API": "https://k8s.example.com:6443",
        "LAKEML_IMAGE": "registry.example.com/lakeml:2026.07",
        "K8S_NAMESPACE": "ml",
        "K8S_SERVICE_ACCOUNT": "lakeml-driver",
        "LAKEML_UPLOAD_PATH": "s3a://ml-bucket/spark-upload",
        "LAKEML_DRIVER_MEMORY": "6g",
        "LAKEML_EXECUTORS": "8",
        "LAKEML_EXECUTOR_CORES": "3",
        "LAKEML_EXECUTOR_MEMORY": "12g",
        "HIVE_METASTORE_URIS": "thrift://hive-metastore.ml.svc:9083",
        "LAKEML_LAKE": "s3a://ml-bucket/lake",
        "MLFLOW_TRACKING_URI": "http://mlflow.ml.svc:5000",
    }  # LAKEML_IMAGE_PYTHON not set: the default, and not forwarded
    for k, val in v.items():
        monkeypatch.setenv(k, val)
    cmd, extra, dry, _ = submit.job_command(["--env", "k8s", "--dry-run", "jobs/pipeline.py", "--only", "score"])[:4]
    assert dry is True
    forwarded = [k for k in K8S_VARS if k in v]
    expected = [
        f"{SPARK_HOME}/bin/spark-submit",
        "--master", "k8s://https://k8s.example.com:6443",
        "--deploy-mode", "cluster",
        # no --jars: jars_from cluster, the image has them
        *_confs(
            *_delta_confs("s3a://ml-bucket/lake/warehouse"),
            "spark.kubernetes.container.image=registry.example.com/lakeml:2026.07",
            "spark.kubernetes.namespace=ml",
            "spark.kubernetes.authenticate.driver.serviceAccountName=lakeml-driver",
            "spark.kubernetes.file.upload.path=s3a://ml-bucket/spark-upload",
            "spark.driver.memory=6g",
            "spark.executor.instances=8",
            "spark.executor.cores=3",
            "spark.executor.memory=12g",
            "spark.pyspark.python=/opt/venv/bin/python",
            "spark.hadoop.hive.metastore.uris=thrift://hive-metastore.ml.svc:9083",
            "spark.sql.adaptive.enabled=true",
            "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning=true",
            "spark.sql.session.timeZone=UTC",
            "spark.ui.showConsoleProgress=false",
            *(f"spark.kubernetes.driverEnv.{k}={v[k]}" for k in forwarded),
            f"spark.kubernetes.driverEnv.LAKEML_GIT_COMMIT={GIT_COMMIT}",
        ),
        "--name", "lakeml-pipeline",
        "--py-files", LIB_ZIP,
        "--archives", f"{CONF_ZIP}#conf",
        JOB, "--env", "k8s", "--conf-dir", "conf", "--only", "score",
    ]  # fmt: skip
    assert cmd == expected
    assert {k: extra[k] for k in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")} == {"PYSPARK_PYTHON": PY_SUBMITTER, "SPARK_LOCAL_IP": "127.0.0.1"}


def test_k8s_without_an_image_names_the_file_and_the_key(submitter):
    path = CONF / "envs" / "k8s.yaml"
    with pytest.raises(ConfigError) as e:
        submit.job_command(["--env", "k8s", "--dry-run", "jobs/pipeline.py"])
    assert str(e.value) == (
        f"{path}: spark.conf.spark.kubernetes.container.image: environment variable LAKEML_IMAGE is not set "
        "(referenced as ${LAKEML_IMAGE})"
    )
    p = run_cmd(["./spark-submit.sh", "--env", "k8s", "--dry-run", "jobs/pipeline.py"], check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.splitlines()[1] == f"error: {e.value}" and p.stderr.splitlines()[0].startswith("log file: ")


def test_an_envs_own_driver_env_wins_over_the_forwarded_value(submitter, monkeypatch, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    y = conf / "envs" / "yarn.yaml"
    y.write_text(y.read_text().replace("  conf:\n", "  conf:\n    spark.yarn.appMasterEnv.YARN_QUEUE: pinned\n", 1))
    monkeypatch.setenv("YARN_QUEUE", "analytics")
    cmd = submit.job_command(["--env", "yarn", "--deploy-mode", "cluster", "--dry-run", "jobs/pipeline.py"], conf_dir=conf).cmd
    confs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"]
    assert [c for c in confs if c.startswith("spark.yarn.appMasterEnv.YARN_QUEUE=")] == ["spark.yarn.appMasterEnv.YARN_QUEUE=pinned"]
    assert "spark.yarn.queue=analytics" in confs


def test_cluster_mode_hands_usecase_and_the_shipped_conf_to_the_driver(submitter, conf_copy):
    """--conf-dir and --usecase before the job: the env comes from that conf, which is what
    ships as conf.zip; the driver gets it as ``conf`` (its container's path) and the use case."""
    y = conf_copy / "envs" / "yarn.yaml"
    y.write_text(y.read_text().replace("spark.sql.session.timeZone: UTC", "spark.sql.session.timeZone: Europe/Berlin"))
    cmd = submit.job_command(["--env", "yarn", "--deploy-mode", "cluster", "--conf-dir", str(conf_copy), "--usecase", "churn",
                              "--dry-run", "jobs/pipeline.py", "--only", "score"]).cmd
    assert cmd[cmd.index(JOB) :] == [JOB, "--env", "yarn", "--conf-dir", "conf", "--usecase", "churn", "--only", "score"]
    assert "spark.sql.session.timeZone=Europe/Berlin" in cmd


def test_driver_secrets_file_is_private_and_read_back_by_java(tmp_path, spark):
    """The secrets file: a new 0700 folder, a 0600 file; java.util.Properties (as
    spark-submit loads it) reads back every value as it was, whatever it holds."""
    from lakeml.ops import driver_env

    values = {"spark.yarn.appMasterEnv.A_PASSWORD": " lead=ing:#x!\\y\tz", "spark.yarn.appMasterEnv.B_TOKEN": "line1\nline2 ünï"}
    f = tmp_path / "sub" / "driver-env.properties"
    driver_env.write_secrets(f, values)
    assert (f.parent.stat().st_mode & 0o777, f.stat().st_mode & 0o777) == (0o700, 0o600)
    jvm = spark.sparkContext._jvm
    props = jvm.java.util.Properties()
    props.load(jvm.java.io.InputStreamReader(jvm.java.io.FileInputStream(str(f)), "UTF-8"))
    assert {k: props.getProperty(k) for k in values} == values
