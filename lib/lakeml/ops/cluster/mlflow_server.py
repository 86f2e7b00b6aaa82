"""The MLflow tracking server on PostgreSQL, serving artifacts itself (``--serve-artifacts``)."""

from __future__ import annotations

import sys
from pathlib import Path

from lakeml.ops.cluster.supervisor import HOST, Service, Stack, http_text


def _mlflow_env(stack: Stack) -> dict[str, str]:
    # the password goes in through the environment, never on a command line
    return {"MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://lakeml:{stack.password()}@{HOST}:{stack.ports.postgres}/mlflow"}


def service(stack: Stack) -> Service:
    p = stack.ports
    venv_bin = Path(sys.executable).parent
    return Service(
        "mlflow", f"http://{HOST}:{p.mlflow}", p.mlflow, marker="mlflow",
        command=lambda st: [
            str(venv_bin / "mlflow"), "server", "--host", HOST, "--port", str(st.ports.mlflow),
            "--serve-artifacts", "--artifacts-destination", str(st.base / "mlflow-artifacts"), "--workers", "1",
        ],
        env=_mlflow_env,
        ready=lambda st: http_text(f"http://{HOST}:{st.ports.mlflow}/health").strip() == "OK",
        timeout=120,
    )
