"""The local single-node HDFS (lakeml.hdfs_service) really works: one JVM from the Maven jars.

One start with format, one restart without: WebHDFS (the `hdfs` package) writes, lists,
renames and reads; the files survive the restart; pyspark's bundled Hadoop client reads and
writes text, Parquet and Delta on hdfs://. Ports are not the stack's 9000/9870, so a running
stack is left alone. No `spark` fixture: Spark runs in a child process of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT
from lakeml import hdfs_service

pytestmark = pytest.mark.subprocess

START_TIMEOUT = 180  # s; ~5-10 s on an idle 2-core machine


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


class MiniHdfs:
    """Starts/stops the HDFS JVM of hdfs_service.hdfs_command in `base`, logging to base/hdfs.log."""

    def __init__(self, base: Path, nn_port: int, http_port: int):
        self.base, self.nn_port, self.http_port = base, nn_port, http_port
        self.http = f"http://127.0.0.1:{http_port}"
        self.fs = f"hdfs://127.0.0.1:{nn_port}"
        self.log = base / "hdfs.log"
        self.proc: subprocess.Popen | None = None
        self.startup_s: list[float] = []

    def tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def start(self, format: bool) -> None:
        cmd = hdfs_service.hdfs_command(hdfs_service.jars_dir(ROOT), self.base, self.nn_port, self.http_port, format=format)
        t0 = time.time()
        with open(self.log, "ab") as out:
            out.write(f"\n==== start format={format}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        while time.time() - t0 < START_TIMEOUT:
            if self.proc.poll() is not None:
                pytest.fail(f"the HDFS JVM exited with {self.proc.returncode} while starting; log tail:\n{self.tail()}")
            if hdfs_service.webhdfs_ready(self.http, timeout=2):
                self.startup_s.append(time.time() - t0)
                return
            time.sleep(0.5)
        pytest.fail(f"HDFS not ready within {START_TIMEOUT}s at {self.http}; log tail:\n{self.tail()}")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def mini_hdfs(tmp_path_factory):
    _run(["scripts/resolve_hdfs_jars.sh"])
    base = tmp_path_factory.mktemp("hdfs")
    h = MiniHdfs(base, _free_port(19000), _free_port(19870))
    try:
        assert not hdfs_service.is_formatted(base)
        h.start(format=True)
        yield h
    finally:
        h.stop()


def test_command_is_one_loopback_jvm_and_formats_only_when_asked(tmp_path):
    jars = hdfs_service.jars_dir(ROOT)
    _run(["scripts/resolve_hdfs_jars.sh"])
    cmd = hdfs_service.hdfs_command(jars, tmp_path, 19001, 19871, format=False)
    assert "org.apache.hadoop.mapreduce.MiniHadoopClusterManager" in cmd and "-nomr" in cmd
    assert "-format" not in cmd
    assert "-format" in hdfs_service.hdfs_command(jars, tmp_path, 19001, 19871, format=True)
    assert cmd[cmd.index("-nnport") + 1] == "19001" and cmd[cmd.index("-nnhttpport") + 1] == "19871"
    props = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-D")
    assert props["hdfs.minidfs.basedir"] == str(tmp_path.resolve() / "dfs")
    assert props["dfs.permissions.enabled"] == "false" and props["dfs.replication"] == "1"
    assert props["dfs.datanode.hostname"] == "127.0.0.1"
    assert not hdfs_service.is_formatted(tmp_path)
    assert not hdfs_service.webhdfs_ready("http://127.0.0.1:9", timeout=1)  # nothing there: False, no exception


def test_webhdfs_write_list_rename_read(mini_hdfs):
    import hdfs

    c = hdfs.InsecureClient(mini_hdfs.http, user="lakeml")
    c.makedirs("/lake/landing/day=1")
    c.write("/lake/landing/day=1/rows.txt", data=b"a\nb\nc\n", overwrite=True)
    assert c.list("/lake/landing") == ["day=1"]
    assert c.status("/lake/landing/day=1/rows.txt")["length"] == 6
    c.rename("/lake/landing", "/lake/archive")  # moves the folder with its files
    assert c.status("/lake/landing", strict=False) is None
    assert c.list("/lake/archive/day=1") == ["rows.txt"]
    with c.read("/lake/archive/day=1/rows.txt") as r:
        assert r.read() == b"a\nb\nc\n"
    assert c.status("/lake/archive/day=1/rows.txt")["owner"] == "lakeml"


def test_restart_without_format_keeps_the_files(mini_hdfs):
    import hdfs

    c = hdfs.InsecureClient(mini_hdfs.http, user="lakeml")
    c.write("/keep/me.txt", data=b"still here\n", overwrite=True)
    mini_hdfs.stop()
    assert hdfs_service.is_formatted(mini_hdfs.base)
    mini_hdfs.start(format=False)
    with c.read("/keep/me.txt") as r:
        assert r.read() == b"still here\n"
    assert c.list("/lake/archive/day=1") == ["rows.txt"]


SPARK_CHECK = textwrap.dedent(
    """
    import glob, sys
    from pyspark.sql import SparkSession
    fs = sys.argv[1]
    spark = (SparkSession.builder.master("local[1]").appName("lakeml-hdfs-test")
             .config("spark.jars", ",".join(sorted(glob.glob(sys.argv[2] + "/*.jar"))))
             .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
             .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "1").config("spark.databricks.delta.snapshotPartitions", "1")
             .getOrCreate())
    print("TEXT", spark.read.text(fs + "/keep/me.txt").count())
    df = spark.range(50).withColumnRenamed("id", "x")
    df.write.mode("overwrite").parquet(fs + "/lake/parquet")
    print("PARQUET", spark.read.parquet(fs + "/lake/parquet").count())
    df.write.format("delta").mode("overwrite").save(fs + "/lake/delta")
    df.limit(5).write.format("delta").mode("append").save(fs + "/lake/delta")
    print("DELTA", spark.read.format("delta").load(fs + "/lake/delta").count())
    spark.stop()
    """
)


def test_pyspark_reads_and_writes_text_parquet_delta_on_hdfs(mini_hdfs):
    import hdfs

    jars = ROOT / ".cache" / "jars"
    _run(["scripts/resolve_jars.sh"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY_")}
    env.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    p = subprocess.run(
        [sys.executable, "-c", SPARK_CHECK, mini_hdfs.fs, str(jars)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert p.returncode == 0, f"spark on {mini_hdfs.fs} failed:\n{p.stderr[-6000:]}\n--- HDFS log tail:\n{mini_hdfs.tail(30)}"
    out = dict(line.split(" ", 1) for line in p.stdout.splitlines() if line.split(" ")[0] in ("TEXT", "PARQUET", "DELTA"))
    assert out == {"TEXT": "1", "PARQUET": "50", "DELTA": "55"}, p.stdout
    c = hdfs.InsecureClient(mini_hdfs.http, user="lakeml")
    assert "_delta_log" in c.list("/lake/delta")  # a real Delta table on HDFS, seen through WebHDFS
