"""The local HDFS (lakeml.ops.cluster.hdfs) really works: a NameNode and a DataNode, each a JVM.

Started by the stack's supervisor with only these two services, in a folder and on ports of
their own (not the stack's 9000/9870: a running stack is left alone). One start with format,
one restart without: WebHDFS (the `hdfs` package) writes, lists, renames and reads; the files
survive the restart; pyspark's bundled Hadoop client reads and writes text, Parquet and Delta
on hdfs://; the DataNode stops during a Spark read (back soon: the read finishes with the
same answer; gone: a clear error naming the file, and nothing lost); the landing operations
upload whole trees over WebHDFS, and a refused upload lands nothing. No `spark` fixture:
Spark runs in a child process of its own.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT
from lakeml.lake import landing_ops as ops
from lakeml.lake.stores import WebHdfsStore
from lakeml.ops.cluster import hdfs as cluster_hdfs
from lakeml.ops.cluster.hadoop import conf_dir, hdfs_site
from lakeml.ops.cluster.supervisor import Ports, Stack, port_open
from test_landing_ops import SOURCES, make_tree, quarters

pytestmark = pytest.mark.subprocess


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
    """The stack's two HDFS services alone, in ``base``: start (formats once), stop, logs."""

    def __init__(self, base: Path, ports: Ports):
        self.stack = Stack(base, ports=ports, services=lambda st: [cluster_hdfs.namenode(st), cluster_hdfs.datanode(st)])
        self.base, self.ports = self.stack.base, ports
        self.http = f"http://127.0.0.1:{ports.webhdfs}"
        self.fs = f"hdfs://127.0.0.1:{ports.namenode}"

    def tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {s.name}\n" + "\n".join(self.stack.log_file(s).read_text(errors="replace").splitlines()[-lines:])
                         for s in self.stack.services if self.stack.log_file(s).exists())

    def start(self, names: list[str] | None = None) -> None:
        self.stack.up(names)

    def stop(self, names: list[str] | None = None) -> None:
        self.stack.down(names)


@pytest.fixture(scope="module")
def mini_hdfs(tmp_path_factory):
    _run(["scripts/resolve_jars.sh", "hdfs"])
    base = tmp_path_factory.mktemp("hdfs")
    ports = Ports(namenode=_free_port(19000), webhdfs=_free_port(19870), datanode=_free_port(19866), datanode_ui=_free_port(19864))
    h = MiniHdfs(base, ports)
    try:
        assert not cluster_hdfs.is_formatted(cluster_hdfs.dfs_dir(h.stack))
        h.start()
        yield h
    finally:
        h.stop()


def test_two_loopback_daemons_formatted_once(mini_hdfs):
    st = mini_hdfs.stack
    nn, dn = (s.command(st) for s in st.services)
    assert nn[-1] == cluster_hdfs.NN_CLASS and dn[-1] == cluster_hdfs.DN_CLASS  # plain starts: no -format
    assert nn[nn.index("-cp") + 1].split(os.pathsep)[0] == str(conf_dir(st))
    site = hdfs_site(st)
    addresses = [v for k, v in site.items() if k.endswith("address")]
    assert len(addresses) == 6 and all(a.startswith("127.0.0.1:") for a in addresses)
    conf = (conf_dir(st) / "hdfs-site.xml").read_text()
    assert f"<value>127.0.0.1:{mini_hdfs.ports.datanode}</value>" in conf and "<name>dfs.replication</name><value>1</value>" in conf
    assert cluster_hdfs.is_formatted(cluster_hdfs.dfs_dir(st))
    assert (st.base / "logs" / "hdfs-format.log").read_text().count("has been successfully formatted") == 2  # two name dirs, one format
    pids = {s.name: st.pid(s) for s in st.services}
    assert all(pids.values()) and len(set(pids.values())) == 2  # two processes
    assert not cluster_hdfs.webhdfs_ready("http://127.0.0.1:9", "http://127.0.0.1:9", timeout=1)  # nothing there: False, no exception


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
    assert not port_open(mini_hdfs.ports.namenode) and not port_open(mini_hdfs.ports.datanode)
    mini_hdfs.start()  # formatted already: started as it is
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
    assert p.returncode == 0, f"spark on {mini_hdfs.fs} failed:\n{p.stderr[-6000:]}\n--- HDFS log tails:\n{mini_hdfs.tail(30)}"
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


