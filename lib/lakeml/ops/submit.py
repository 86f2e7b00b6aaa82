"""Build the spark-submit (and spark-sql) command for a job and an env.

``./spark-submit.sh`` and ``./scripts/sql.sh`` are thin shells around this module, so
the one place that turns an env file into Spark flags is here, and ``--dry-run`` prints
exactly what would run.

    spark-submit.sh [--env NAME] [--usecase NAME] [--conf-dir DIR] [--dry-run] [spark-submit options ...] jobs/<job>.py [job args ...]

Before the job path come only the wrapper's own options and spark-submit's (the table
``SPARK_VALUE_OPTIONS`` / ``SPARK_FLAGS``, taken from ``SparkSubmitOptionParser`` of the
installed Spark); the job path is the first argument that is not an option or an option's
value, and everything after it is the job's. Anything else before the job is refused with
the corrected command, so a job option put in the wrong place never reaches spark-submit.
``--env``, ``--conf-dir`` and ``--usecase`` are handed to the job.

Spark options given on the command line come after the env's, so they win
(``--master``, ``--conf k=v``, ``--driver-memory`` ...). ``--archives`` and ``--py-files``
are the exception: spark-submit keeps only the last of each, so the env's, the wrapper's
(lib/ as a zip, conf/ in cluster mode) and yours are merged into one flag.

In cluster deploy mode (YARN, Kubernetes) the driver runs on the cluster: none of this
machine's paths is passed (the local venv's Python, the log4j file), and the variables the
env file refers to are handed to the driver (secrets through a file, never the command line:
``lakeml.ops.driver_env``).
"""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from lakeml.core import joblog, lock
from lakeml.core.config import EnvConfig, load_env, load_usecase
from lakeml.core.errors import LakemlError, UsageError
from lakeml.core.gitinfo import checkout_commit
from lakeml.core.paths import PROJECT_ROOT
from lakeml.core.session import cds_opts, driver_classpath, jar_paths
from lakeml.ops import driver_env, readonly_sql, yarn_app
from lakeml.ops.dist import build_conf_zip, build_lib_zip

WRAPPER = "./spark-submit.sh"
USAGE = (
    f"usage: {WRAPPER} [--env NAME] [--usecase NAME] [--conf-dir DIR] [--dry-run] [spark-submit options ...] "
    "jobs/<job>.py [job args ...]"
)
HELP = f"""{USAGE}

Runs a job with spark-submit on an env of conf/envs/ (default: $LAKEML_ENV, else embedded).

Before the job:
  --env NAME        the env: conf/envs/NAME.yaml (handed to the job)
  --usecase NAME    the use case: conf/NAME/usecase.yaml (handed to the job)
  --conf-dir DIR    the conf/ folder (handed to the job)
  --dry-run         print the exact command instead of running it
  spark-submit's own options, e.g. --master local[2], --driver-memory 8g, --conf k=v,
  --py-files extra.py (they come after the env's and win; see spark-submit --help)

After the job: the job's own options (./spark-submit.sh jobs/<job>.py --help lists them)."""

# spark-submit's options, as SparkSubmitOptionParser (spark-launcher_2.13-4.1.2.jar) has them:
# ``opts`` take a value (``--opt V`` or ``--opt=V``), ``switches`` take none.
SPARK_VALUE_OPTIONS = frozenset(
    {
        "--archives", "--class", "--conf", "-c", "--deploy-mode", "--driver-class-path", "--driver-cores",
        "--driver-default-class-path", "--driver-java-options", "--driver-library-path", "--driver-memory",
        "--executor-cores", "--executor-memory", "--exclude-packages", "--files", "--jars", "--keytab", "--kill",
        "--master", "--name", "--num-executors", "--packages", "--principal", "--properties-file", "--proxy-user",
        "--py-files", "--queue", "--remote", "--repositories", "--status", "--total-executor-cores",
    }
)  # fmt: skip
SPARK_FLAGS = frozenset({"--supervise", "--verbose", "-v", "--version", "--usage-error", "--load-spark-defaults"})
# the wrapper's own options before the job; the value ones are handed to the job
WRAPPER_VALUE_OPTIONS = frozenset({"--env", "--usecase", "--conf-dir"})
WRAPPER_FLAGS = frozenset({"--dry-run"})
HELP_FLAGS = frozenset({"-h", "--help"})
# wrapper options the job must not get a second time after its path: the Spark command was
# built from the first ones, so a later one would make the job and its Spark settings disagree
_BEFORE_THE_JOB_ONLY = ("--env", "--conf-dir")


