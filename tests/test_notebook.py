"""The exploration notebook runs headless, end to end, on data the pipeline has built.

The notebook kernel is a separate process with its own Spark session, so this test uses
``pipeline_data_dir`` (the pipeline already run there by ``./spark-submit.sh``) and never the
in-process Spark session: the embedded Derby metastore admits one process at a time.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_explore.ipynb"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def execute_notebook(monkeypatch, env_name: str, extra_env: dict[str, str], usecase: str | None = None) -> str:
    """Run the notebook headless with LAKEML_ENV=env_name (and LAKEML_USECASE=usecase); fail
    on any cell error and check that it printed its overview and drew real plots. Returns
    what it printed."""
    # the kernel inherits this process's environment
    monkeypatch.setenv("LAKEML_ENV", env_name)
    for k, v in extra_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LAKEML_CONF_DIR", str(ROOT / "conf"))
    if usecase:
        monkeypatch.setenv("LAKEML_USECASE", usecase)
    else:
        monkeypatch.delenv("LAKEML_USECASE", raising=False)
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    # lakeml importable in the kernel as it is here (pytest's pythonpath = lib)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT / "lib"), os.environ.get("PYTHONPATH")) if p))
    # the kernel must start its own JVM, not attach to a spark-submit gateway, and plot
    # with the inline backend (an inherited MPLBACKEND=Agg would swallow every figure)
    for var in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "MPLBACKEND"):
        monkeypatch.delenv(var, raising=False)

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        startup_timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # cwd = notebooks/, as in Jupyter
    )
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{NOTEBOOK.relative_to(ROOT)} failed on env {env_name} ({extra_env}):\n{e}", pytrace=False)

    outputs = list(_outputs(nb))
    assert not [o for o in outputs if o.get("output_type") == "error"]

    pngs = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert pngs, "the notebook produced no plot (no image/png output)"
    assert all(p.startswith(PNG_MAGIC) and len(p) > 1000 for p in pngs), "an image/png output is not a real PNG"

    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    m = re.search(r"([\d,]+) feature rows, (\d+) snapshots", text)
    assert m, f"overview line with the feature row count not printed; stdout was:\n{text[:2000]}"
    assert int(m.group(1).replace(",", "")) > 0 and int(m.group(2)) > 0, m.group(0)
    assert re.search(r"[\d,]+ rows, [\d,]+ predicted positive \(\w+ = 1\)", text), "predictions section printed no summary"
    return text


@pytest.mark.subprocess
def test_explore_notebook_runs_on_the_default_use_case(pipeline_data_dir, monkeypatch):
    text = execute_notebook(monkeypatch, "embedded", {"LAKEML_DATA_DIR": str(pipeline_data_dir)})
    assert "use case churn:" in text and "label 'churned_30d'" in text and "probability column 'churn_probability'" in text


@pytest.mark.subprocess
def test_explore_notebook_speaks_the_second_use_case(maintenance_data_dir, monkeypatch):
    text = execute_notebook(monkeypatch, "embedded", {"LAKEML_DATA_DIR": str(maintenance_data_dir)}, usecase="maintenance")
    assert "use case maintenance:" in text and "distinct machine_id" in text and "probability column 'failure_probability'" in text
    assert "churn" not in text.lower()
