"""Spark applications on YARN: what their containers run, and, in cluster deploy mode, the
driver's output brought back to the terminal that submitted it.

In cluster deploy mode the driver runs in the application master's container: what it prints
(a job's summary) lands in that container's ``stdout``, and spark-submit only reports the
application's state. :func:`submit_and_report` runs spark-submit (it waits for the end and
exits non-zero when the application failed), then reads the driver's ``stdout`` of every
attempt from the NodeManager that ran it (its REST API, found through the ResourceManager's)
and prints it (Spark merges the Python driver's stderr, its log, into it); when the
application failed, what the driver said last (a job's ``error: ...`` line, else its Python
traceback, else the end of the application master's log) follows on stderr. The exit code
is spark-submit's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from lakeml.core.config import EnvConfig
from lakeml.core.errors import UsageError
from lakeml.core.paths import PROJECT_ROOT
from lakeml.core.session import driver_classpath

APP_ID = re.compile(r"\bapplication_\d+_\d+\b")
TRACKING = re.compile(r"tracking URL: (https?://[^/\s]+)/")


def container_flags(env: EnvConfig, conf: dict[str, str], spark_jars: Path) -> list[str]:
    """Set the Python of the application master and executors in ``conf`` (and, from this
    machine, Spark's jars); return the --archives that ship a packed venv."""
    packed = env.spark.python != "local"
    py = "./environment/bin/python" if packed else os.environ.get("PYSPARK_PYTHON", sys.executable)
    for k in ("spark.pyspark.python", "spark.yarn.appMasterEnv.PYSPARK_PYTHON", "spark.executorEnv.PYSPARK_PYTHON"):
        conf.setdefault(k, py)
    if not packed and "spark.yarn.archive" not in conf:
        # the containers run on this machine's files: Spark's jars need no upload (~400 MB a job)
        conf.setdefault("spark.yarn.jars", f"local:{spark_jars}/*")
    if env.spark.deploy_mode == "cluster" and driver_classpath(PROJECT_ROOT, env):
        # the metastore's JDBC driver on the system class path of the driver, in the
        # application master's container, where --jars puts it in the working folder
        conf.setdefault("spark.driver.extraClassPath", ":".join(Path(j).name for j in driver_classpath(PROJECT_ROOT, env).split(":")))
    return ["--archives", f"{env.spark.python}#environment"] if packed else []


def hadoop_conf_dir(env: EnvConfig) -> str:
    """The Hadoop client configuration spark-submit needs for YARN: HADOOP_CONF_DIR (or
    YARN_CONF_DIR) if set, else the one-machine stack's (written by ./scripts/cluster.sh up)."""
    for var in ("HADOOP_CONF_DIR", "YARN_CONF_DIR"):
        if os.environ.get(var):
            return os.environ[var]
    local = Path(os.environ.get("LAKEML_CLUSTER_DIR") or PROJECT_ROOT / "var" / "cluster") / "hadoop-conf"
    if (local / "yarn-site.xml").is_file():
        return str(local)
    raise UsageError(
        f"{env.source_file} runs on YARN, and spark-submit needs the cluster's Hadoop configuration: set HADOOP_CONF_DIR "
        f"to the folder of its core-site.xml and yarn-site.xml, or start this machine's stack with ./scripts/cluster.sh up "
        f"(it writes {local})"
    )


def _get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode(errors="replace")


def _log_text(raw: str) -> str:
    """The file's content out of the NodeManager's answer (a header, ``LogContents:``, the text, an end line)."""
    if "LogContents:" not in raw:
        return raw
    body = raw.split("LogContents:", 1)[1].lstrip("\n")
    return re.sub(r"\n?End of LogType:\S+.*$", "", body, flags=re.S).rstrip("\n")


def driver_logs(rm_url: str, app_id: str, name: str) -> list[tuple[str, str]]:
    """(attempt container, content of its log file ``name``) for every attempt of the application."""
    attempts = json.loads(_get(f"{rm_url}/ws/v1/cluster/apps/{app_id}/appattempts"))["appAttempts"]["appAttempt"]
    out = []
    for a in attempts:
        node = a["nodeHttpAddress"]
        url = f"http://{node}/ws/v1/node/containers/{a['containerId']}/logs/{name}"
        try:
            out.append((a["containerId"], _log_text(_get(url))))
        except OSError as e:
            out.append((a["containerId"], f"(the {name} of {a['containerId']} could not be read from {url}: {e})"))
    return out


def why_failed(stderr: str, lines: int = 40) -> str:
    """What a failed driver said: a job's own ``error: ...`` lines (lakeml.cli), else its last
    Python traceback, else the end of its stderr."""
    rows = stderr.splitlines()
    errors = [r for r in rows if r.startswith("error: ")]
    if errors:
        return "\n".join(errors)
    starts = [i for i, r in enumerate(rows) if r.startswith("Traceback (most recent call last)")]
    return "\n".join(rows[starts[-1]:][:lines] if starts else rows[-lines:])


def submit_and_report(cmd: list[str]) -> int:
    """Run spark-submit (cluster deploy mode on YARN); its own output goes to stderr, the
    driver's stdout to stdout. Returns spark-submit's exit code."""
    app_id = rm_url = None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stderr.write(line)
        app_id = app_id or (m.group(0) if (m := APP_ID.search(line)) else None)
        rm_url = rm_url or (m.group(1) if (m := TRACKING.search(line)) else None)
    rc = proc.wait()
    if app_id is None or rm_url is None:
        print(f"spark-submit exited with {rc} before YARN took the application", file=sys.stderr)
        return rc or 1
    try:
        attempts = driver_logs(rm_url, app_id, "stdout")
        for i, (container, text) in enumerate(attempts, 1):
            if len(attempts) > 1:
                print(f"---- attempt {i} ({container})", flush=True)
            if text:
                print(text, flush=True)
        if rc != 0:
            # Spark's PythonRunner merges the Python driver's stderr into the container's
            # stdout; the container's stderr is the application master's JVM
            container, out = attempts[-1]
            said = why_failed(out) if ("\nerror: " in f"\n{out}" or "Traceback (most recent" in out) else None
            said = said or why_failed(driver_logs(rm_url, app_id, "stderr")[-1][1])
            print(f"{app_id} failed; its driver ({container}) said:\n{said}", file=sys.stderr)
    except (OSError, KeyError, ValueError) as e:
        print(f"the driver's output of {app_id} could not be read through {rm_url}: {e}", file=sys.stderr)
    print(f"{app_id}: {'succeeded' if rc == 0 else f'failed (spark-submit exit code {rc})'}; logs: {rm_url}/cluster/app/{app_id}",
          file=sys.stderr)
    return rc
