"""Training is all-or-nothing, proven with ``kill -9`` on a real ``jobs/train.py``: no
version, no alias moved, the run marked FAILED by the next training, which registers a whole
version. An orphan version (a crash inside the registry call, an older release) is tagged as
such and never chosen. A user-caused failure ends with one line and exit 2, in a short log."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import ROOT, edit_yaml, move_mlflow_paths, run_cmd
from lakeml.core import lock, tables, tracking
from lakeml.core.config import load_env, load_usecase
from lakeml.lifecycle import gate, promote
from lakeml.lifecycle.decisions import PromotionError
from lakeml.ml import train

MODEL = "churn_classifier"


def _copy_world(src: Path, dst: Path) -> Path:
    """A copy of a data folder whose MLflow store is its own (the paths in the store moved
    to the copy). The landing zone and the warehouse stay where they are: the copied
    metastore names the original's tables, which training only reads."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("landing", "warehouse", "reports", ".lakeml.lock", "db.lck", "dbex.lck"))
    move_mlflow_paths(src, dst)
    return dst


def _client(d: Path) -> MlflowClient:
    uri = f"sqlite:///{d}/mlflow/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _state(client: MlflowClient) -> tuple[dict, dict]:
    """({version: tags}, {alias: version}) of the model."""
    vs = {str(mv.version): dict(mv.tags) for mv in tracking.versions(client, MODEL)}
    return vs, {a: str(v) for a, v in client.get_registered_model(MODEL).aliases.items()}


def _runs(d: Path) -> dict[str, tuple[str, int]]:
    """run id -> (status, number of logged input tables), read straight from the store
    (read-only) while a job writes it."""
    with sqlite3.connect(f"file:{d}/mlflow/mlflow.db?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute("SELECT r.run_uuid, r.status, count(i.input_uuid) FROM runs r "
                          "LEFT JOIN inputs i ON i.destination_id = r.run_uuid GROUP BY r.run_uuid, r.status").fetchall()
    return {r: (s, n) for r, s, n in rows}


