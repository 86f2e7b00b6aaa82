"""The Spark History Server: the finished (and running) applications of the stack's envs.

Every job of ``--env cluster`` (standalone) and ``--env yarn`` (client or cluster deploy mode)
writes its event log to ``hdfs://127.0.0.1:<namenode>/lakeml/spark-events`` (``spark.eventLog.dir``
of those env files); this server reads that folder and serves the applications'
UIs at ``http://127.0.0.1:<LAKEML_HISTORY_UI_PORT, 18080>``. The embedded env needs no
server, so it keeps no event log unless asked (``--conf spark.eventLog.enabled=true``).
"""

from __future__ import annotations

from lakeml.ops.cluster.spark_standalone import spark_class
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, http_json

EVENTS_PATH = "/lakeml/spark-events"


def event_log_dir(stack: Stack) -> str:
    return f"hdfs://{HOST}:{stack.ports.namenode}{EVENTS_PATH}"


def _make_dir(stack: Stack) -> None:
    """Spark refuses to start an application whose event log folder does not exist."""
    from hdfs import InsecureClient

    InsecureClient(f"http://{HOST}:{stack.ports.webhdfs}", user="lakeml").makedirs(EVENTS_PATH, permission="1777")


def _command(stack: Stack) -> list[str]:
    return [spark_class(), "org.apache.spark.deploy.history.HistoryServer"]


def _env(stack: Stack) -> dict[str, str]:
    opts = {
        "spark.history.fs.logDirectory": event_log_dir(stack),
        "spark.history.ui.port": str(stack.ports.history_ui),
        "spark.history.fs.update.interval": "5s",
        # finished applications' event logs are kept a week
        "spark.history.fs.cleaner.enabled": "true",
        "spark.history.fs.cleaner.maxAge": "7d",
    }
    return {"SPARK_HISTORY_OPTS": " ".join(f"-D{k}={v}" for k, v in opts.items()), "SPARK_LOCAL_IP": HOST}


def applications(stack: Stack) -> list[dict]:
    return http_json(f"http://{HOST}:{stack.ports.history_ui}/api/v1/applications")


def service(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "spark-history", f"http://{HOST}:{p.history_ui} (event logs {event_log_dir(stack)})", p.history_ui,
        marker="deploy.history.HistoryServer",
        command=_command, env=_env, prepare=_make_dir,
        ready=lambda st: isinstance(applications(st), list),
        timeout=90,
    )
