"""./scripts/sql.sh answers while a job runs on the embedded env: the job holds the data
folder's lock and the Derby metastore, so sql.sh reads the warehouse's Delta tables through
an in-memory catalog, read-only, and says so in one line. With no job, the metastore as
before."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import CONF, ROOT, run_cmd
from lakeml.core import lock
from lakeml.ops.submit import sql_command

# A job as lakeml.cli.load starts one: the lock first, then Spark on the Derby metastore,
# then Delta tables written; it keeps writing (a commit of 7 rows every 2 s) until killed.
JOB = """
import sys, time
sys.path.insert(0, {lib!r})
from lakeml.core import lock, tables
from lakeml.core.config import load_env
from lakeml.core.session import get_spark
env = load_env({conf!r}, "embedded")
lock.acquire(env.data_dir, command="jobs/pipeline.py --scheduled")
spark = get_spark(env, "job", extra_conf={{"spark.sql.shuffle.partitions": "1", "spark.default.parallelism": "1",
                                          "spark.driver.memory": "1g"}})
tables.ensure_database(spark, "churn")
tables.overwrite(spark.range(42).selectExpr("id", "id % 3 AS k"), "churn.t")
spark.range(3).write.format("delta").saveAsTable("d3")  # the default database
print("held", flush=True)
while True:
    spark.range(7).selectExpr("id", "id % 3 AS k").write.format("delta").mode("append").saveAsTable("churn.t")
    time.sleep(2)
"""


def _confs(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"]


@pytest.mark.subprocess
def test_sql_sh_reads_the_delta_tables_read_only_while_a_job_holds_the_data_folder(tmp_path):
    data = tmp_path / "data"
    job = subprocess.Popen([sys.executable, "-c", JOB.format(lib=str(ROOT / "lib"), conf=str(CONF))],
                           env={**_env(), "LAKEML_DATA_DIR": str(data)}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert job.stdout.readline().strip() == "held", "the job did not start"
        p = run_cmd(["./scripts/sql.sh", "-e",
                     "SELECT count(*) FROM churn.t; SELECT count(*) FROM default.d3; INSERT INTO churn.t VALUES (9, 0)"],
                    {"LAKEML_DATA_DIR": str(data)}, timeout=300, check=False)
        assert job.poll() is None, "the job ended while sql.sh ran"
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    out = p.stdout.split()
    # a committed version whatever the job was writing: 42 rows, then 7 per commit
    assert len(out) == 2 and int(out[0]) >= 42 and (int(out[0]) - 42) % 7 == 0 and out[1] == "3", p.stdout + p.stderr[-3000:]
    said = [ln for ln in p.stderr.splitlines() if ln.startswith("sql.sh: ")]
    assert said == [f"sql.sh: a job (pid {job.pid}, jobs/pipeline.py --scheduled) holds {data}: "
                    "reading the Delta tables read-only, without the metastore"], p.stderr[-3000:]
    assert p.returncode != 0 and "'INSERT' expects a table but `spark_catalog`.`churn`.`t` is a view" in p.stderr
    assert "derby" not in p.stderr.lower()
    # nothing of sql.sh in the data folder: every commit of churn.t is the job's, no scratch left
    commits = [json.loads(ln) for f in sorted((data / "warehouse" / "churn.db" / "t" / "_delta_log").glob("*.json"))
               for ln in f.read_text().splitlines() if '"commitInfo"' in ln]
    assert all(c["commitInfo"]["operation"] in ("CREATE OR REPLACE TABLE AS SELECT", "WRITE", "CREATE TABLE AS SELECT")
               for c in commits), commits
    assert sorted(p.name for p in (data / "warehouse").iterdir()) == ["churn.db", "d3"]


def _plain_metastore_command(tmp_path) -> list[str]:
    """What sql_command does when no job holds the data folder: (its problems, or [])."""
    sub = sql_command(["-e", "SELECT 1"], CONF)
    confs = _confs(sub.cmd)
    wanted = ["spark.sql.catalogImplementation=hive",
              f"spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName={tmp_path}/metastore_db;create=true"]
    return ([f"notice {sub.notice!r}"] * bool(sub.notice) + [f"scratch {sub.scratch}"] * (sub.scratch is not None)
            + ["-i"] * ("-i" in sub.cmd)
            + [f"no {w}" for w in wanted if w not in confs] + [f"ends {sub.cmd[-2:]}"] * (sub.cmd[-2:] != ["-e", "SELECT 1"]))


def test_without_a_job_sql_sh_opens_the_metastore(tmp_path, monkeypatch):
    """No lock file, then a lock file left by a killed job: spark-sql on the Derby metastore."""
    monkeypatch.setenv("LAKEML_DATA_DIR", str(tmp_path))
    assert _plain_metastore_command(tmp_path) == []  # no lock file
    dead = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'lib')!r})\n"
                             f"from lakeml.core import lock; lock.acquire({str(tmp_path)!r}, command='jobs/ingest.py')"])
    assert dead.wait() == 0
    assert lock.holder(lock.lock_path(str(tmp_path)))["pid"] == dead.pid and lock.held_by(str(tmp_path)) is None
    assert _plain_metastore_command(tmp_path) == []  # a lock file whose holder is gone


def _env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_GATEWAY", "MLFLOW_"))}
    e["PYTHONPATH"] = str(ROOT / "lib")
    return e
