"""One Airflow DAG per use case of a lakeml checkout: ``lakeml_<usecase>_daily`` runs the daily
scheduled pipeline of ``conf/<usecase>/usecase.yaml`` (every use case folder found there; a
new one gets its DAG at the next parse):

    ./spark-submit.sh --usecase <usecase> [--env $LAKEML_ENV] jobs/pipeline.py --scheduled

once a day, one run at a time, no catch-up of missed days (a run catches up by itself: the
pipeline is incremental). The job's output (its summary) goes to the task log. Its exit code
decides the task's state:

- 0: success;
- 2, a data or conf problem (``error: <what and where>``, the last line of the log): the task
  fails at once, without its retries (``AirflowFailException``), since running the same job on
  the same data again would fail the same way. Exception: ``error: another job is running``
  (another job holds the data folder's lock), which the retries are for;
- anything else (a crash, a lost executor, a killed JVM): the task fails and is retried after
  ``RETRY_DELAY``, ``RETRIES`` times.

Where the checkout is (read when the file is parsed): the Airflow Variable ``lakeml_home``
(also ``AIRFLOW_VAR_LAKEML_HOME``), else the environment variable ``LAKEML_HOME``, else the
checkout this file lies in (``orchestration/airflow/dags/`` of it; a symlink to this file counts
as lying there). The job runs there, in the environment of the Airflow worker: ``LAKEML_ENV``,
``LAKEML_DATA_DIR``, ``LAKEML_CONF_DIR`` etc. reach it as they reach ``./spark-submit.sh``.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta
from functools import cached_property
from pathlib import Path

import pendulum
from airflow.providers.standard.hooks.subprocess import SubprocessHook, SubprocessResult
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Variable
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

EXPECTED_FAILURE = 2  # lakeml.cli.main: a data or conf problem, said in one line `error: ...`
LOCKED = "error: another job is running"  # lakeml.core.lock: exit 2 too, but a retry can help
RETRIES = 2
RETRY_DELAY = timedelta(minutes=15)
TIMEOUT = timedelta(hours=20)  # a hung run must not hold the next day's (max_active_runs=1)


def lakeml_home() -> Path:
    """The lakeml checkout whose use cases get a DAG and whose ./spark-submit.sh runs them."""
    default = os.environ.get("LAKEML_HOME") or str(Path(__file__).resolve().parents[3])
    home = Path(Variable.get("lakeml_home", default=default)).expanduser()
    if not (home / "spark-submit.sh").is_file():
        raise FileNotFoundError(f"{home} is not a lakeml checkout (no spark-submit.sh): set the Airflow Variable lakeml_home "
                                f"or the environment variable LAKEML_HOME to the folder holding spark-submit.sh")
    return home


def usecases(home: Path) -> list[str]:
    """Every use case of the checkout: the folders of conf/ (or $LAKEML_CONF_DIR) holding a usecase.yaml."""
    conf = Path(os.environ.get("LAKEML_CONF_DIR") or home / "conf")
    return sorted(p.parent.name for p in conf.glob("*/usecase.yaml"))


class _KeepResult(SubprocessHook):
    """SubprocessHook that keeps the last command's result (exit code and last output line)."""

    result: SubprocessResult | None = None

    def run_command(self, *args, **kwargs) -> SubprocessResult:
        self.result = super().run_command(*args, **kwargs)
        return self.result


class LakemlJobOperator(BashOperator):
    """BashOperator for a lakeml job: exit code 2 (a data or conf problem) fails the task without
    its retries, except when another job holds the data folder; any other non-zero code fails it
    as usual (retried). No exit code skips the task."""

    def __init__(self, **kwargs) -> None:
        super().__init__(skip_on_exit_code=None, **kwargs)

    @cached_property
    def subprocess_hook(self) -> _KeepResult:
        return _KeepResult()

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSkipException:
            raise
        except AirflowException as e:
            r = self.subprocess_hook.result
            if r is None or r.exit_code != EXPECTED_FAILURE or r.output.startswith(LOCKED):
                raise
            raise AirflowFailException(f"the job stopped on a data or conf problem (exit {r.exit_code}), "
                                       f"not retried: {r.output}") from e


def daily_dag(home: Path, usecase: str) -> DAG:
    with DAG(
        dag_id=f"lakeml_{usecase}_daily",
        description=f"lakeml: the daily scheduled pipeline of use case {usecase} ({home})",
        doc_md=__doc__,
        schedule="@daily",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY, "execution_timeout": TIMEOUT},
        tags=["lakeml", usecase],
    ) as dag:
        LakemlJobOperator(
            task_id="pipeline",
            bash_command=f'./spark-submit.sh --usecase {shlex.quote(usecase)} ${{LAKEML_ENV:+--env "$LAKEML_ENV"}} '
                         "jobs/pipeline.py --scheduled",
            cwd=str(home),
        )
    return dag


HOME = lakeml_home()
for _uc in usecases(HOME):
    globals()[f"lakeml_{_uc}_daily"] = daily_dag(HOME, _uc)
