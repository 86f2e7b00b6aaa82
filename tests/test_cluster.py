"""The cluster stack, brought up once for this module by ./scripts/cluster.sh, with the
whole workflow run on it through ./spark-submit.sh --env cluster and checked through
real clients: HdfsCLI over WebHDFS, pyhive and beeline on the Thrift Server, the MLflow
server's REST API. The stack lives in a temporary folder and goes down at the end; the
last test checks that no process of it is left.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import CONF, TINY, run_cmd
from lakeml.core.lock import pid_alive as _pid_alive
from lakeml.ops.cluster import HOST, Ports, StackError, port_open
from lakeml.ops.cluster.stack import ClusterStack as Stack
from test_landing_ops import make_tree, quarters

pytestmark = [pytest.mark.cluster, pytest.mark.subprocess]

PORTS = Ports()
SERVICES = ["postgres", "hdfs-nn", "hdfs-dn", "mlflow", "spark-master", "spark-worker", "yarn-rm", "yarn-nm",
            "spark-history", "thriftserver", "redis"]


@pytest.fixture(scope="module")
def stack_env():
    # not under pytest's basetemp: every pytest session that starts (another suite running
    # meanwhile) makes /tmp/pytest-of-<user> private again, and PostgreSQL, which runs as
    # the postgres user, then loses its data directory (PANIC ... Permission denied)
    busy = [p for p in (PORTS.postgres, PORTS.namenode, PORTS.mlflow, PORTS.spark_master, PORTS.yarn_rm, PORTS.history_ui, PORTS.thrift)
            if port_open(p)]
    if busy:
        pytest.fail(
            f"ports {busy} are taken: another stack (./scripts/cluster.sh status) or another server runs; "
            "stop it before the cluster suite (or move the stack: LAKEML_PG_PORT, LAKEML_HDFS_PORT, ...)", pytrace=False,
        )
    base = Path(tempfile.mkdtemp(prefix="lakeml-cluster-stack-"))
    v = {
        "LAKEML_CLUSTER_DIR": str(base),
        "LAKEML_PG_PASSWORD": os.environ.get("LAKEML_PG_PASSWORD") or secrets.token_hex(12),
        # the jobs' own local state (dist zips are shared; derby is not used here)
        "LAKEML_DATA_DIR": str(base / "jobs"),
    }
    old = {k: os.environ.get(k) for k in v}
    os.environ.update(v)
    try:
        p = run_cmd(["./scripts/cluster.sh", "up"], timeout=900, check=False)
        if p.returncode != 0:
            run_cmd(["./scripts/cluster.sh", "down"], check=False)
            pytest.fail(f"cluster.sh up failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}", pytrace=False)
        yield v
    finally:
        run_cmd(["./scripts/cluster.sh", "down"], check=False)
        for k, val in old.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ran_pipeline(stack_env):
    """generate (the suite's small demo, TINY) + the whole pipeline, on the standalone cluster."""
    t0 = time.time()
    try:
        run_cmd(["./spark-submit.sh", "--env", "cluster", "jobs/generate.py",
                 "--entities", str(TINY.entities), "--days", str(TINY.days), "--seed", str(TINY.seed)])
        p = run_cmd(["./spark-submit.sh", "--env", "cluster", "jobs/pipeline.py"])
    except AssertionError as e:
        logs = run_cmd(["./scripts/cluster.sh", "logs"], check=False).stdout
        raise AssertionError(f"{e}\n--- service logs\n{logs[-12000:]}") from None
    return {"stdout": p.stdout, "seconds": time.time() - t0}


def test_status_lists_every_service_ready(stack_env):
    p = run_cmd(["./scripts/cluster.sh", "status"])
    lines = {ln.split()[0]: ln for ln in p.stdout.splitlines() if ln.split()[:1] and ln.split()[0] in SERVICES}
    assert sorted(lines) == sorted(SERVICES)
    assert {name: ln for name, ln in lines.items() if " ready " not in ln or HOST not in ln} == {}


def test_up_twice_does_no_harm(stack_env):
    stack = Stack()
    before = {s.name: stack.pid(s) for s in stack.services}
    p = run_cmd(["./scripts/cluster.sh", "up"])
    assert p.stdout.count("already up") == len(SERVICES), p.stdout
    assert {s.name: stack.pid(s) for s in stack.services} == before


def test_pipeline_runs_on_the_cluster(ran_pipeline, stack_env):
    out = ran_pipeline["stdout"]
    assert "churn.predictions" in out and "champion = version 1" in out
    # the executors ran on the standalone worker, not in a local driver
    apps = __import__("json").loads(
        __import__("urllib.request", fromlist=["urlopen"]).urlopen(f"http://{HOST}:{PORTS.spark_master_ui}/json/").read()
    )["completedapps"]
    assert {"lakeml-generate", "lakeml-pipeline"} <= {a["name"] for a in apps}


def test_the_pipeline_filled_the_redis_online_store(ran_pipeline):
    from lakeml.core.config import load_env, load_usecase
    from lakeml.serving.store import RedisStore, open_store

    with open_store(load_env(CONF, "cluster"), load_usecase(CONF, "churn")) as s:
        meta = s.meta()
        assert isinstance(s, RedisStore) and meta["rows"] > 500
        assert f"{meta['rows']:,} rows of {meta['as_of_date']}" in ran_pipeline["stdout"]


def test_files_and_tables_are_on_hdfs(ran_pipeline):
    from hdfs import InsecureClient

    c = InsecureClient(f"http://{HOST}:{PORTS.webhdfs}", user="lakeml")
    batches = c.list("/lakeml/landing/churn")  # the use case's own zone
    assert len([b for b in batches if b[:2] == "20"]) >= 170
    assert set(c.list(f"/lakeml/landing/churn/{batches[0]}")) >= {"customers"}
    log = c.list("/lakeml/warehouse/churn.db/predictions/_delta_log")
    assert any(f.endswith(".json") for f in log)


def test_predictions_through_pyhive_and_beeline(ran_pipeline):
    from pyhive import hive

    conn = hive.connect(host=HOST, port=PORTS.thrift, username="analyst")
    cur = conn.cursor()
    cur.execute("SELECT score_date, count(*), min(model_version), max(churn_probability) FROM churn.predictions GROUP BY score_date")
    rows = cur.fetchall()
    cur.execute(
        "SELECT count(*) FROM churn.customer_features WHERE as_of_date = (SELECT max(as_of_date) FROM churn.customer_features)"
    )
    (expected,) = cur.fetchone()
    conn.close()
    assert len(rows) == 1
    _, n, version, pmax = rows[0]
    assert n == expected > 500 and version == "1" and 0 < pmax <= 1
    p = run_cmd(["./scripts/sql.sh", "--env", "cluster", "--outputformat=tsv2", "--showHeader=false", "-e",
                 "SELECT count(*), min(model_version) FROM churn.predictions"])
    # beeline echoes its continuation prompt ('. . . .> ') before the first row
    row = re.search(r"(\d+)\t(\S+)\s*$", p.stdout.strip().splitlines()[-1])
    assert row and row.groups() == (str(n), "1"), p.stdout[-2000:]


def test_model_version_through_the_mlflow_server(ran_pipeline):
    from mlflow import MlflowClient

    uri = f"http://{HOST}:{PORTS.mlflow}"  # the registry too: in-process tests set the process's registry URI
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = c.get_model_version_by_alias("churn_classifier", "champion")
    assert champion.version == "1"
    run = c.get_run(champion.run_id)
    assert run.data.metrics["test_roc_auc"] > 0.7
    assert {a.path for a in c.list_artifacts(champion.run_id, "plots")} >= {"plots/roc.png"}


def test_landing_operations_with_hdfscli(ran_pipeline, tmp_path):
    from hdfs import InsecureClient

    c = InsecureClient(f"http://{HOST}:{PORTS.webhdfs}", user="lakeml")
    export = tmp_path / "export"
    export.mkdir()
    (export / "tickets-extra.csv").write_text(
        "ticket_id,customer_id,opened_at,category,priority\n"
        "T-EXTRA-1,C0000001,2026-07-01 10:00:00,billing,high\n"
    )
    day = "2026-11-30"  # after the demo data, and in the past: ingest refuses a batch dated after today
    landing = ["./spark-submit.sh", "--env", "cluster", "--usecase", "churn", "jobs/landing.py"]
    up = run_cmd([*landing, "upload", str(export), "--source", "support_tickets", "--date", day])
    assert f"landed /lakeml/landing/churn/{day}/support_tickets/: tickets-extra.csv" in up.stdout
    lst = run_cmd([*landing, "list"]).stdout
    assert any(ln.split()[:2] == [day, "pending"] for ln in lst.splitlines()), lst
    again = run_cmd([*landing, "upload", str(export), "--source", "support_tickets", "--date", day], check=False)
    assert again.returncode == 2 and f"/lakeml/landing/churn/{day}/support_tickets/tickets-extra.csv" in again.stdout
    assert "error: nothing uploaded: 1 file already landed" in again.stdout + again.stderr
    refused = run_cmd([*landing, "archive", "--date", day], check=False)
    assert refused.returncode == 2 and "not ingested" in refused.stdout + refused.stderr
    run_cmd(["./spark-submit.sh", "--env", "cluster", "jobs/ingest.py"])
    lst = run_cmd([*landing, "list"]).stdout
    assert any(ln.split()[:2] == [day, "ingested"] for ln in lst.splitlines()), lst
    run_cmd([*landing, "archive", "--date", day])
    assert c.status(f"/lakeml/landing/churn/{day}", strict=False) is None
    assert c.list(f"/lakeml/archive/churn/{day}/support_tickets") == ["tickets-extra.csv"]


def test_a_tree_of_dates_lands_in_one_call_over_webhdfs(ran_pipeline, tmp_path):
    """25 quarters x 2 sources in one job run (one JVM); a tree with a folder that is not a
    date is refused whole and lands nothing."""
    from hdfs import InsecureClient

    c = InsecureClient(f"http://{HOST}:{PORTS.webhdfs}", user="lakeml")
    days = [d.replace("20", "19", 1) for d in quarters(25)]  # long before the demo data: batches of their own
    tree = make_tree(tmp_path / "exports", days, ["customers", "payments"])
    landing = ["./spark-submit.sh", "--env", "cluster", "--usecase", "churn", "jobs/landing.py", "upload"]
    t0 = time.time()
    p = run_cmd([*landing, str(tmp_path / "exports")])
    took = time.time() - t0
    assert "uploaded 100 files (0.0 MB) into 50 folders of hdfs://127.0.0.1:" in p.stdout, p.stdout[-2000:]

    def read(rel: str) -> bytes:
        with c.read(f"/lakeml/landing/churn/{rel}") as r:
            return r.read()

    sample = dict(list(tree.items())[::17])
    assert {rel: read(rel) for rel in sample} == sample
    assert sorted(d for d in c.list("/lakeml/landing/churn") if d[:2] == "19") == days
    (tmp_path / "more" / "2026-12-30" / "customers").mkdir(parents=True)
    (tmp_path / "more" / "2026-12-30" / "customers" / "x.csv").write_text("customer_id\n")
    (tmp_path / "more" / "latest" / "customers").mkdir(parents=True)
    bad = run_cmd([*landing, str(tmp_path / "more")], check=False)
    assert bad.returncode == 2 and f"{tmp_path / 'more' / 'latest'}: not a date folder" in bad.stdout + bad.stderr
    assert c.status("/lakeml/landing/churn/2026-12-30", strict=False) is None
    # these dates are not the use case's: out of the way of the later tests (never ingested)
    for d in days:
        c.delete(f"/lakeml/landing/churn/{d}", recursive=True)
    print(f"tree upload on the cluster: 100 files, 50 folders in {took:.1f}s (one job)")


def test_notebook_runs_against_the_cluster(ran_pipeline, stack_env, monkeypatch):
    from test_notebook import execute_notebook

    execute_notebook(monkeypatch, "cluster", {k: stack_env[k] for k in ("LAKEML_PG_PASSWORD", "LAKEML_DATA_DIR")})


def _predictions() -> list[tuple]:
    from pyhive import hive

    conn = hive.connect(host=HOST, port=PORTS.thrift, username="analyst")
    try:
        cur = conn.cursor()
        cur.execute("SELECT customer_id, score_date, model_version, churn_probability FROM churn.predictions "
                    "ORDER BY customer_id, score_date")
        return cur.fetchall()
    finally:
        conn.close()


def _yarn_app(name: str) -> dict:
    """The newest YARN application called ``name`` (the ResourceManager's REST API)."""
    apps = __import__("json").loads(
        __import__("urllib.request", fromlist=["urlopen"]).urlopen(f"http://{HOST}:{PORTS.yarn_rm_ui}/ws/v1/cluster/apps").read()
    )["apps"]["app"]
    return max((a for a in apps if a["name"] == name), key=lambda a: a["startedTime"])


def test_yarn_env_experiments_keep_their_artifacts_on_the_server(stack_env):
    """An experiment made by --env yarn (its first job on a new server) stores artifacts in the
    server's own store, through the tracking URI: MLflow refuses an http:// location."""
    code = ("import sys, mlflow; from lakeml.core import tracking; from lakeml.core.config import load_env; env = load_env('conf', 'yarn');"
            "tracking.configure(env); e = tracking.experiment(env, 't_yarn_first'); r = mlflow.start_run(experiment_id=e);"
            "mlflow.log_text('kept', 'check/kept.txt'); mlflow.end_run();"
            "print(mlflow.get_experiment(e).artifact_location, mlflow.artifacts.load_text(f'runs:/{r.info.run_id}/check/kept.txt'))")
    p = run_cmd([".venv/bin/python", "-c", code], {"PYTHONPATH": "lib"})
    assert p.stdout.split()[-2:] == ["mlflow-artifacts:/t_yarn_first", "kept"], p.stdout[-2000:]


def test_yarn_cluster_mode_scores_into_the_same_table(ran_pipeline):
    """The driver in YARN's application master, Python and lib/ and conf/ shipped to it: the
    score job rewrites the newest date with the same rows; its summary reaches this terminal;
    the application is in YARN and in the History Server."""
    before = _predictions()
    p = run_cmd(["./spark-submit.sh", "--env", "yarn", "--deploy-mode", "cluster", "jobs/score.py"])
    assert '"table": "churn.predictions"' in p.stdout and '"model_version": "1"' in p.stdout, p.stdout[-3000:]
    assert _predictions() == before
    app = _yarn_app("lakeml-score")
    assert (app["state"], app["finalStatus"], app["applicationType"]) == ("FINISHED", "SUCCEEDED", "SPARK")
    assert f"{app['id']}: succeeded" in p.stderr
    from lakeml.ops.cluster import history

    deadline = time.time() + 60
    while time.time() < deadline and app["id"] not in {a["id"] for a in history.applications(Stack())}:
        time.sleep(2)
    assert app["id"] in {a["id"] for a in history.applications(Stack())}


def test_yarn_client_mode_and_a_failure_in_cluster_mode(ran_pipeline):
    """Client mode: the driver here, executors in YARN containers. Cluster mode: a job that
    fails exits non-zero, and the driver's own error reaches the user."""
    p = run_cmd(["./spark-submit.sh", "--env", "yarn", "jobs/quality.py"])
    assert '"failures": []' in p.stdout and "master yarn" in p.stdout + p.stderr, p.stdout[-2000:]
    assert _yarn_app("lakeml-quality")["finalStatus"] == "SUCCEEDED"
    bad = run_cmd(["./spark-submit.sh", "--env", "yarn", "--deploy-mode", "cluster", "--conf", "spark.yarn.maxAppAttempts=1",
                   "jobs/score.py", "--date", "1999-01-01"], check=False)
    assert bad.returncode != 0
    said = bad.stderr.split("said:", 1)[-1]
    assert said.lstrip().startswith("error: ") and "1999-01-01" in said, bad.stderr[-3000:]
    assert _yarn_app("lakeml-score")["finalStatus"] == "FAILED"


def _sql_row(query: str) -> tuple:
    """The first row of ``query``, through the Thrift Server."""
    from pyhive import hive

    conn = hive.connect(host=HOST, port=PORTS.thrift, username="analyst")
    try:
        cur = conn.cursor()
        cur.execute(query)
        return cur.fetchone()
    finally:
        conn.close()


def _table_digest(table: str) -> tuple:
    """Row count and an order-free hash of every row."""
    return _sql_row(f"SELECT count(*), sum(CAST(xxhash64(*) AS DECIMAL(38, 0))) FROM {table}")


def _kill_when(proc: subprocess.Popen, said: str, process: str, lines: list[str], base: str) -> int:
    """Read ``proc``'s output until a line contains ``said``, then SIGKILL the one JVM of the
    stack in ``base`` (its working folder is there) whose command line contains ``process``;
    its pid."""
    for line in proc.stdout:
        lines.append(line)
        if said in line:
            break
    found = [int(x) for x in subprocess.run(["pgrep", "-f", process], capture_output=True, text=True).stdout.split()]
    # the JVM itself (on YARN the container's `bash -c "java ..."` matches as well)
    pids = [p for p in found if os.path.realpath(f"/proc/{p}/cwd").startswith(os.path.realpath(base))
            and Path(f"/proc/{p}/comm").read_text().strip() == "java"]
    assert len(pids) == 1, f"one {process} expected, found {pids}\n{''.join(lines[-40:])}"
    os.kill(pids[0], 9)
    return pids[0]


@pytest.mark.parametrize("env,executor", [("cluster", "executor.CoarseGrainedExecutorBackend"),
                                          ("yarn", "YarnCoarseGrainedExecutorBackend")])
def test_an_executor_killed_during_features_is_survived(ran_pipeline, stack_env, env, executor):
    """kill -9 of the only executor's JVM while the features backfill runs: Spark starts
    another (the standalone worker / YARN a new container), recomputes what was lost, and
    the feature table ends as a clean run leaves it."""
    table = "churn.customer_features"
    before = _table_digest(table)
    first, last = _sql_row(f"SELECT min(as_of_date), max(as_of_date) FROM {table}")
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_GATEWAY", "MLFLOW_"))}
    # the table's own dates: later batches (landed by other tests) would add snapshots
    proc = subprocess.Popen(["./spark-submit.sh", "--env", env, "jobs/features.py",
                             "--backfill", str(first), str(last), "--skip-leakage-check"],
                            cwd=str(Path(__file__).resolve().parents[1]), env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        _kill_when(proc, "features of churn:", executor, lines, stack_env["LAKEML_CLUSTER_DIR"])
        lines += proc.stdout.readlines()
    finally:
        rc = proc.wait(timeout=900)
    out = "".join(lines)
    assert rc == 0, out[-6000:]
    assert re.search(r"(Lost executor|Executor lost|Container .* exited|ExecutorLostFailure|Removing executor)", out, re.I), out[-4000:]
    assert _table_digest(table) == before


def test_the_application_master_killed_in_cluster_mode_is_retried(ran_pipeline, stack_env):
    """kill -9 of the application master (the driver) while the score job runs in YARN's
    cluster mode: YARN starts a second attempt (spark.yarn.maxAppAttempts 2), the job runs
    again from the start and leaves the same predictions: no half-written table."""
    before = _predictions()
    (day,) = _sql_row("SELECT max(score_date) FROM churn.predictions")  # a date already scored
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYSPARK_GATEWAY", "MLFLOW_"))}
    proc = subprocess.Popen(["./spark-submit.sh", "--env", "yarn", "--deploy-mode", "cluster", "jobs/score.py", "--date", str(day)],
                            cwd=str(Path(__file__).resolve().parents[1]), env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs = Path(stack_env["LAKEML_CLUSTER_DIR"]) / "yarn" / "nm-logs"
    deadline = time.time() + 300
    first = None
    while time.time() < deadline and proc.poll() is None:
        # the Python driver's log is in the container's stdout (Spark merges its stderr there)
        first = next((f for f in logs.glob("application_*/container_*_01_000001/stdout")
                      if "lakeml.core.session" in f.read_text(errors="replace")
                      and time.time() - f.stat().st_mtime < 60), None)
        if first:
            break
        time.sleep(0.5)
    assert first is not None, "the driver never started its Spark session"
    time.sleep(2)  # into loading the model and scoring
    app = first.parent.parent.name
    pids = [int(x) for x in subprocess.run(["pgrep", "-f", f"ApplicationMaster.*{app}|{first.parent.name}.*ApplicationMaster"],
                                           capture_output=True, text=True).stdout.split()]
    assert pids, f"no application master process of {app}"
    for pid in pids:
        os.kill(pid, 9)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-6000:]
    assert "---- attempt 2" in out and '"table": "churn.predictions"' in out, out[-3000:]
    assert _predictions() == before


def test_a_service_that_fails_to_start_shows_its_log(stack_env, tmp_path):
    # a PostgreSQL whose data folder is not one it can use: it exits at once, saying why
    data = tmp_path / "broken" / "postgres"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("9\n")  # prepare sees a data folder and does not initdb
    s = Stack(tmp_path / "broken", Ports(postgres=_free_port()))
    try:
        with pytest.raises(StackError, match=r"(?s)postgres exited while starting. "
                                             r"Last lines of .*postgres.log.*(could not access directory|FATAL)"):
            s.up(["postgres"])
    finally:
        s.down()


def test_a_wrong_password_is_named_before_mlflow_starts(stack_env, tmp_path):
    # MLflow itself would retry its store for 100 s before exiting; the stack says it at once
    s = Stack(tmp_path / "broken", Ports(mlflow=_free_port()))
    old = os.environ["LAKEML_PG_PASSWORD"]
    os.environ["LAKEML_PG_PASSWORD"] = "wrong-" + old
    t0 = time.time()
    try:
        with pytest.raises(StackError, match=rf"mlflow: its store, database mlflow of PostgreSQL at {HOST}:{PORTS.postgres}, "
                                             r"refuses the connection .*password authentication failed"):
            s.up(["mlflow"])
    finally:
        os.environ["LAKEML_PG_PASSWORD"] = old
        s.down()
    assert time.time() - t0 < 20
    assert not s.pid_file(s.get("mlflow")).exists()


def test_a_taken_port_is_named(stack_env, tmp_path):
    s = Stack(tmp_path / "second")
    with pytest.raises(StackError, match=rf"spark-master: port {HOST}:{PORTS.spark_master} "
                                         r"is already taken by a process this stack did not start"):
        s.up(["spark-master"])


def test_down_stops_everything_and_jobs_then_fail_fast(stack_env):
    stack = Stack()
    pids = [stack.pid(s) for s in stack.services]
    assert all(pids)
    run_cmd(["./scripts/cluster.sh", "down"])
    deadline = time.time() + 30
    while time.time() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.5)
    assert not [p for p in pids if _pid_alive(p)]
    ports = (PORTS.postgres, PORTS.namenode, PORTS.webhdfs, PORTS.datanode, PORTS.datanode_ui, PORTS.mlflow, PORTS.spark_master,
             PORTS.yarn_rm, PORTS.yarn_rm_ui, PORTS.yarn_nm, PORTS.yarn_nm_ui, PORTS.history_ui, PORTS.thrift)
    assert not [p for p in ports if port_open(p)]
    left = subprocess.run(["pgrep", "-f", str(stack.base)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes of the stack still running: {left}"
    st = run_cmd(["./scripts/cluster.sh", "status"], check=False)
    assert st.returncode == 3 and all(" down" in ln for ln in st.stdout.splitlines() if ln.split()[:1] and ln.split()[0] in SERVICES)
    t0 = time.time()
    job = run_cmd(["./spark-submit.sh", "--env", "cluster", "jobs/score.py"], check=False)
    assert job.returncode == 2 and time.time() - t0 < 30
    msg = job.stdout + job.stderr
    assert f"error: the Spark master at {HOST}:{PORTS.spark_master} does not answer" in msg and "./scripts/cluster.sh up" in msg, msg
    assert len(msg.strip().splitlines()) <= 3 and "Traceback" not in msg, msg  # the error, its log file: no JVM was started
    sql = run_cmd(["./scripts/sql.sh", "--env", "cluster", "-e", "SELECT 1"], check=False)
    assert sql.returncode == 2
    said = sql.stderr.splitlines()[-1]
    assert said.startswith(f"error: the SQL endpoint at {HOST}:{PORTS.thrift} does not answer") and "sql.endpoint in" in said


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def test_stack_dirs_are_under_the_cluster_dir(stack_env):
    base = Path(stack_env["LAKEML_CLUSTER_DIR"])
    assert ((base / "logs" / "hdfs-nn.log").is_file() and (base / "logs" / "hdfs-dn.log").is_file()
            and (base / "postgres" / "PG_VERSION").is_file())
    assert (base / "hdfs" / "dfs" / "data").is_dir() and (base / "hadoop-conf" / "hdfs-site.xml").is_file()
