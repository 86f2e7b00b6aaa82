"""What every job shares: its common arguments, logging, conf, and the one place where a
user's mistake becomes ``error: <message>`` and exit code 2.

Only ``LakemlError`` is caught here: anything else is a bug and ends with its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import date

from lakeml.core.config import EnvConfig, UseCaseConfig, load_env, load_usecase
from lakeml.core.errors import LakemlError
from lakeml.core.paths import CONF_DIR


def iso_date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {s!r}") from None


def parser(description: str) -> argparse.ArgumentParser:
    # no abbreviations: `--conf x` after a job must not be taken for --conf-dir
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--env", default=os.environ.get("LAKEML_ENV", "embedded"), help="env name: conf/envs/<env>.yaml (default: embedded)")
    p.add_argument("--conf-dir", default=os.environ.get("LAKEML_CONF_DIR", str(CONF_DIR)), help="the conf/ folder")
    p.add_argument(
        "--usecase", default=os.environ.get("LAKEML_USECASE"), help="use case: conf/<usecase>/usecase.yaml (default: $LAKEML_USECASE, else the env's)"
    )
    p.add_argument(
        "--wait", action="store_true",
        help="when another job runs on the same data folder, wait for it to end (default: fail at once, naming it)",
    )
    return p


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LAKEML_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("py4j", "urllib3", "alembic", "mlflow.store.db.utils", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # MLflow probes for Databricks credentials on every registry call; not our setting
    logging.getLogger("mlflow.utils.databricks_utils").setLevel(logging.ERROR)
    # pyspark logs every failed query as a JSON blob before raising; jobs report it once
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)


def load(args: argparse.Namespace) -> tuple[EnvConfig, UseCaseConfig]:
    """The env and use case of a job, and the data folder's lock (``lakeml.core.lock``: one
    job per data folder at a time), taken before anything else starts."""
    from lakeml.core import lock

    env = load_env(args.conf_dir, args.env)
    uc = load_usecase(args.conf_dir, args.usecase, env)
    lock.acquire(env.data_dir, wait=getattr(args, "wait", False), command=" ".join(["jobs/" + os.path.basename(sys.argv[0]), *sys.argv[1:]]))
    return env, uc


def main(run, args: argparse.Namespace) -> None:
    """Run ``run(args)`` and print its result as JSON; a ``LakemlError`` ends with its
    message and exit code 2."""
    setup_logging()
    try:
        result = run(args)
    except LakemlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if result is not None:
        print(json.dumps(result, default=str, indent=2))
