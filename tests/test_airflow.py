"""Airflow runs the daily pipeline of every use case (orchestration/airflow): the Airflow
environment installs with `make airflow`, a DAG per use case imports with no error, and
`airflow dags test` runs the real scheduled pipeline on a data folder where the pipeline has
run, with the job's summary in the task log and its decision in the warehouse. A data or conf
problem (exit 2) fails the task at once, without a retry; another job holding the data folder
leaves the task up for retry.

Real Airflow (3.3, SQLite, no scheduler or webserver; its own Airflow home per test module)
and real spark-submit."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import pytest

from conftest import CONF, ROOT, run_cmd, usecases

pytestmark = pytest.mark.subprocess

AIRFLOW = str(ROOT / "orchestration" / "airflow" / "airflow.sh")
DAG_FILE = ROOT / "orchestration" / "airflow" / "dags" / "lakeml_daily.py"
DEFAULT = "churn"  # the env's default use case, the one pipeline_data_dir holds


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """An empty Airflow home, with the Airflow environment installed (`make airflow`)."""
    run_cmd(["make", "-s", "airflow"], timeout=1800)
    return tmp_path_factory.mktemp("airflow-home")


def airflow(home, *args: str, env_vars: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run_cmd([AIRFLOW, *args], {"LAKEML_AIRFLOW_HOME": str(home), **(env_vars or {})}, check=check)


def task_instances(home, dag_id: str, logical_date: str) -> tuple[list[tuple], list[tuple]]:
    """(state, try_number) of the DAG run's task instances, and of their earlier tries, from
    the Airflow home's SQLite database."""
    with sqlite3.connect(home / "airflow.db") as db:
        q = ("SELECT ti.task_id, ti.state, ti.try_number FROM {} ti JOIN dag_run r ON r.run_id = ti.run_id AND r.dag_id = ti.dag_id "
             "WHERE ti.dag_id = ? AND r.logical_date LIKE ?")
        return (db.execute(q.format("task_instance"), (dag_id, f"{logical_date}%")).fetchall(),
                db.execute(q.format("task_instance_history"), (dag_id, f"{logical_date}%")).fetchall())


def test_a_dag_per_use_case_imports_with_no_error(airflow_home):
    listed = json.loads(airflow(airflow_home, "dags", "list", "--local", "-o", "json").stdout.strip().splitlines()[-1])
    assert sorted(d["dag_id"] for d in listed) == [f"lakeml_{uc}_daily" for uc in usecases()]
    assert len(usecases()) >= 2
    errors = airflow(airflow_home, "dags", "list-import-errors", "--local", "-o", "json").stdout.strip().splitlines()[-1]
    assert json.loads(errors) == []


SHOW = """
import importlib.util, json, sys
from airflow.sdk import DAG
spec = importlib.util.spec_from_file_location("lakeml_daily", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
out = {}
for d in vars(m).values():
    if isinstance(d, DAG):
        t = d.get_task("pipeline")
        out[d.dag_id] = {"schedule": d.schedule, "catchup": d.catchup, "max_active_runs": d.max_active_runs,
                         "retries": t.retries, "retry_delay": t.retry_delay.total_seconds(),
                         "command": t.bash_command, "cwd": t.cwd, "skip": list(t.skip_on_exit_code)}
print(json.dumps(out))
"""


def test_the_dags_run_the_scheduled_pipeline_daily_one_at_a_time_with_retries(airflow_home):
    p = run_cmd([str(ROOT / ".venv-airflow" / "bin" / "python"), "-c", SHOW, str(DAG_FILE)], {"AIRFLOW_HOME": str(airflow_home)})
    dags = json.loads(p.stdout.strip().splitlines()[-1])
    ucs = usecases()
    assert ucs and all((ROOT / "conf" / uc / "usecase.yaml").is_file() for uc in ucs)
    shape = {name: (d["command"], d["cwd"], d["schedule"], d["catchup"], d["max_active_runs"], d["skip"],
                    d["retries"] >= 1, d["retry_delay"] >= 60) for name, d in dags.items()}
    assert shape == {
        f"lakeml_{uc}_daily": (f'./spark-submit.sh --usecase {uc} ${{LAKEML_ENV:+--env "$LAKEML_ENV"}} jobs/pipeline.py --scheduled',
                               str(ROOT), "@daily", False, 1, [], True, True)
        for uc in ucs}


