"""One job per data folder at a time: a second job fails at once naming the first, or waits
with --wait; a killed job leaves no lock behind, and an MLflow run it left RUNNING is marked
FAILED by the next start."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cmd
from lakeml.core import lock

HOLD = """
import sys, time
sys.path.insert(0, {lib!r})
from lakeml.core import lock
lock.acquire({data!r}, command="jobs/pipeline.py --scheduled")
print("held", flush=True)
time.sleep(float(sys.argv[1]))
"""


def _holder(data: Path | str, seconds: float) -> subprocess.Popen:
    """Another process that takes the data folder's lock and keeps it ``seconds``."""
    p = subprocess.Popen([sys.executable, "-c", HOLD.format(lib=str(ROOT / "lib"), data=str(data)), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_job_fails_at_once_naming_the_first(tmp_path):
    h = _holder(tmp_path, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(lock.JobLocked) as e:
            lock.acquire(str(tmp_path))
        assert time.monotonic() - t0 < 5
        msg = str(e.value)
        assert f"another job is running on {tmp_path}: pid {h.pid} " in msg and "jobs/pipeline.py --scheduled" in msg and "--wait" in msg
        assert "\n" not in msg
    finally:
        h.kill()
        h.wait()


def test_with_wait_the_second_job_runs_when_the_first_ends(tmp_path):
    h = _holder(tmp_path, 3)
    try:
        t0 = time.monotonic()
        lock.acquire(str(tmp_path), wait=True, command="jobs/score.py --wait")
        assert h.wait(timeout=5) == 0 and time.monotonic() - t0 > 2  # it got the lock once the holder had ended
        assert lock.holder(lock.lock_path(str(tmp_path)))["command"] == "jobs/score.py --wait"
    finally:
        lock.release(str(tmp_path))
        h.wait()


def test_a_killed_job_leaves_no_lock(tmp_path):
    h = _holder(tmp_path, 60)
    h.send_signal(signal.SIGKILL)
    h.wait()
    stale = lock.holder(lock.lock_path(str(tmp_path)))
    assert stale["pid"] == h.pid  # its description is still in the file ...
    try:
        lock.acquire(str(tmp_path), command="next")  # ... but the lock went with the process
        assert json.loads(lock.lock_path(str(tmp_path)).read_text())["command"] == "next"
    finally:
        lock.release(str(tmp_path))


@pytest.mark.subprocess
def test_a_job_submitted_while_another_runs_ends_in_one_line(tmp_path):
    h = _holder(tmp_path, 120)
    try:
        p = run_cmd(["./spark-submit.sh", "jobs/ingest.py"], {"LAKEML_DATA_DIR": str(tmp_path)}, check=False)
        out = p.stdout + p.stderr
        assert p.returncode == 2, out[-3000:]
        assert [ln for ln in out.splitlines() if ln.startswith("error: ")] == [
            ln for ln in out.splitlines() if ln.startswith(f"error: another job is running on {tmp_path}: pid {h.pid} ")
        ] != []
        assert "Traceback" not in out and not list(tmp_path.glob("**/_delta_log"))
        # the console: the log file's path, the error, and nothing of the JVM's (the lock is taken first)
        said = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("WARNING: Using incubator modules")]
        assert len(said) == 2 and said[0].startswith(f"log file: {tmp_path}/logs/ingest-"), said
    finally:
        h.kill()
        h.wait()


KILLED_RUN = """
import sys, time
sys.path.insert(0, {lib!r})
from lakeml.core import tracking
tracking.mlflow.set_tracking_uri({uri!r})
with tracking.start_run({exp!r}, "train-killed"):
    print(tracking.mlflow.active_run().info.run_id, flush=True)
    time.sleep(60)
"""


def test_a_run_left_running_by_a_killed_process_is_marked_failed(tmp_path):
    """kill -9 during an MLflow run (what a training killed mid-way leaves): the next start
    marks it FAILED, and leaves alone the runs of a process that still lives."""
    from mlflow import MlflowClient

    from lakeml.core import tracking

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("t_abandoned", artifact_location=(tmp_path / "art").as_uri())
    p = subprocess.Popen([sys.executable, "-c", KILLED_RUN.format(lib=str(ROOT / "lib"), uri=uri, exp=exp)],
                         stdout=subprocess.PIPE, text=True)
    killed = p.stdout.readline().strip()
    live = subprocess.Popen([sys.executable, "-c", KILLED_RUN.format(lib=str(ROOT / "lib"), uri=uri, exp=exp)],
                            stdout=subprocess.PIPE, text=True)
    running = live.stdout.readline().strip()
    try:
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert client.get_run(killed).info.status == "RUNNING"
        assert tracking.fail_abandoned_runs(client, exp) == [killed]
        assert (client.get_run(killed).info.status == "FAILED"
                and "ended without finishing" in client.get_run(killed).data.tags["lakeml.abandoned"])
        assert client.get_run(running).info.status == "RUNNING"
    finally:
        live.kill()
        live.wait()


def test_envs_that_share_the_tables_share_the_lock(monkeypatch):
    """The cluster and yarn envs write the same tables (one warehouse on HDFS, one metastore)
    from different data folders: a job on one excludes a job on the other; the embedded env
    locks its data folder, which holds its Derby metastore."""
    from lakeml.core.config import load_env

    monkeypatch.delenv("LAKEML_DATA_DIR", raising=False)  # the env files' own data folders (the suite sets one for all)
    cluster, yarn, embedded = (load_env(ROOT / "conf", name) for name in ("cluster", "yarn", "embedded"))
    assert cluster.data_dir != yarn.data_dir
    assert cluster.job_lock_key == yarn.job_lock_key == cluster.warehouse_dir
    assert cluster.job_lock_key.startswith("hdfs://")
    assert embedded.job_lock_key == embedded.data_dir
    h = _holder(cluster.job_lock_key, 30)
    try:
        with pytest.raises(lock.JobLocked, match="another job is running on hdfs://"):
            lock.acquire(yarn.job_lock_key)
    finally:
        h.kill()
        h.wait()