def _train_env(d: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYSPARK_GATEWAY_"))}
    return {**e, "LAKEML_DATA_DIR": str(d), "LAKEML_ENV": "embedded"}


@pytest.fixture()
def small_conf(conf_copy):
    """The churn conf with a model that fits in seconds (the data is the shared fixture's)."""
    def small(u):
        u["model"].update(classifier="logistic_regression", params={"maxIter": 10}, grid={}, auc_floor=0.5)
        u["model"]["tuning"]["parallelism"] = 1
        u["export"]["parity_rows"] = 1000
    edit_yaml(conf_copy / "churn" / "usecase.yaml", small)
    return conf_copy


@pytest.mark.subprocess
def test_train_killed_while_fitting_leaves_no_version_and_the_next_one_is_whole(pipeline_data_dir, tmp_path, small_conf):
    d = _copy_world(pipeline_data_dir, tmp_path / "data")
    client = _client(d)
    versions_before, aliases_before = _state(client)
    assert aliases_before == {"champion": "1", "challenger": "1"} and set(versions_before) == {"1"}
    runs_before = _runs(d)

    out = open(tmp_path / "killed.out", "w")
    p = subprocess.Popen(["./spark-submit.sh", "--conf-dir", str(small_conf), "jobs/train.py"], cwd=ROOT, env=_train_env(d),
                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    killed_run, t0 = None, time.monotonic()
    deadline = t0 + 240
    try:
        # kill -9 once the run is RUNNING with its input tables logged: the model is being fitted
        # (killing it later, while the model is logged, costs CI ~25 s more and takes the same path:
        # nothing is registered before the run has finished)
        while time.monotonic() < deadline and p.poll() is None:
            new = [r for r, (s, inputs) in _runs(d).items() if r not in runs_before and s == "RUNNING" and inputs >= 2]
            if new:
                killed_run = new[0]
                os.killpg(p.pid, signal.SIGKILL)
                print(f"killed after {time.monotonic() - t0:.1f} s")
                break
            time.sleep(0.1)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        out.close()
    log = (tmp_path / "killed.out").read_text()
    assert killed_run is not None, f"train ended (exit {p.returncode}) before it could be killed while fitting:\n{log[-3000:]}"
    pid = client.get_run(killed_run).data.tags[tracking.PID_TAG]
    for _ in range(50):  # the driver dies with its process group
        if not lock.pid_alive(int(pid)):
            break
        time.sleep(0.1)
    assert not lock.pid_alive(int(pid))

    # nothing registered, no alias moved; the run is left RUNNING by the kill
    assert _state(client) == (versions_before, aliases_before)
    assert client.get_run(killed_run).info.status == "RUNNING"

    # the next training marks it FAILED, registers a whole version, aliases it as a clean train does
    t0 = time.monotonic()
    p2 = run_cmd(["./spark-submit.sh", "--conf-dir", str(small_conf), "jobs/train.py"], {"LAKEML_DATA_DIR": str(d)}, timeout=300)
    print(f"second train: {time.monotonic() - t0:.1f} s")
    killed = client.get_run(killed_run)
    assert killed.info.status == "FAILED" and f"process {pid} " in killed.data.tags["lakeml.abandoned"]
    assert (f"MLflow run {killed_run} (train-logistic_regression) was left RUNNING by process {pid}, which has ended: marked FAILED"
            in p2.stdout + p2.stderr)
    versions_after, aliases_after = _state(client)
    assert set(versions_after) == {"1", "2"} and versions_after["1"] == versions_before["1"]
    assert set(tracking.TRAIN_TAGS) <= set(versions_after["2"]) and tracking.ORPHAN_TAG not in versions_after["2"]
    mv = client.get_model_version(MODEL, "2")
    assert client.get_run(mv.run_id).info.status == "FINISHED" and mv.run_id != killed_run
    assert tracking.orphan_reason(client, mv) is None
    assert aliases_after == {"champion": "1", "challenger": "2"}  # a second model: challenger; the champion stays


def test_an_orphan_version_is_tagged_at_train_start_and_never_chosen(tmp_path):
    """Versions a crash or an older release left (run not FINISHED, or without the tags of a
    complete training) are tagged; the gate and a forced promotion refuse them (a rollback
    checks the same ``tracking.usable``)."""
    d = tmp_path / "data"
    env = load_env(ROOT / "conf", "embedded")
    env = env.model_copy(update={"mlflow": env.mlflow.model_copy(update={
        "tracking_uri": f"sqlite:///{d}/mlflow/mlflow.db", "artifact_root": str(d / "artifacts")})})
    uc = load_usecase(ROOT / "conf", "churn")
    saved = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        client = tracking.configure(env)
        exp = tracking.experiment(env, "t_orphans")
        tags = {t: "x" for t in tracking.TRAIN_TAGS}

        def version(status: str, version_tags: dict, pid: int | None = None) -> str:
            run = client.create_run(exp, tags={tracking.HOST_TAG: socket.gethostname(), tracking.PID_TAG: str(pid)} if pid else {})
            if status != "RUNNING":
                client.set_terminated(run.info.run_id, status)
            return str(client.create_model_version(uc.model.name, f"{d}/m", run.info.run_id, tags=version_tags).version)

        client.create_registered_model(uc.model.name)
        whole = version("FINISHED", tags)
        failed = version("FAILED", tags)  # registered although its run failed (an older release)
        untagged = version("FINISHED", {})  # a crash between registering and tagging (an older release)
        old_running = version("RUNNING", {})  # an older release's run, never ended, no host/pid tags
        live = version("RUNNING", {}, pid=os.getpid())  # a run of a live process: perhaps being made

        assert sorted(tracking.tag_orphan_versions(client, uc.model.name), key=int) == [failed, untagged, old_running]
        assert tracking.tag_orphan_versions(client, uc.model.name) == []  # once
        tagged = {v: client.get_model_version(uc.model.name, v).tags for v in (failed, untagged, old_running)}
        assert {v: t.get(tracking.ORPHAN_TAG) for v, t in tagged.items()} == dict.fromkeys(tagged, "true")
        wanted = {failed: "is FAILED, not FINISHED",
                  untagged: "lacks the tags of a complete training: test_roc_auc, threshold, test_as_of, git_commit",
                  old_running: "is RUNNING, not FINISHED"}
        assert [v for v, why in wanted.items() if why not in tagged[v].get(tracking.ORPHAN_REASON_TAG, "")] == [], tagged
        assert tracking.ORPHAN_TAG not in client.get_model_version(uc.model.name, whole).tags
        assert tracking.ORPHAN_TAG not in client.get_model_version(uc.model.name, live).tags
        assert tracking.usable(client, uc.model.name, whole) is None
        assert [v for v in (failed, untagged, old_running, live) if tracking.usable(client, uc.model.name, v) is None] == []

        # nothing chooses one: a forced promotion, the gate (an alias left on an orphan)
        with pytest.raises(PromotionError, match=f"version {untagged} is an orphan"):
            promote.force(None, env, uc, untagged, "by hand")
        tracking.set_alias(client, uc.model.name, tracking.CHALLENGER, failed)
        with pytest.raises(PromotionError, match=f"the challenger cannot be validated: {uc.model.name} version {failed} is an orphan"):
            gate.validate(None, env, uc)
        assert client.get_registered_model(uc.model.name).aliases == {tracking.CHALLENGER: int(failed)}
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])