def test_the_dag_code_names_no_business():
    """The DAGs come from conf/: no use case's name is written in orchestration/'s code."""
    words = {p.parent.name for p in CONF.glob("*/usecase.yaml")} | {"customer"}
    code = [p for p in (ROOT / "orchestration").rglob("*") if p.suffix in (".py", ".sh") and "__pycache__" not in p.parts]
    assert DAG_FILE in code
    hits = [f"{p.relative_to(ROOT)}: {w}" for p in code for w in sorted(words) if re.search(rf"\b{w}", p.read_text().lower())]
    assert hits == []


def _count(data_dir, table: str) -> int:
    p = run_cmd(["./scripts/sql.sh", "-e", f"SELECT count(*) FROM {table}"], {"LAKEML_DATA_DIR": str(data_dir), "LAKEML_ENV": "embedded"})
    return int(p.stdout.strip().splitlines()[-1])


def test_dags_test_runs_the_daily_pipeline(airflow_home, pipeline_data_dir):
    table = f"{DEFAULT}.model_decisions"  # every scheduled run records its retraining policy decision
    before = _count(pipeline_data_dir, table)
    p = airflow(airflow_home, "dags", "test", f"lakeml_{DEFAULT}_daily", "2026-07-20",
                env_vars={"LAKEML_DATA_DIR": str(pipeline_data_dir), "LAKEML_ENV": "embedded"})
    log = p.stdout + p.stderr  # `dags test` runs the task in-process: its log goes to the console
    assert f"./spark-submit.sh --usecase {DEFAULT} " in log and "Command exited with return code 0" in log
    assert f"== {DEFAULT}: what is in the warehouse now" in log and "retraining policy: " in log  # the job's summary
    after = int(re.search(rf"{re.escape(table)}\s+([\d,]+) rows", log).group(1).replace(",", ""))
    assert after > before
    assert task_instances(airflow_home, f"lakeml_{DEFAULT}_daily", "2026-07-20") == ([("pipeline", "success", 1)], [])


def test_a_data_or_conf_problem_fails_the_task_without_retry(airflow_home, tmp_path):
    p = airflow(airflow_home, "dags", "test", f"lakeml_{DEFAULT}_daily", "2026-07-21",
                env_vars={"LAKEML_DATA_DIR": str(tmp_path), "LAKEML_ENV": "no_such_env"}, check=False)
    log = p.stdout + p.stderr
    assert p.returncode == 1, log[-4000:]  # the DAG run failed
    assert "error: " in log and "unknown env 'no_such_env'" in log
    assert "AirflowFailException: the job stopped on a data or conf problem (exit 2), not retried" in log
    assert task_instances(airflow_home, f"lakeml_{DEFAULT}_daily", "2026-07-21") == ([("pipeline", "failed", 1)], [])


HOLD = """
import sys, time
sys.path.insert(0, {lib!r})
from lakeml.core import lock
lock.acquire({data!r}, command="jobs/pipeline.py --scheduled")
print("held", flush=True)
time.sleep(300)
"""


def test_another_job_on_the_data_folder_leaves_the_task_up_for_retry(airflow_home, tmp_path):
    hold = HOLD.format(lib=str(ROOT / "lib"), data=str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        p = airflow(airflow_home, "tasks", "test", f"lakeml_{DEFAULT}_daily", "pipeline", "2026-07-22",
                    env_vars={"LAKEML_DATA_DIR": str(tmp_path), "LAKEML_ENV": "embedded"})
    finally:
        holder.kill()
        holder.wait()
    log = p.stdout + p.stderr
    assert f"error: another job is running on {tmp_path}: pid {holder.pid} " in log
    assert "AirflowFailException" not in log and "new_state=up_for_retry" in log
