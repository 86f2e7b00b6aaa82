"""Build the spark-submit (and spark-sql) command for a job and an env.

``./spark-submit.sh`` and ``./scripts/sql.sh`` are thin shells around this module, so
the one place that turns an env file into Spark flags is here, and ``--dry-run`` prints
exactly what would run.

    spark-submit.sh [--env NAME] [--dry-run] [spark-submit options ...] jobs/<job>.py [job args ...]

Spark options given on the command line come after the env's, so they win
(``--master``, ``--conf k=v``, ``--driver-memory`` ...). ``--archives`` and ``--py-files``
are the exception: spark-submit keeps only the last of each, so the env's, the wrapper's
(lib/ as a zip, conf/ in cluster mode) and yours are merged into one flag.

In cluster deploy mode (YARN, Kubernetes) the driver runs on the cluster: none of this
machine's paths is passed (the local venv's Python, the log4j file), and every variable the
env file refers to that is set here is handed to the driver
(``spark.yarn.appMasterEnv.VAR`` / ``spark.kubernetes.driverEnv.VAR``), since the driver
reads the env file again and must resolve it to the same values.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

from lakeml.core.config import EnvConfig, load_env, referenced_vars
from lakeml.core.errors import LakemlError, UsageError
from lakeml.core.paths import PROJECT_ROOT
from lakeml.core.session import driver_classpath, jar_paths

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


def _driver_env_prefix(env: EnvConfig) -> str | None:
    """The conf prefix that sets an environment variable of a driver on the cluster."""
    if env.spark.deploy_mode != "cluster":
        return None
    if env.spark.master == "yarn":
        return "spark.yarn.appMasterEnv."
    if env.spark.master.startswith("k8s://"):
        return "spark.kubernetes.driverEnv."
    return None


def common_flags(env: EnvConfig) -> list[str]:
    """--master, --jars and every --conf the env implies."""
    flags = ["--master", env.spark.master]
    if env.spark.deploy_mode == "cluster":
        flags += ["--deploy-mode", "cluster"]
    if env.spark.jars_from == "local":
        flags += ["--jars", ",".join(jar_paths(PROJECT_ROOT))]
    conf = env.spark_conf()
    if env.spark.deploy_mode == "client":
        # the driver runs here: this venv's Python and log4j file (the env's own conf wins)
        conf.setdefault("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable))
        conf.setdefault("spark.driver.extraJavaOptions", _java_opts(env))
        cp = driver_classpath(PROJECT_ROOT, env)
        if cp:
            conf.setdefault("spark.driver.extraClassPath", cp)
    prefix = _driver_env_prefix(env)
    if prefix and env.source_file:
        for var in referenced_vars(env.source_file):
            if var in os.environ:
                conf.setdefault(prefix + var, os.environ[var])
    for k, v in conf.items():
        flags += ["--conf", f"{k}={v}"]
    return flags + list(env.spark.submit_args)


def _take(args: list[str], flag: str) -> tuple[list[str], list[str]]:
    """``args`` without ``flag V`` / ``flag=V``, and the values V (in order)."""
    rest: list[str] = []
    values: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == flag and i + 1 < len(args):
            values.append(args[i + 1])
            i += 2
        elif a.startswith(flag + "="):
            values.append(a.split("=", 1)[1])
            i += 1
        else:
            rest.append(a)
            i += 1
    return rest, values


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
    # spark-submit keeps the last --py-files / --archives only: one of each, merged
    flags, env_py = _take(common_flags(env), "--py-files")
    flags, env_archives = _take(flags, "--archives")
    spark_opts, user_py = _take(spark_opts, "--py-files")
    spark_opts, user_archives = _take(spark_opts, "--archives")
    py_files = [*env_py, str(lib_zip), *user_py]
    cmd = [spark_bin("spark-submit"), *flags, "--name", f"lakeml-{job_path.stem}", "--py-files", ",".join(py_files)]
    archives = env_archives
    if env.spark.deploy_mode == "cluster":
        # the driver runs on the cluster: ship conf/ and name it relative to the container
        conf_zip = dist / "conf.zip"
        if build and not dry:
            build_conf_zip(conf_zip, conf_dir)
        archives = [*archives, f"{conf_zip}#conf"]
        conf_arg = "conf"
    else:
        conf_arg = str(conf_dir)
    archives = [*archives, *user_archives]
    if archives:
        cmd += ["--archives", ",".join(archives)]
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
    extra = {"SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
    if env.sql.endpoint:
        # a shared SQL endpoint (Spark Thrift Server): beeline on it, as an analyst would
        user = os.environ.get("USER") or "lakeml"
        return [spark_bin("beeline"), "-u", env.sql.endpoint, "-n", user, *rest], extra
    cmd = [spark_bin("spark-sql"), *common_flags(env), "--name", "lakeml-sql", *rest]
    return cmd, extra


def _preflight(mode: str, argv: list[str]) -> None:
    """The servers the env needs must answer before a JVM is started (see preflight.py)."""
    from lakeml.ops import preflight

    env_name = os.environ.get("LAKEML_ENV", "embedded")
    if mode == "sql":
        for i, a in enumerate(argv[:-1]):
            if a == "--env":
                env_name = argv[i + 1]
    else:
        env_name = split_args(argv)[0]
    env = load_env(PROJECT_ROOT / "conf", env_name)
    if mode == "sql" and env.sql.endpoint:
        preflight.check_sql_endpoint(env)
        return
    preflight.check(env)


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
    except LakemlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if dry:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in extra.items() if k != "LAKEML_GIT_COMMIT"), shlex.join(cmd))
        return
    try:
        _preflight(mode, argv)
    except LakemlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    os.environ.update(extra)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