class HelpRequested(Exception):
    """``-h`` / ``--help`` before the job."""


@dataclass
class SubmitArgs:
    """spark-submit.sh's command line, split."""

    env: str
    dry_run: bool = False
    usecase: str | None = None
    conf_dir: str | None = None
    spark_opts: list[str] = field(default_factory=list)
    job: str = ""
    job_args: list[str] = field(default_factory=list)


class Submission(NamedTuple):
    cmd: list[str]
    extra_env: dict[str, str]
    dry_run: bool
    env: EnvConfig
    # sql.sh while a job holds the embedded env's data folder: the line printed first, and
    # the scratch folder (init SQL, warehouse of the session) removed when spark-sql ends
    notice: str = ""
    scratch: Path | None = None
    # cluster deploy mode: the driver's secret variables (conf key -> value), written at
    # submit to ``secrets_file`` (named on the command line), removed when spark-submit ends
    secrets: dict[str, str] = {}
    secrets_file: Path | None = None


def spark_bin(name: str) -> str:
    """spark-submit / spark-sql of SPARK_HOME if set (a real cluster install), else of
    the venv's pyspark."""
    return str(spark_home() / "bin" / name)


def _java_opts(env: EnvConfig) -> str:
    log4j = PROJECT_ROOT / "conf" / "log4j2.properties"
    opts = [f"-Dlog4j.configurationFile=file:{log4j}"]
    if env.is_local_fs:
        opts.append(f"-Dderby.stream.error.file={env.data_dir}/derby.log")
    cds = cds_opts(PROJECT_ROOT)
    return " ".join(opts + ([cds] if cds else []))


def spark_home() -> Path:
    """SPARK_HOME if set (a real cluster install), else the venv's pyspark."""
    return Path(os.environ.get("SPARK_HOME") or Path(__import__("pyspark").__file__).parent)


def _with_deploy_mode(env: EnvConfig, given: list[str]) -> EnvConfig:
    """``env`` in the deploy mode given on the command line (spark-submit takes the last)."""
    if not given or given[-1] == env.spark.deploy_mode:
        return env
    if given[-1] not in ("client", "cluster"):
        raise UsageError(f"--deploy-mode is client or cluster, not {given[-1]!r}")
    return env.model_copy(update={"spark": env.spark.model_copy(update={"deploy_mode": given[-1]})})


def common_flags(env: EnvConfig, secrets: dict[str, str] | None = None) -> list[str]:
    """--master, --jars and every --conf the env implies; the driver's secret variables
    (cluster deploy mode) go in ``secrets`` instead, never in a flag."""
    flags = ["--master", env.spark.master]
    if env.spark.deploy_mode == "cluster":
        flags += ["--deploy-mode", "cluster"]
    if env.spark.jars_from == "local":
        flags += ["--jars", ",".join(jar_paths(PROJECT_ROOT))]
    conf = env.spark_conf()
    yarn_args = yarn_app.container_flags(env, conf, spark_home() / "jars") if env.spark.master == "yarn" else []
    if env.spark.deploy_mode == "client":
        # the driver runs here: this venv's Python and log4j file (the env's own conf wins)
        conf.setdefault("spark.pyspark.python", os.environ.get("PYSPARK_PYTHON", sys.executable))
        conf.setdefault("spark.driver.extraJavaOptions", _java_opts(env))
        cp = driver_classpath(PROJECT_ROOT, env)
        if cp:
            conf.setdefault("spark.driver.extraClassPath", cp)
    driver_env.forward(env, conf, secrets)
    for k, v in conf.items():
        flags += ["--conf", f"{k}={v}"]
    return flags + yarn_args + list(env.spark.submit_args)


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


