"""Spark standalone: one master and one worker (``LAKEML_WORKER_CORES``, ``LAKEML_WORKER_MEMORY``),
started with the venv's ``spark-class`` (:func:`spark_class`, also the History Server's)."""

from __future__ import annotations

import os
from pathlib import Path

from lakeml.ops.cluster.supervisor import HOST, Service, Stack, http_json


def spark_class() -> str:
    """The venv's pyspark ``bin/spark-class``, which starts Spark's own daemons (master,
    worker, History Server) in their JVMs."""
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def _master_state(stack: Stack) -> dict:
    return http_json(f"http://{HOST}:{stack.ports.spark_master_ui}/json/")


def master(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "spark-master", f"spark://{HOST}:{p.spark_master} (UI http://{HOST}:{p.spark_master_ui})", p.spark_master,
        marker="deploy.master.Master",
        command=lambda st: [spark_class(), "org.apache.spark.deploy.master.Master", "--host", HOST,
                            "--port", str(st.ports.spark_master), "--webui-port", str(st.ports.spark_master_ui)],
        ready=lambda st: _master_state(st).get("status") == "ALIVE",
        timeout=90,
    )


def worker(stack: Stack) -> Service:
    p = stack.ports
    return Service(
        "spark-worker", f"{os.environ.get('LAKEML_WORKER_CORES', '2')} cores (UI http://{HOST}:{p.spark_worker_ui})",
        p.spark_worker_ui, marker="deploy.worker.Worker",
        command=lambda st: [spark_class(), "org.apache.spark.deploy.worker.Worker", f"spark://{HOST}:{st.ports.spark_master}",
                            "--host", HOST, "--webui-port", str(st.ports.spark_worker_ui),
                            "--cores", os.environ.get("LAKEML_WORKER_CORES", "2"),
                            "--memory", os.environ.get("LAKEML_WORKER_MEMORY", "6g"),
                            "--work-dir", str(st.base / "spark-work")],
        ready=lambda st: _master_state(st).get("aliveworkers", 0) >= 1,
        timeout=90,
    )
