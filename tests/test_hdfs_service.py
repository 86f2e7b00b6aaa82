"""The local single-node HDFS (lakeml.ops.cluster.hdfs) really works: one JVM from the Maven jars.

One start with format, one restart without: WebHDFS (the `hdfs` package) writes, lists,
renames and reads; the files survive the restart; pyspark's bundled Hadoop client reads and
writes text, Parquet and Delta on hdfs://; the landing operations upload whole trees over
WebHDFS, and a refused upload lands nothing. Ports are not the stack's 9000/9870, so a running
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
from lakeml.lake import landing_ops as ops
from lakeml.ops.cluster import hdfs as cluster_hdfs
from test_landing_ops import SOURCES, make_tree, quarters

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
    """Starts/stops the HDFS JVM of cluster_hdfs.hdfs_command in `base`, logging to base/hdfs.log."""

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
        cmd = cluster_hdfs.hdfs_command(cluster_hdfs.jars_dir(ROOT), self.base, self.nn_port, self.http_port, format=format)
        t0 = time.time()
        with open(self.log, "ab") as out:
            out.write(f"\n==== start format={format}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        while time.time() - t0 < START_TIMEOUT:
            if self.proc.poll() is not None:
                pytest.fail(f"the HDFS JVM exited with {self.proc.returncode} while starting; log tail:\n{self.tail()}")
            if cluster_hdfs.webhdfs_ready(self.http, timeout=2):
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
    _run(["scripts/resolve_jars.sh", "hdfs"])
    base = tmp_path_factory.mktemp("hdfs")
    h = MiniHdfs(base, _free_port(19000), _free_port(19870))
    try:
        assert not cluster_hdfs.is_formatted(base)
        h.start(format=True)
        yield h
    finally:
        h.stop()


def test_command_is_one_loopback_jvm_and_formats_only_when_asked(tmp_path):
    jars = cluster_hdfs.jars_dir(ROOT)
    _run(["scripts/resolve_jars.sh", "hdfs"])
    cmd = cluster_hdfs.hdfs_command(jars, tmp_path, 19001, 19871, format=False)
    assert "org.apache.hadoop.mapreduce.MiniHadoopClusterManager" in cmd and "-nomr" in cmd
    assert "-format" not in cmd
    assert "-format" in cluster_hdfs.hdfs_command(jars, tmp_path, 19001, 19871, format=True)
    assert cmd[cmd.index("-nnport") + 1] == "19001" and cmd[cmd.index("-nnhttpport") + 1] == "19871"
    props = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-D")
    assert props["hdfs.minidfs.basedir"] == str(tmp_path.resolve() / "dfs")
    assert props["dfs.permissions.enabled"] == "false" and props["dfs.replication"] == "1"
    assert props["dfs.datanode.hostname"] == "127.0.0.1"
    assert not cluster_hdfs.is_formatted(tmp_path)
    assert not cluster_hdfs.webhdfs_ready("http://127.0.0.1:9", timeout=1)  # nothing there: False, no exception


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
    assert cluster_hdfs.is_formatted(mini_hdfs.base)
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
    _run(["scripts/resolve_jars.sh", "delta"])
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


def _hdfs_files(client, root: str) -> dict[str, bytes]:
    """Every file under ``root`` on HDFS (hidden ones too), read back through WebHDFS."""
    if client.status(root, strict=False) is None:
        return {}
    out = {}
    for folder, _, files in client.walk(root):
        for name in files:
            with client.read(f"{folder}/{name}") as r:
                out[f"{folder}/{name}"[len(root) + 1 :]] = r.read()
    return out


def test_landing_tree_upload_over_webhdfs(mini_hdfs, tmp_path):
    """25 dates x 2 sources in one call, several uploads at a time; again with a new date:
    refused whole while files exist; --overwrite replaces in place."""
    import hdfs

    c = hdfs.InsecureClient(mini_hdfs.http, user="lakeml")
    zone = "/lakeml/landing/churn"
    store = ops.WebHdfsStore(f"{mini_hdfs.fs}{zone}", mini_hdfs.http, user="lakeml")
    tree = make_tree(tmp_path / "exports", quarters(25), ["customers", "payments"])
    up = ops.upload(store, [tmp_path / "exports"], SOURCES, usecase="churn")
    assert (up.files, len(up.folders), up.workers) == (100, 50, ops.WebHdfsStore.workers)
    assert up.zone == f"{mini_hdfs.fs}{zone}"
    assert _hdfs_files(c, zone) == tree  # every byte, and no ._*.uploading left behind

    new = make_tree(tmp_path / "exports", ["2026-12-01"], ["payments"])
    (tmp_path / "exports" / "2020-01-01" / "customers" / "part-0.csv").write_bytes(b"changed\n")
    with pytest.raises(ops.LandingError) as e:
        ops.upload(store, [tmp_path / "exports"], SOURCES)
    assert str(e.value).splitlines()[0].startswith("nothing uploaded: 100 files already landed")
    assert f"  {zone}/2020-01-01/customers/part-0.csv" in str(e.value).splitlines()
    assert _hdfs_files(c, zone) == tree  # the new date did not land either

    ops.upload(store, [tmp_path / "exports"], SOURCES, overwrite=True)
    assert _hdfs_files(c, zone) == {**tree, **new, "2020-01-01/customers/part-0.csv": b"changed\n"}


def test_a_refused_landing_upload_creates_nothing_on_hdfs(mini_hdfs, tmp_path):
    import hdfs

    c = hdfs.InsecureClient(mini_hdfs.http, user="lakeml")
    store = ops.WebHdfsStore(f"{mini_hdfs.fs}/lakeml/landing/other", mini_hdfs.http, user="lakeml")
    make_tree(tmp_path / "exports", quarters(4), ["customers", "tickets"])
    with pytest.raises(ops.LandingError, match=r"\(and 3 more folders\): 'tickets' is not a source of use case other"):
        ops.upload(store, [tmp_path / "exports"], SOURCES, usecase="other")
    assert c.status("/lakeml/landing/other", strict=False) is None
    # a file that appears between the check and the rename is never replaced
    c.write("/lakeml/landing/other/2026-01-01/customers/x.csv", data=b"old", overwrite=True)
    (tmp_path / "x.csv").write_bytes(b"new")
    with pytest.raises(ops.LandingError, match="x.csv appeared while uploading; it was left as it is"):
        store.put("2026-01-01/customers/x.csv", str(tmp_path / "x.csv"))
    assert _hdfs_files(c, "/lakeml/landing/other") == {"2026-01-01/customers/x.csv": b"old"}
