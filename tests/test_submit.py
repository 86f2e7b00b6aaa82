"""spark-submit.sh builds the command from the env; what goes before the job and what after
is checked before any JVM starts; --dry-run shows the command exactly."""

import os
import shlex
import socket
import zipfile
from pathlib import Path

import pytest

from conftest import CONF, ROOT, edit_yaml, run_cmd
from lakeml.core import session
from lakeml.core.config import load_env
from lakeml.core.errors import UsageError
from lakeml.core.session import jar_paths
from lakeml.ops import dist, preflight, submit

subprocess = pytest.mark.subprocess  # starts the scripts as a user would


def _dry(*args, env_vars=None):
    p = run_cmd(["./spark-submit.sh", "--dry-run", *args], env_vars)
    return shlex.split(p.stdout.strip())


def _confs(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--conf"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # free once closed: nothing listens there


@subprocess
def test_dry_run_prints_the_exact_command(tmp_path, monkeypatch):
    """The whole embedded command, flag by flag, from the env file's own settings."""
    data = tmp_path / "data"
    monkeypatch.setenv("LAKEML_DATA_DIR", str(data))
    env = load_env(CONF, "embedded")
    py = os.environ["PYSPARK_PYTHON"]
    confs = env.spark_conf()
    confs.setdefault("spark.pyspark.python", py)
    # the driver's class-data-sharing archive, when this checkout has one (make cds)
    cds = session.cds_opts(ROOT)
    confs.setdefault("spark.driver.extraJavaOptions",
                     f"-Dlog4j.configurationFile=file:{CONF / 'log4j2.properties'} -Dderby.stream.error.file={data}/derby.log"
                     + (f" {cds}" if cds else ""))
    expected = [
        f"PYSPARK_PYTHON={py}",
        "SPARK_LOCAL_IP=127.0.0.1",
        submit.spark_bin("spark-submit"),
        "--master", "local[*]",
        "--jars", ",".join(jar_paths(ROOT)),
        *[x for kv in confs.items() for x in ("--conf", "=".join(kv))],
        "--name", "lakeml-score",
        "--py-files", str(ROOT / "dist" / "lakeml.zip"),
        "--driver-memory", "1g",
        str(ROOT / "jobs" / "score.py"),
        "--env", "embedded", "--conf-dir", str(CONF), "--usecase", "churn",
        "--date", "2026-07-01",
    ]  # fmt: skip
    cmd = _dry("--usecase", "churn", "--driver-memory", "1g", "jobs/score.py", "--date", "2026-07-01",
               env_vars={"LAKEML_DATA_DIR": str(data)})
    assert cmd == expected
    assert "spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" in _confs(cmd)
    assert any("delta-spark_4.1_2.13" in j for j in cmd[cmd.index("--jars") + 1].split(","))


@subprocess
def test_user_spark_options_come_after_the_envs_and_win():
    cmd = _dry("--master", "local[1]", "--conf", "spark.sql.shuffle.partitions=8", "jobs/ingest.py")
    masters = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--master"]
    assert masters == ["local[*]", "local[1]"]  # spark-submit takes the last
    shuffle = [c for c in _confs(cmd) if "shuffle.partitions" in c]
    assert shuffle == ["spark.sql.shuffle.partitions=4", "spark.sql.shuffle.partitions=8"]
    assert cmd.index("local[1]") < cmd.index(str(ROOT / "jobs" / "ingest.py"))


# what goes before the job and what after ------------------------------------------------


@subprocess
def test_a_job_option_before_the_job_fails_with_the_corrected_command():
    p = run_cmd(["./spark-submit.sh", "--usecase", "churn", "--as-of", "2026-07-01", "--master", "local[2]", "jobs/features.py", "--all"],
                check=False)
    assert p.returncode == 2 and p.stdout == ""
    log, error = p.stderr.splitlines()
    assert error == (
        "error: --as-of is not a spark-submit option; a job's own options go after the job: "
        "./spark-submit.sh --usecase churn --master 'local[2]' jobs/features.py --as-of 2026-07-01 --all"
    )
    # the trace is in the log file the first line names
    assert log.startswith("log file: ") and "lakeml.core.errors.UsageError: --as-of" in Path(log.removeprefix("log file: ")).read_text()


def test_the_same_without_a_job_and_with_a_misspelt_spark_option():
    with pytest.raises(UsageError) as e:
        submit.split_args(["--as-of", "2026-07-01"])
    assert str(e.value) == (
        "--as-of is not a spark-submit option, and no job is given; a job's own options go after the job: "
        "./spark-submit.sh [spark options] jobs/<job>.py --as-of 2026-07-01 ..."
    )
    with pytest.raises(UsageError) as e:
        submit.split_args(["--driver-mem", "4g", "--exectuor-cores", "2", "jobs/score.py"])
    assert str(e.value) == (
        "--driver-mem, --exectuor-cores are not spark-submit options (did you mean --driver-memory for --driver-mem, "
        "--executor-cores for --exectuor-cores?); a job's own options go after the job: "
        "./spark-submit.sh jobs/score.py --driver-mem 4g --exectuor-cores 2"
    )


def test_spark_submit_options_are_parsed_by_table_not_by_name_ending():
    a = submit.split_args(["--py-files", "extra.py", "--conf=spark.x=1", "-c", "spark.y=2", "--verbose", "--files", "a.py",
                           "jobs/score.py", "--date", "d"])
    assert a.job == "jobs/score.py" and a.job_args == ["--date", "d"]
    assert a.spark_opts == ["--py-files", "extra.py", "--conf=spark.x=1", "-c", "spark.y=2", "--verbose", "--files", "a.py"]
    # the job path is the first argument that is not an option or an option's value
    assert submit.split_args(["--name", "x", "jobs/train"]).job == "jobs/train"


def test_py_files_ending_in_py_is_not_the_job(monkeypatch):
    monkeypatch.chdir(ROOT)
    cmd = submit.job_command(["--dry-run", "--py-files", "extra.py", "jobs/score.py"]).cmd
    assert cmd[cmd.index("--py-files") + 1] == f"{ROOT / 'dist' / 'lakeml.zip'},extra.py"
    assert cmd[-5:] == [str(ROOT / "jobs" / "score.py"), "--env", "embedded", "--conf-dir", str(CONF)]


@subprocess
def test_usecase_and_conf_dir_before_the_job_are_handed_to_the_job(conf_copy):
    edit_yaml(conf_copy / "envs" / "embedded.yaml", lambda d: d["spark"]["conf"].update({"spark.sql.shuffle.partitions": 3}))
    cmd = _dry("--conf-dir", str(conf_copy), "--usecase", "churn", "jobs/score.py", "--date", "2026-07-01")
    job = cmd.index(str(ROOT / "jobs" / "score.py"))
    assert cmd[job + 1 :] == ["--env", "embedded", "--conf-dir", str(conf_copy), "--usecase", "churn", "--date", "2026-07-01"]
    assert "spark.sql.shuffle.partitions=3" in _confs(cmd)  # the wrapper read the env from that conf too
    a = submit.split_args(["--env=cluster", "--usecase=churn", "--conf-dir=/x", "--dry-run", "jobs/score.py"])
    assert (a.env, a.usecase, a.conf_dir, a.dry_run, a.spark_opts) == ("cluster", "churn", "/x", True, [])


@subprocess
def test_an_unknown_usecase_before_the_job_stops_before_any_jvm():
    p = run_cmd(["./spark-submit.sh", "--usecase", "nope", "jobs/landing.py", "list"], check=False)
    assert p.returncode == 2
    assert p.stderr.splitlines()[-1].startswith(f"error: {CONF}/nope/usecase.yaml: unknown use case 'nope'; known use cases: ")
    assert "churn" in p.stderr.splitlines()[-1] and p.stderr.startswith("log file: ")


@subprocess
def test_env_after_the_job_says_where_it_goes():
    p = run_cmd(["./spark-submit.sh", "jobs/score.py", "--date", "2026-07-01", "--env", "cluster"], check=False)
    assert p.returncode == 2
    assert p.stderr.splitlines()[1] == (
        "error: --env goes before the job (spark-submit.sh builds the Spark command from it): "
        "./spark-submit.sh --env cluster jobs/score.py --date 2026-07-01"
    )
    assert len(p.stderr.splitlines()) == 2 and p.stderr.splitlines()[0].startswith("log file: ")
    with pytest.raises(UsageError, match=r"^--conf-dir goes before the job .*: \./spark-submit\.sh --dry-run --conf-dir=/c jobs/x\.py$"):
        submit.split_args(["--dry-run", "jobs/x.py", "--conf-dir=/c"])


@subprocess
def test_help_says_what_goes_where():
    p = run_cmd(["./spark-submit.sh", "--help"])
    assert p.stdout.startswith(submit.USAGE + "\n") and "After the job: the job's own options" in p.stdout
    with pytest.raises(UsageError, match="--master needs a value"):
        submit.split_args(["--master"])


@subprocess
def test_unknown_env_no_job_and_unknown_job():
    p = run_cmd(["./spark-submit.sh", "--env", "nope", "jobs/ingest.py"], check=False)
    assert p.returncode == 2
    assert "unknown env 'nope'" in p.stderr and "embedded" in p.stderr
    with pytest.raises(UsageError, match="no job given"):
        submit.split_args(["--env", "embedded"])
    p = run_cmd(["./spark-submit.sh", "jobs/nothing.py"], check=False)
    assert p.returncode == 2 and "no such job: jobs/nothing.py" in p.stderr


# preflight, scripts ------------------------------------------------------------------------


@subprocess
def test_sql_preflight_checks_the_sql_endpoint_and_jobs_the_rest(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("LAKEML_THRIFT_PORT", str(port))
    monkeypatch.setenv("LAKEML_SPARK_MASTER_PORT", str(port))
    env = load_env(CONF, "cluster")
    with pytest.raises(preflight.ServiceDown) as e:
        preflight.check(env, sql=True)
    assert str(e.value).startswith(f"the SQL endpoint at 127.0.0.1:{port} does not answer (")
    assert f"it comes from sql.endpoint in {CONF / 'envs' / 'cluster.yaml'}. Start the stack with ./scripts/cluster.sh up" in str(e.value)
    with pytest.raises(preflight.ServiceDown, match=rf"^the Spark master at 127.0.0.1:{port} does not answer"):
        preflight.check(env)
    p = run_cmd(["./scripts/sql.sh", "--env", "cluster", "-e", "SELECT 1"], {"LAKEML_THRIFT_PORT": str(port)}, check=False)
    assert p.returncode == 2 and p.stderr.splitlines()[-1].startswith(f"error: the SQL endpoint at 127.0.0.1:{port} does not answer")


@subprocess
@pytest.mark.parametrize("script", [["./spark-submit.sh", "jobs/score.py"], ["./scripts/sql.sh", "-e", "SELECT 1"],
                                    ["./scripts/cluster.sh", "status"]])
def test_every_script_says_to_run_setup_without_a_python(script):
    p = run_cmd(script, {"LAKEML_PYTHON": "/nonexistent/bin/python"}, check=False)
    assert p.returncode == 2
    assert p.stderr == "error: no Python environment at /nonexistent/bin/python; run 'make setup' first\n"


@subprocess
def test_one_jar_resolver_for_every_set():
    p = run_cmd(["scripts/resolve_jars.sh"], check=False)
    assert p.returncode == 2 and p.stderr == "usage: scripts/resolve_jars.sh delta|hdfs|yarn\n"
    sets = {"delta": ROOT / ".cache/jars/delta-spark_4.1_2.13-4.4.0.jar", "hdfs": ROOT / ".cache/hdfs/hadoop-hdfs-3.4.2.jar",
            "yarn": ROOT / ".cache/yarn/hadoop-yarn-server-resourcemanager-3.4.2.jar"}
    first = {s: run_cmd(["scripts/resolve_jars.sh", s], timeout=900).returncode for s in sets}
    again = {s: run_cmd(["scripts/resolve_jars.sh", s]) for s in sets}
    assert first == {"delta": 0, "hdfs": 0, "yarn": 0}
    assert ({s: (p.stdout, p.stderr) for s, p in again.items()}
            == {"delta": ("", ""), "hdfs": ("", ""), "yarn": ("", "")})  # stamped: not resolved again
    assert {s: jar.is_file() for s, jar in sets.items()} == {"delta": True, "hdfs": True, "yarn": True}
    # delta leaves out what pyspark ships (Spark's own Hadoop), hdfs and yarn keep everything
    assert not list((ROOT / ".cache/jars").glob("hadoop-client-api-*.jar"))
    assert [len(list((ROOT / d).glob("guava-*.jar"))) for d in (".cache/jars", ".cache/hdfs", ".cache/yarn")] == [0, 1, 1]


def test_lib_zip_holds_the_package(tmp_path):
    z = dist.build_lib_zip(tmp_path / "lakeml.zip")
    names = zipfile.ZipFile(z).namelist()
    assert {"lakeml/__init__.py", "lakeml/lake/ingest.py", "lakeml/ops/submit.py"} <= set(names)


def test_an_unchanged_lib_zip_is_not_rewritten_and_a_changed_one_is_swapped_whole(tmp_path):
    """A running job (a streaming query) reads its modules from the zip by path: a second
    job's spark-submit must not rewrite it under it when nothing changed, and a change lands
    by rename (the first job keeps the file it opened)."""
    dest = tmp_path / "conf.zip"
    src = tmp_path / "conf"
    src.mkdir()
    (src / "a.yaml").write_text("a: 1\n")
    first = dist.build_conf_zip(dest, src)
    inode, mtime = first.stat().st_ino, first.stat().st_mtime_ns
    with open(first, "rb") as held:
        assert dist.build_conf_zip(dest, src).stat().st_ino == inode and dest.stat().st_mtime_ns == mtime
        (src / "a.yaml").write_text("a: 2\n")
        assert dist.build_conf_zip(dest, src).stat().st_ino != inode
        old = zipfile.ZipFile(held).read("a.yaml")
    assert (old, zipfile.ZipFile(dest).read("a.yaml")) == (b"a: 1\n", b"a: 2\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conf", "conf.zip"]