def _option_name(arg: str) -> tuple[str, str | None]:
    """``--opt=V`` -> (``--opt``, V); anything else -> (arg, None). spark-submit splits
    ``=`` off long options only."""
    if arg.startswith("--") and "=" in arg:
        name, value = arg.split("=", 1)
        return name, value
    return arg, None


def _looks_like_job(arg: str) -> bool:
    return arg.endswith(".py")


def _misplaced_error(misplaced: list[str], names: list[str], before: list[str], job: str | None, job_args: list[str]) -> UsageError:
    """The one-line error for options before the job that are neither spark-submit's nor the
    wrapper's, with the command as it should have been typed."""
    known = sorted(SPARK_VALUE_OPTIONS | SPARK_FLAGS | WRAPPER_VALUE_OPTIONS | WRAPPER_FLAGS)
    what = f"{names[0]} is not a spark-submit option" if len(names) == 1 else f"{', '.join(names)} are not spark-submit options"
    close = {n: m[0] for n in names if (m := difflib.get_close_matches(n, known, n=1, cutoff=0.8))}
    if len(names) == 1 and close:
        what += f" (did you mean {close[names[0]]}?)"
    elif close:
        what += f" (did you mean {', '.join(f'{m} for {n}' for n, m in close.items())}?)"
    if job is None:
        fixed = f"{WRAPPER} [spark options] jobs/<job>.py {shlex.join(misplaced)} ..."
        return UsageError(f"{what}, and no job is given; a job's own options go after the job: {fixed}")
    fixed = shlex.join([WRAPPER, *before, job, *misplaced, *job_args])
    return UsageError(f"{what}; a job's own options go after the job: {fixed}")


def split_args(argv: list[str]) -> SubmitArgs:
    """spark-submit.sh's argv -> the wrapper's options, spark-submit's, the job and its args.

    Raises ``UsageError`` for an option before the job that is neither the wrapper's nor
    spark-submit's (with the corrected command), an option without its value, no job, and
    ``--env`` / ``--conf-dir`` after the job; ``HelpRequested`` for -h / --help."""
    out = SubmitArgs(env=os.environ.get("LAKEML_ENV", "embedded"))
    before: list[str] = []  # the known options before the job, as typed (for the corrected command)
    misplaced: list[str] = []  # unknown options before the job, with the values that follow them
    misplaced_names: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        name, inline = _option_name(a)
        if name in WRAPPER_VALUE_OPTIONS or name in SPARK_VALUE_OPTIONS:
            if inline is not None:
                value, taken = inline, argv[i : i + 1]
            elif i + 1 < len(argv):
                value, taken = argv[i + 1], argv[i : i + 2]
            else:
                raise UsageError(f"{name} needs a value\n{USAGE}")
            i += len(taken)
            before += taken
            if name == "--env":
                out.env = value
            elif name == "--usecase":
                out.usecase = value
            elif name == "--conf-dir":
                out.conf_dir = value
            else:
                out.spark_opts += taken
        elif a in WRAPPER_FLAGS or a in SPARK_FLAGS:
            before.append(a)
            if a == "--dry-run":
                out.dry_run = True
            else:
                out.spark_opts.append(a)
            i += 1
        elif a in HELP_FLAGS:
            raise HelpRequested()
        elif a.startswith("-") and a != "-":
            # not ours, not spark-submit's: most likely the job's, typed before the job.
            # Its values are the arguments up to the next option or the job path.
            misplaced_names.append(name)
            misplaced.append(a)
            i += 1
            while i < len(argv) and not argv[i].startswith("-") and not _looks_like_job(argv[i]):
                misplaced.append(argv[i])
                i += 1
        else:
            out.job, out.job_args = a, argv[i + 1 :]
            break
    if misplaced:
        raise _misplaced_error(misplaced, misplaced_names, before, out.job or None, out.job_args)
    if not out.job:
        raise UsageError("no job given\n" + USAGE)
    for j, a in enumerate(out.job_args):
        name, inline = _option_name(a)
        if name in _BEFORE_THE_JOB_ONLY:
            value = [a] if inline is not None else out.job_args[j : j + 2]
            rest = out.job_args[:j] + out.job_args[j + len(value) :]
            fixed = shlex.join([WRAPPER, *before, *value, out.job, *rest])
            raise UsageError(f"{name} goes before the job (spark-submit.sh builds the Spark command from it): {fixed}")
    return out