READ_THROUGH_OUTAGES = textwrap.dedent(
    """
    import glob, pathlib, sys, time
    from pyspark.sql import SparkSession
    fs, go = sys.argv[1], pathlib.Path(sys.argv[3])
    spark = (SparkSession.builder.master("local[2]").appName("lakeml-datanode-fault")
             .config("spark.jars", ",".join(sorted(glob.glob(sys.argv[2] + "/*.jar"))))
             .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
             .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    table = fs + "/fault/delta"
    spark.range(0, 300000, numPartitions=6).selectExpr("id", "id % 7 AS k").write.format("delta").mode("overwrite").save(table)
    def read():
        return " ".join(map(str, spark.read.format("delta").load(table)
                                 .selectExpr("count(*)", "sum(CAST(xxhash64(id, k) AS DECIMAL(38, 0)))").first()))
    print("BEFORE", read(), flush=True)
    for phase in ("SHORT", "GONE", "AFTER"):
        print("WAITING", phase, flush=True)
        while not (go / phase).exists():
            time.sleep(0.1)
        t0 = time.time()
        try:
            print(phase, read(), "IN", round(time.time() - t0, 1), flush=True)
        except Exception as e:
            print(phase, "FAILED IN", round(time.time() - t0, 1), " ".join(str(e).split()), flush=True)
    spark.stop()
    """
)


def _expect(lines, proc, prefix: str, err: Path, timeout: float = 300) -> str:
    """The next line of the child that starts with ``prefix`` (its other lines are skipped)."""
    import queue

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError(f"no {prefix!r} line from the Spark child within {timeout}s (exit {proc.poll()}); "
                         f"its stderr ends:\n{err.read_text()[-4000:]}")


def test_datanode_stopping_during_a_spark_read(mini_hdfs, tmp_path):
    """A Delta table on HDFS is read while the DataNode is away: back after a few seconds, the
    read waits and gives the same answer; away for the whole read, the read fails naming the
    block and the file; back again, the same answer and every file byte for byte."""
    import queue
    import threading

    import hdfs

    _run(["scripts/resolve_jars.sh", "delta"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_GATEWAY_")}
    env.update(SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    err = tmp_path / "child.err"
    proc = subprocess.Popen([sys.executable, "-c", READ_THROUGH_OUTAGES, mini_hdfs.fs, str(ROOT / ".cache" / "jars"), str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=open(err, "w"), text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    c = hdfs.InsecureClient(mini_hdfs.http, user="lakeml")
    try:
        before = _expect(lines, proc, "BEFORE", err).split(" IN ")[0]
        files = {name: hashlib.sha256(data).hexdigest() for name, data in _hdfs_files(c, "/fault").items()}
        _expect(lines, proc, "WAITING SHORT", err)
        mini_hdfs.stop(["hdfs-dn"])
        (tmp_path / "SHORT").touch()
        time.sleep(3)
        mini_hdfs.start(["hdfs-dn"])  # ~2 s more: the read began with no DataNode and goes on
        short, short_s = _expect(lines, proc, "SHORT", err).split(" IN ")

        _expect(lines, proc, "WAITING GONE", err)
        mini_hdfs.stop(["hdfs-dn"])
        (tmp_path / "GONE").touch()
        gone = _expect(lines, proc, "GONE", err)
        mini_hdfs.start(["hdfs-dn"])
        _expect(lines, proc, "WAITING AFTER", err)
        (tmp_path / "AFTER").touch()
        after = _expect(lines, proc, "AFTER", err).split(" IN ")[0]
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
        mini_hdfs.start()  # whatever happened, the next tests get both daemons
    assert before.split()[0] == "300000"
    assert short == before and float(short_s) >= 3  # it waited for the DataNode (away 3 s + its start)
    assert gone.startswith("FAILED"), gone
    assert "BlockMissingException: Could not obtain block: BP-" in gone and "file=/fault/delta/" in gone, gone[:3000]
    assert after == before
    assert {name: hashlib.sha256(data).hexdigest() for name, data in _hdfs_files(c, "/fault").items()} == files


def test_landing_tree_upload_over_webhdfs(mini_hdfs, tmp_path):
    """25 dates x 2 sources in one call, several uploads at a time; again with a new date:
    refused whole while files exist; --overwrite replaces in place."""
    import hdfs

    c = hdfs.InsecureClient(mini_hdfs.http, user="lakeml")
    zone = "/lakeml/landing/churn"
    store = WebHdfsStore(f"{mini_hdfs.fs}{zone}", mini_hdfs.http, user="lakeml")
    tree = make_tree(tmp_path / "exports", quarters(25), ["customers", "payments"])
    up = ops.upload(store, [tmp_path / "exports"], SOURCES, usecase="churn")
    assert (up.files, len(up.folders), up.workers) == (100, 50, WebHdfsStore.workers)
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
    store = WebHdfsStore(f"{mini_hdfs.fs}/lakeml/landing/other", mini_hdfs.http, user="lakeml")
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