def test_no_labelled_snapshot_fails_before_a_run_starts(spark, env, uc):
    """Too few days of data: a TrainingError (one line, exit 2 from a job: test_cli) raised
    before any MLflow run, so nothing is left FAILED for a user's situation."""
    u = uc.model_copy(update={"database": "t_train_nolabel",
                              "model": uc.model.model_copy(update={"name": "t_nolabel_model", "experiment": "t_nolabel"})})
    tables.ensure_database(spark, u.database)
    d = date(2026, 1, 20)
    tables.overwrite(spark.createDataFrame([(f"C{i}", d) for i in range(5)], "customer_id string, as_of_date date"),
                     u.table(u.tables.features))
    tables.overwrite(spark.createDataFrame([(f"C{i}", d, None) for i in range(5)], "customer_id string, as_of_date date, churned_30d int"),
                     u.table(u.tables.labels))
    with pytest.raises(train.TrainingError, match="^No labelled snapshot yet: generate more days of data"):
        train.run(spark, env, u)
    client = tracking.configure(env)
    exp = client.get_experiment_by_name("t_nolabel")
    assert client.search_runs([exp.experiment_id]) == []


HOLD_DERBY = """
import fcntl, os, struct, sys, time, uuid
d = sys.argv[1]
# what a JVM that booted the database holds: a lock on dbex.lck (which Derby checks only
# when the file is not empty: it writes an int), its instance id in db.lck (Java's writeUTF)
f = open(os.path.join(d, "dbex.lck"), "wb")
f.write(bytes(4))
f.flush()
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 0, 0, os.SEEK_SET)
u = str(uuid.uuid4()).encode()
with open(os.path.join(d, "db.lck"), "wb") as lck:
    lck.write(struct.pack(">H", len(u)) + u)
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.subprocess
def test_a_metastore_held_by_another_process_is_one_line_in_a_short_log(pipeline_data_dir, tmp_path):
    """Another process (a notebook, a Spark shell) holds the embedded Derby metastore: Hive
    retries and DataNucleus logged ~20 000 lines of traces before a traceback. Now: a short
    log ending with one error line, exit 2."""
    d = tmp_path / "data"
    # a metastore that exists (the fixture's, copied): Derby boots it, or says who holds it
    shutil.copytree(pipeline_data_dir / "metastore_db", d / "metastore_db", ignore=shutil.ignore_patterns("*.lck"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_DERBY, str(d / "metastore_db")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # fewer Hive retries than its default ten, only to save CI time: each is quieted alike
        p = run_cmd(["./spark-submit.sh", "--conf", "spark.hadoop.hive.hmshandler.retry.attempts=2",
                     "--conf", "spark.hadoop.hive.hmshandler.retry.interval=0ms", "jobs/train.py"],
                    {"LAKEML_DATA_DIR": str(d)}, check=False, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    out = (p.stdout + p.stderr).splitlines()
    assert p.returncode == 2, "\n".join(out[-50:])
    assert len(out) < 30, f"{len(out)} lines:\n" + "\n".join(out[:60])
    assert "Traceback" not in p.stdout + p.stderr
    errors = [ln for ln in out if ln.startswith("error: ")]
    assert errors == [f"error: the metastore {d}/metastore_db is in use by another process (the embedded Derby metastore admits one "
                      "at a time: a notebook, a Spark shell or another Spark application on this data folder?): "
                      "end it, then run the job again"]
    # spark-submit's PythonRunner merges the driver's stderr into its stdout: the error line ends it
    assert p.stdout.strip().splitlines()[-1] == errors[0]