def _conf_dir(given: str | Path | None) -> Path:
    return Path(given or PROJECT_ROOT / "conf").expanduser().resolve()


def job_command(argv: list[str], conf_dir: Path | None = None, build: bool = True) -> Submission:
    """The spark-submit command, its extra environment, whether it is a dry run, and the
    env, for spark-submit.sh's arguments. ``--conf-dir`` on the command line wins over
    ``conf_dir``."""
    args = split_args(argv)
    conf_dir = _conf_dir(args.conf_dir or conf_dir)
    env = load_env(conf_dir, args.env)
    env = _with_deploy_mode(env, _take(args.spark_opts, "--deploy-mode")[1])
    if args.usecase is not None:
        load_usecase(conf_dir, args.usecase, env)  # an unknown or broken use case stops here, before any JVM
    job_path = Path(args.job)
    if not job_path.is_absolute():
        job_path = (Path.cwd() / job_path) if (Path.cwd() / job_path).is_file() else PROJECT_ROOT / job_path
    if not job_path.is_file():
        raise UsageError(f"no such job: {args.job}\n" + USAGE)
    dist = PROJECT_ROOT / "dist"
    lib_zip = dist / "lakeml.zip"
    if build and not args.dry_run:
        build_lib_zip(lib_zip)
    # spark-submit keeps the last --py-files / --archives only: one of each, merged
    secrets: dict[str, str] = {}
    flags, env_py = _take(common_flags(env, secrets), "--py-files")
    flags, env_archives = _take(flags, "--archives")
    spark_opts, user_py = _take(args.spark_opts, "--py-files")
    spark_opts, user_archives = _take(spark_opts, "--archives")
    py_files = [*env_py, str(lib_zip), *user_py]
    cmd = [spark_bin("spark-submit"), *flags, "--name", f"lakeml-{job_path.stem}", "--py-files", ",".join(py_files)]
    archives = env_archives
    if env.spark.deploy_mode == "cluster":
        # the driver runs on the cluster: ship conf/ and name it relative to the container
        conf_zip = dist / "conf.zip"
        if build and not args.dry_run:
            build_conf_zip(conf_zip, conf_dir)
        archives = [*archives, f"{conf_zip}#conf"]
        conf_arg = "conf"
    else:
        conf_arg = str(conf_dir)
    archives = [*archives, *user_archives]
    if archives:
        cmd += ["--archives", ",".join(archives)]
    secrets_file = Path(tempfile.gettempdir()) / f"lakeml-submit-{os.getpid()}" / "driver-env.properties" if secrets else None
    if secrets_file:
        cmd += ["--properties-file", str(secrets_file), "--load-spark-defaults"]
    cmd += spark_opts
    cmd += [str(job_path), "--env", args.env, "--conf-dir", conf_arg]
    if args.usecase is not None:
        cmd += ["--usecase", args.usecase]
    cmd += args.job_args
    extra_env = {
        "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
        "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "LAKEML_GIT_COMMIT": checkout_commit(),
    }
    if env.spark.master == "yarn":
        extra_env["HADOOP_CONF_DIR"] = yarn_app.hadoop_conf_dir(env)
    return Submission(cmd, extra_env, args.dry_run, env, secrets=secrets, secrets_file=secrets_file)


