"""The MLflow tracking server on PostgreSQL, serving artifacts itself (``--serve-artifacts``)."""

from __future__ import annotations

import sys
from pathlib import Path

from lakeml.ops.cluster import postgres
from lakeml.ops.cluster.supervisor import HOST, Service, Stack, StackError, http_text


def _mlflow_env(stack: Stack) -> dict[str, str]:
    # the password goes in through the environment, never on a command line
    return {"MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://lakeml:{stack.password()}@{HOST}:{stack.ports.postgres}/mlflow"}


def _store_reachable(stack: Stack) -> None:
    """One connection to the store before the server starts: MLflow itself retries a refused
    connection ten times over 100 s before it exits, so a wrong password would be reported
    after a long wait; this says it at once."""
    import psycopg2

    try:
        postgres.connect(stack, "mlflow").close()
    except psycopg2.Error as e:
        raise StackError(
            f"mlflow: its store, database mlflow of PostgreSQL at {HOST}:{stack.ports.postgres}, refuses the connection "
            f"(is LAKEML_PG_PASSWORD the one the stack was made with?): {str(e).strip()}"
        ) from None


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
        prepare=_store_reachable,
        ready=lambda st: http_text(f"http://{HOST}:{st.ports.mlflow}/health").strip() == "OK",
        timeout=120,
        needs_password=True,
    )
