"""The commands a user types: spark-submit.sh jobs and sql.sh on the same catalog."""

import pytest

from conftest import run_cmd

pytestmark = pytest.mark.subprocess


def test_sql_sh_reads_the_predictions(pipeline_data_dir):
    v = {"LAKEML_DATA_DIR": str(pipeline_data_dir)}
    p = run_cmd(["./scripts/sql.sh", "-e", "SELECT count(*), min(model_version) FROM churn.predictions"], v)
    count, version = p.stdout.strip().splitlines()[-1].split("\t")
    assert int(count) > 500 and version == "1"


def test_scoring_again_keeps_the_count(pipeline_data_dir):
    v = {"LAKEML_DATA_DIR": str(pipeline_data_dir)}
    q = "SELECT score_date, count(*) FROM churn.predictions GROUP BY score_date ORDER BY score_date"
    before = run_cmd(["./scripts/sql.sh", "-e", q], v).stdout.strip().splitlines()
    run_cmd(["./spark-submit.sh", "jobs/score.py"], v)
    after = run_cmd(["./scripts/sql.sh", "-e", q], v).stdout.strip().splitlines()
    assert before == after and before


def test_a_job_on_an_empty_warehouse_says_what_to_run(tmp_path):
    p = run_cmd(["./spark-submit.sh", "jobs/features.py"], {"LAKEML_DATA_DIR": str(tmp_path)}, check=False)
    assert p.returncode == 2
    # spark-submit's PythonRunner merges the driver's stderr into its stdout
    assert "error: Table churn.bronze_customers does not exist. Create it by running jobs/ingest.py" in p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr
