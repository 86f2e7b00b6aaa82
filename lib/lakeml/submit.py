"""Build the spark-submit (and spark-sql) command for a job and an env.

``./spark-submit.sh`` and ``./scripts/sql.sh`` are thin shells around this module, so
the one place that turns an env file into Spark flags is here, and ``--dry-run`` prints
exactly what would run.

    spark-submit.sh [--env NAME] [--dry-run] [spark-submit options ...] jobs/<job>.py [job args ...]

Spark options given on the command line come after the env's, so they win
(``--master``, ``--conf k=v``, ``--driver-memory`` ...).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

from lakeml.config import ConfigError, EnvConfig, UsageError, load_env
from lakeml.session import jar_paths

PROJECT_ROOT = Path(__file__).resolve().parents[2]
USAGE = "usage: spark-submit.sh [--env NAME] [--dry-run] [spark-submit options ...] jobs/<job>.py [job args ...]"


def spark_bin(name: str) -> str:
    """spark-submit / spark-sql of SPARK_HOME if set (a real cluster install), else of
    the venv's pyspark."""
    if os.environ.get("SPARK_HOME"):
        return str(Path(os.environ["SPARK_HOME"]) / "bin" / name)
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / name)


def build_lib_zip(dest: Path) -> Path:
    """lib/ as a zip for --py-files (what executors import)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = PROJECT_ROOT / "lib"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*.py")):
            z.write(p, p.relative_to(src))
    return dest


def build_conf_zip(dest: Path, conf_dir: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(conf_dir.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(conf_dir))
    return dest


def _java_opts(env: EnvConfig) -> str:
    log4j = PROJECT_ROOT / "conf" / "log4j2.properties"
    opts = [f"-Dlog4j.configurationFile=file:{log4j}"]
    if env.is_local_fs:
        opts.append(f"-Dderby.stream.error.file={env.data_dir}/derby.log")
    return " ".join(opts)


def common_flags(env: EnvConfig) -> list[str]:
    """--master, --jars and every --conf the env implies."""
    flags = ["--master", env.spark.master]
    if env.spark.deploy_mode == "cluster":
        flags += ["--deploy-mode", "cluster"]
    flags += ["--jars", ",".join(jar_paths(PROJECT_ROOT))]
    conf = env.spark_conf()
    conf.setdefault("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable))
    conf.setdefault("spark.driver.extraJavaOptions", _java_opts(env))
    for k, v in conf.items():
        flags += ["--conf", f"{k}={v}"]
    return flags + list(env.spark.submit_args)


def split_args(argv: list[str]) -> tuple[str, bool, list[str], str, list[str]]:
    """(env, dry_run, spark options, job path, job args) from spark-submit.sh's argv."""
    env_name = os.environ.get("LAKEML_ENV", "embedded")
    dry = False
    spark_opts: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--env":
            if i + 1 >= len(argv):
                raise UsageError("--env needs a name\n" + USAGE)
            env_name = argv[i + 1]
            i += 2
        elif a.startswith("--env="):
            env_name = a.split("=", 1)[1]
            i += 1
        elif a == "--dry-run":
            dry = True
            i += 1
        elif a.endswith(".py"):
            return env_name, dry, spark_opts, a, argv[i + 1 :]
        elif a in ("-h", "--help"):
            raise UsageError(USAGE)
        else:
            spark_opts.append(a)
            i += 1
    raise UsageError("no job given\n" + USAGE)


def job_command(argv: list[str], conf_dir: Path | None = None, build: bool = True) -> tuple[list[str], dict[str, str], bool]:
    """(command, extra environment, dry_run) for spark-submit.sh's arguments."""
    env_name, dry, spark_opts, job, job_args = split_args(argv)
    conf_dir = (conf_dir or PROJECT_ROOT / "conf").resolve()
    env = load_env(conf_dir, env_name)
    job_path = Path(job)
    if not job_path.is_absolute():
        job_path = (Path.cwd() / job_path) if (Path.cwd() / job_path).is_file() else PROJECT_ROOT / job_path
    if not job_path.is_file():
        raise UsageError(f"no such job: {job}\n" + USAGE)
    dist = PROJECT_ROOT / "dist"
    lib_zip = dist / "lakeml.zip"
    if build and not dry:
        build_lib_zip(lib_zip)
    cmd = [spark_bin("spark-submit"), *common_flags(env), "--name", f"lakeml-{job_path.stem}", "--py-files", str(lib_zip)]
    if env.spark.deploy_mode == "cluster":
        # the driver runs on the cluster: ship conf/ and name it relative to the container
        conf_zip = dist / "conf.zip"
        if build and not dry:
            build_conf_zip(conf_zip, conf_dir)
        cmd += ["--archives", f"{conf_zip}#conf"]
        conf_arg = "conf"
    else:
        conf_arg = str(conf_dir)
    cmd += spark_opts
    cmd += [str(job_path), "--env", env_name, "--conf-dir", conf_arg, *job_args]
    extra_env = {
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "LAKEML_GIT_COMMIT": _git_commit(),
    }
    return cmd, extra_env, dry


def sql_command(argv: list[str], conf_dir: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """spark-sql on the env's catalog and Delta config; remaining args go to spark-sql."""
    env_name = os.environ.get("LAKEML_ENV", "embedded")
    rest = []
    i = 0
    while i < len(argv):
        if argv[i] == "--env" and i + 1 < len(argv):
            env_name = argv[i + 1]
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    env = load_env((conf_dir or PROJECT_ROOT / "conf").resolve(), env_name)
    cmd = [spark_bin("spark-sql"), *common_flags(env), "--name", "lakeml-sql", *rest]
    return cmd, {"SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = "job"
    if argv and argv[0] == "sql":
        mode, argv = "sql", argv[1:]
    try:
        if mode == "sql":
            cmd, extra, dry = *sql_command(argv), False
        else:
            cmd, extra, dry = job_command(argv)
    except (ConfigError, UsageError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if dry:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in extra.items() if k != "LAKEML_GIT_COMMIT"), shlex.join(cmd))
        return
    os.environ.update(extra)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
