"""What a driver on the cluster (cluster deploy mode: YARN, Kubernetes) gets from the machine
that submits it: the environment it needs to read the env file as this machine does.

The driver reads the env file again, there, and must resolve it to the same values: every
variable the file refers to that is set here is handed to it (``spark.yarn.appMasterEnv.VAR``
/ ``spark.kubernetes.driverEnv.VAR``), and so is this checkout's commit
(``LAKEML_GIT_COMMIT``, MLflow's ``git_commit`` tag of a training). A variable whose name says
it is a secret (``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``, ``*CREDENTIAL*``) never goes on
spark-submit's command line, where ``ps`` shows it to every user: it goes in a properties
file only this user can read (:func:`write_secrets`), named by ``--properties-file`` with
``--load-spark-defaults`` (so the installation's spark-defaults.conf still counts), and
removed when spark-submit ends.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lakeml.core.config import EnvConfig, referenced_vars
from lakeml.core.gitinfo import checkout_commit

SECRET_VAR = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL", re.IGNORECASE)


def prefix(env: EnvConfig) -> str | None:
    """The conf prefix that sets an environment variable of a driver on the cluster."""
    if env.spark.deploy_mode != "cluster":
        return None
    if env.spark.master == "yarn":
        return "spark.yarn.appMasterEnv."
    if env.spark.master.startswith("k8s://"):
        return "spark.kubernetes.driverEnv."
    return None


def forward(env: EnvConfig, conf: dict[str, str], secrets: dict[str, str] | None) -> None:
    """Add the driver's variables to ``conf`` (what the env's own conf sets wins), its secret
    ones to ``secrets`` instead (dropped when that is None). Nothing outside cluster mode."""
    p = prefix(env)
    if not p:
        return
    wanted = referenced_vars(env.source_file) if env.source_file else []
    if env.online.store == "redis":  # the store's password is read from the environment, never from the env file
        wanted = [*wanted, "LAKEML_REDIS_PASSWORD"]
    for var in wanted:
        if var not in os.environ or p + var in conf:
            continue
        if not SECRET_VAR.search(var):
            conf[p + var] = os.environ[var]
        elif secrets is not None:
            secrets[p + var] = os.environ[var]
    conf.setdefault(p + "LAKEML_GIT_COMMIT", checkout_commit())


def write_secrets(path: Path, secrets: dict[str, str]) -> None:
    """The properties file of ``secrets``, in a new folder only this user can enter (0700),
    itself 0600; values escaped as java.util.Properties reads them."""
    path.parent.mkdir(mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def esc(v: str) -> str:
        v = v.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        return "\\" + v if v[:1] in (" ", "\t") else v  # leading blanks are not part of a value

    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(f"{k}={esc(v)}\n" for k, v in secrets.items()))
