"""The commands a user types: spark-submit.sh jobs and sql.sh on the same catalog, and how a
job ends: a user's mistake in one line with exit code 2, a bug with its traceback."""

import argparse
import logging

import pytest

from conftest import run_cmd
from lakeml import cli
from lakeml.core.errors import ConfigError
from lakeml.ml.train import TrainingError


@pytest.mark.subprocess
def test_sql_sh_reads_the_predictions(pipeline_data_dir):
    v = {"LAKEML_DATA_DIR": str(pipeline_data_dir)}
    p = run_cmd(["./scripts/sql.sh", "-e", "SELECT count(*), min(model_version) FROM churn.predictions"], v)
    count, version = p.stdout.strip().splitlines()[-1].split("\t")
    assert int(count) > 500 and version == "1"


@pytest.mark.subprocess
def test_scoring_again_keeps_the_count(pipeline_data_dir):
    v = {"LAKEML_DATA_DIR": str(pipeline_data_dir)}
    q = "SELECT score_date, count(*) FROM churn.predictions GROUP BY score_date ORDER BY score_date"
    before = run_cmd(["./scripts/sql.sh", "-e", q], v).stdout.strip().splitlines()
    run_cmd(["./spark-submit.sh", "jobs/score.py"], v)
    after = run_cmd(["./scripts/sql.sh", "-e", q], v).stdout.strip().splitlines()
    assert before == after and before


@pytest.mark.subprocess
def test_a_batch_folder_dated_years_ahead_waits_in_landing(pipeline_data_dir):
    """The fixture landed a copy of the newest batch under 2062 beside the real ones: the
    pipeline names it, leaves it where it is, and nothing of its date reaches a table."""
    zone = pipeline_data_dir / "landing" / "churn"
    typo = next(p for p in zone.iterdir() if p.name.startswith("2062-"))
    real = typo.with_name("2026" + typo.name[4:])
    assert sorted(f.relative_to(typo) for f in typo.rglob("*")) == sorted(f.relative_to(real) for f in real.rglob("*"))
    out = (pipeline_data_dir / "pipeline.out").read_text()
    assert f"batch folder refused: {typo}: dated " in out
    q = " UNION ALL ".join(f"SELECT '{t}', CAST(max({c}) AS STRING) FROM churn.{t}" for t, c in (
        ("bronze_customers", "_batch_date"), ("silver_usage_events", "_batch_date"), ("ingest_log", "batch_date"),
        ("customer_features", "as_of_date"), ("labels", "as_of_date"), ("predictions", "score_date")))
    p = run_cmd(["./scripts/sql.sh", "-e", q], {"LAKEML_DATA_DIR": str(pipeline_data_dir)})
    newest = dict(ln.split("\t") for ln in p.stdout.strip().splitlines())
    assert len(newest) == 6 and max(newest.values()) == real.name, newest


@pytest.mark.subprocess
def test_a_job_on_an_empty_warehouse_says_what_to_run(tmp_path):
    p = run_cmd(["./spark-submit.sh", "jobs/features.py"], {"LAKEML_DATA_DIR": str(tmp_path)}, check=False)
    assert p.returncode == 2
    # spark-submit's PythonRunner merges the driver's stderr into its stdout
    assert "error: Table churn.ingest_log does not exist. Create it by running jobs/ingest.py" in p.stdout + p.stderr
    assert "Traceback" not in p.stdout + p.stderr


@pytest.mark.subprocess
def test_a_sql_syntax_error_stops_the_pipeline_before_it_reads_anything(tmp_path, conf_copy):
    usage = conf_copy / "churn" / "sql" / "features" / "usage.sql"
    usage.write_text(usage.read_text().replace("SELECT", "SELEC", 1))
    data = tmp_path / "data"
    p = run_cmd(["./spark-submit.sh", "--conf-dir", str(conf_copy), "jobs/pipeline.py"], {"LAKEML_DATA_DIR": str(data)},
                check=False, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 2, out[-3000:]
    errors = [ln for ln in out.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {conf_copy}/churn/sql/features/usage.sql: "), errors
    assert "Traceback" not in out
    # nothing was generated, ingested or written
    assert not (data / "landing").exists() and not list(data.glob("**/_delta_log"))


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**kw)


@pytest.fixture
def job_log(tmp_path, monkeypatch):
    """cli.main in this process: its log file in tmp_path, the root logger as it was after."""
    path = tmp_path / "job.log"
    monkeypatch.setenv("LAKEML_LOG_FILE", str(path))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield path
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:], root.level = handlers, level


def test_a_user_error_is_one_line_its_trace_in_the_log_file_and_exit_2(capsys, job_log):
    def run(args):
        raise TrainingError("No labelled snapshot yet: generate more days of data (the label window must close).")

    with pytest.raises(SystemExit) as e:
        cli.main(run, _args())
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"log file: {job_log}\n"
                                       "error: No labelled snapshot yet: generate more days of data (the label window must close).\n")
    text = job_log.read_text()
    assert "Traceback (most recent call last)" in text and 'raise TrainingError("No labelled snapshot yet' in text


def test_every_user_error_kind_is_caught_by_the_one_base(capsys, job_log):
    with pytest.raises(SystemExit) as e:
        cli.main(lambda a: (_ for _ in ()).throw(ConfigError("conf/x.yaml: model.name: missing")), _args())
    assert e.value.code == 2 and capsys.readouterr().err.splitlines() == [f"log file: {job_log}",
                                                                          "error: conf/x.yaml: model.name: missing"]


def test_a_bug_keeps_its_traceback(job_log):
    def run(args):
        return {}["missing key"]  # a programming error, not the user's

    with pytest.raises(KeyError, match="missing key"):
        cli.main(run, _args())
    assert "KeyError: 'missing key'" in job_log.read_text()


def test_a_warning_with_a_trace_is_one_line_on_the_console(capsys, job_log):
    cli.setup_logging("t")
    try:
        raise ValueError("deep inside")
    except ValueError:
        logging.getLogger("lakeml.x").warning("could not do it", exc_info=True)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith("WARNING lakeml.x: could not do it")
    assert "ValueError: deep inside" in job_log.read_text()