def sql_command(argv: list[str], conf_dir: Path | None = None) -> Submission:
    """spark-sql on the env's catalog and Delta config (beeline on the env's SQL endpoint if
    it has one); remaining args go to spark-sql / beeline.

    On a Derby metastore (embedded) whose data folder a job holds (``lock.held_by``), the
    metastore is the job's: spark-sql then runs on an in-memory catalog whose init file
    (``-i``) declares every Delta table of the warehouse as a read-only view, and the
    submission carries the one-line notice and the scratch folder to remove at the end."""
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
    env = load_env(_conf_dir(conf_dir), env_name)
    extra = {"SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
    if env.sql.endpoint:
        # a shared SQL endpoint (Spark Thrift Server): beeline on it, as an analyst would
        user = os.environ.get("USER") or "lakeml"
        return Submission([spark_bin("beeline"), "-u", env.sql.endpoint, "-n", user, *rest], extra, False, env)
    # spark-sql (like HiveServer2) uses java.time dates, and Delta's metadata-only answer to
    # min/max(date) still builds java.sql.Date (ClassCastException): compute it there. Jobs
    # keep the metadata-only answers (count(*), min/max from the Delta log: no data read).
    no_metadata_answers = ["--conf", "spark.databricks.delta.optimizeMetadataQuery.enabled=false"]
    flags = common_flags(env)
    h = lock.held_by(env.data_dir) if env.storage.metastore == "derby" and env.is_local_fs else None
    if h is None:
        cmd = [spark_bin("spark-sql"), *flags, *no_metadata_answers, "--name", "lakeml-sql", *rest]
        return Submission(cmd, extra, False, env)
    # A job holds the data folder, and with it the Derby metastore (one process): read the
    # warehouse's Delta tables through an in-memory catalog instead, as views (read-only)
    flags, init, scratch, notice = readonly_sql.in_memory(env, flags, h)
    cmd = [spark_bin("spark-sql"), *flags, *no_metadata_answers, "--name", "lakeml-sql", "-i", str(init), *rest]
    return Submission(cmd, extra, False, env, notice, scratch)


def _preflight(mode: str, env: EnvConfig) -> None:
    """The servers the command needs must answer before a JVM is started (lakeml.ops.preflight)."""
    from lakeml.ops import preflight

    preflight.check(env, sql=mode == "sql")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = "job"
    if argv and argv[0] == "sql":
        mode, argv = "sql", argv[1:]
    try:
        sub = sql_command(argv) if mode == "sql" else job_command(argv)
        if not sub.dry_run:
            _preflight(mode, sub.env)
    except HelpRequested:
        print(HELP)
        return
    except LakemlError as e:
        print(f"log file: {joblog.write_trace('submit' if mode == 'job' else 'sql')}", file=sys.stderr)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if sub.dry_run:
        print(" ".join(f"{k}={shlex.quote(v)}" for k, v in sub.extra_env.items() if k != "LAKEML_GIT_COMMIT"), shlex.join(sub.cmd))
        if sub.secrets_file:
            print(f"# {sub.secrets_file} is written at submit (0600, removed after) with {', '.join(sub.secrets)}", file=sys.stderr)
        return
    os.environ.update(sub.extra_env)
    if mode == "job" and sub.env.spark.deploy_mode == "client":
        # the job's log file, for its Python and (log4j, conf/log4j2.properties) its JVM alike
        os.environ.setdefault(joblog.VAR, joblog.new_path(sub.cmd[sub.cmd.index("--name") + 1].removeprefix("lakeml-")))
    if sub.secrets_file:
        driver_env.write_secrets(sub.secrets_file, sub.secrets)
    if sub.env.spark.master == "yarn" and sub.env.spark.deploy_mode == "cluster" and mode == "job":
        try:
            sys.exit(yarn_app.submit_and_report(sub.cmd))
        finally:
            if sub.secrets_file:
                shutil.rmtree(sub.secrets_file.parent, ignore_errors=True)
    if sub.secrets_file:
        sys.exit(readonly_sql.run_then_remove(sub.cmd, sub.secrets_file.parent))
    if sub.notice:
        print(sub.notice, file=sys.stderr, flush=True)
    if sub.scratch is None:
        os.execv(sub.cmd[0], sub.cmd)
    sys.exit(readonly_sql.run_then_remove(sub.cmd, sub.scratch))


if __name__ == "__main__":
    main()
