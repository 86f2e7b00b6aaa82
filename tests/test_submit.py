"""spark-submit.sh builds the command from the env; --dry-run shows it exactly."""

import shlex

import pytest

from conftest import ROOT, run_cmd
from lakeml import submit
from lakeml.config import UsageError


def _dry(*args):
    p = run_cmd(["./spark-submit.sh", "--dry-run", *args])
    return shlex.split(p.stdout.strip())


def test_dry_run_command_for_the_embedded_env():
    cmd = _dry("jobs/score.py", "--date", "2026-07-01")
    env_part = [c for c in cmd if "=" in c and c.split("=")[0].isupper()]
    assert any(c.startswith("PYSPARK_PYTHON=") for c in env_part)
    argv = cmd[len(env_part) :]
    assert argv[0].endswith("/bin/spark-submit")
    assert argv[argv.index("--master") + 1] == "local[*]"
    jars = argv[argv.index("--jars") + 1].split(",")
    assert any("delta-spark_4.1_2.13" in j for j in jars) and any("delta-storage" in j for j in jars)
    assert argv[argv.index("--py-files") + 1] == str(ROOT / "dist" / "lakeml.zip")
    confs = [argv[i + 1] for i, a in enumerate(argv) if a == "--conf"]
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in confs
    assert "spark.sql.shuffle.partitions=4" in confs
    assert any(c.startswith("spark.pyspark.python=") for c in confs)
    job = argv.index(str(ROOT / "jobs" / "score.py"))
    assert argv[job + 1 :] == ["--env", "embedded", "--conf-dir", str(ROOT / "conf"), "--date", "2026-07-01"]


def test_user_spark_options_come_after_the_envs_and_win():
    cmd = _dry("--master", "local[1]", "--conf", "spark.sql.shuffle.partitions=8", "jobs/ingest.py")
    masters = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--master"]
    assert masters == ["local[*]", "local[1]"]  # spark-submit takes the last
    confs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf" and "shuffle.partitions" in cmd[i + 1]]
    assert confs[-1] == "spark.sql.shuffle.partitions=8"
    assert cmd.index("local[1]") < cmd.index(str(ROOT / "jobs" / "ingest.py"))


def test_unknown_env_fails_fast_with_the_known_ones():
    p = run_cmd(["./spark-submit.sh", "--env", "nope", "jobs/ingest.py"], check=False)
    assert p.returncode == 2
    assert "unknown env 'nope'" in p.stderr and "embedded" in p.stderr


def test_no_job_and_unknown_job():
    with pytest.raises(UsageError, match="no job given"):
        submit.split_args(["--env", "embedded"])
    p = run_cmd(["./spark-submit.sh", "jobs/nothing.py"], check=False)
    assert p.returncode == 2 and "no such job: jobs/nothing.py" in p.stderr


def test_lib_zip_holds_the_package(tmp_path):
    import zipfile

    z = submit.build_lib_zip(tmp_path / "lakeml.zip")
    names = zipfile.ZipFile(z).namelist()
    assert "lakeml/__init__.py" in names and "lakeml/ingest.py" in names
