"""What every job shares: its common arguments, logging, conf, and the one place where a
user's mistake becomes ``error: <message>`` and exit code 2.

Only ``LakemlError`` is caught here, and the few JVM failures a user causes and can fix
(``user_caused``: the embedded metastore held by another process): anything else is a bug
and ends with its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from datetime import date

from lakeml.core.config import EnvConfig, UseCaseConfig, load_env, load_usecase
from lakeml.core.errors import LakemlError
from lakeml.core.paths import CONF_DIR

log = logging.getLogger(__name__)


def iso_date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None


def parser(description: str) -> argparse.ArgumentParser:
    # no abbreviations: `--conf x` after a job must not be taken for --conf-dir
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--env", default=os.environ.get("LAKEML_ENV", "embedded"),
                   help="env name: conf/envs/<env>.yaml (default: embedded)")
    p.add_argument("--conf-dir", default=os.environ.get("LAKEML_CONF_DIR", str(CONF_DIR)), help="the conf/ folder")
    p.add_argument(
        "--usecase", default=os.environ.get("LAKEML_USECASE"),
        help="use case: conf/<usecase>/usecase.yaml (default: $LAKEML_USECASE, else the env's)",
    )
    p.add_argument(
        "--wait", action="store_true",
        help="when another job runs on the same data folder, wait for it to end (default: fail at once, naming it)",
    )
    return p


def setup_logging(job: str | None = None) -> str:
    """Console and log-file logging (``lakeml.core.joblog``); returns the log file's path."""
    from lakeml.core import joblog

    path = joblog.setup(job or os.path.splitext(os.path.basename(sys.argv[0]))[0] or "lakeml",
                        os.environ.get("LAKEML_LOG_LEVEL", "INFO"))
    for noisy in ("py4j", "urllib3", "alembic", "mlflow.store.db.utils", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow probes for Databricks credentials on every registry call; not our setting
    logging.getLogger("mlflow.utils.databricks_utils").setLevel(logging.ERROR)
    # pyspark logs every failed query as a JSON blob before raising; jobs report it once
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    return path


def load(args: argparse.Namespace) -> tuple[EnvConfig, UseCaseConfig]:
    """The env and use case of a job, and the data folder's lock (``lakeml.core.lock``: one
    job per data folder at a time), taken before anything else starts."""
    from lakeml.core import lock

    env = load_env(args.conf_dir, args.env)
    uc = load_usecase(args.conf_dir, args.usecase, env)
    command = " ".join(["jobs/" + os.path.basename(sys.argv[0]), *sys.argv[1:]])
    lock.acquire(env.job_lock_key, wait=getattr(args, "wait", False), command=command)
    return env, uc


# failures of Spark's JVM that a user causes and can fix, known by their cause's text:
# (pattern, message); the message may use the pattern's groups
_USER_CAUSED = [
    (re.compile(r"Another instance of Derby may have already booted the database (\S+?)\.?$", re.M),
     "the metastore {0} is in use by another process (the embedded Derby metastore admits one at a time: "
     "a notebook, a Spark shell or another Spark application on this data folder?): end it, then run the job again"),
]


def user_caused(e: BaseException) -> str | None:
    """The one-line message of a JVM failure a user caused (``_USER_CAUSED``), else None.
    Looks through the exception's JVM trace, causes included."""
    texts, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        texts += [str(getattr(e, "_desc", "") or ""), str(getattr(e, "_stackTrace", "") or "")]
        if not hasattr(e, "_stackTrace"):
            try:
                texts.append(str(e))
            except Exception as unprintable:  # noqa: BLE001 - a py4j error whose JVM is gone
                log.debug("%s cannot be printed: %s", type(e).__name__, unprintable)
        e = getattr(e, "_cause", None) or e.__cause__
    text = "\n".join(texts)
    for pattern, message in _USER_CAUSED:
        m = pattern.search(text)
        if m:
            return message.format(*m.groups())
    return None


def _fail(message: str, path: str) -> None:
    """An expected failure: its message on the console, its trace in the log file only."""
    from lakeml.core import joblog

    joblog.trace(log, f"error: {message}")
    # the error last: a scheduler shows a task's last line (orchestration/airflow)
    print(f"log file: {path}", file=sys.stderr)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(run, args: argparse.Namespace) -> None:
    """Run ``run(args)`` and print its result as JSON; a ``LakemlError`` (or a JVM failure
    of a known user-caused kind, ``user_caused``) ends with the log file's path (which has
    the trace), ``error: <message>`` and exit code 2."""
    from lakeml.core import joblog

    path = setup_logging()
    try:
        result = run(args)
    except LakemlError as e:
        _fail(str(e), path)
    except Exception as e:
        message = user_caused(e)
        if message is None:
            joblog.trace(log, "failed")  # a bug: its trace on the console too (raised), and in the file
            raise
        _fail(message, path)
    if result is not None:
        print(json.dumps(result, default=str, indent=2))
