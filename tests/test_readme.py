"""The README's examples run: every SQL block against the tables the pipeline built for its
use case, and the Python example that scores with ONNX Runtime. A README example that does
not run is a bug."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import ROOT, run_cmd

pytestmark = pytest.mark.subprocess

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def _sql_blocks(database: str) -> list[str]:
    return [code for lang, code in BLOCKS if lang == "sql" and re.search(rf"\b{database}\.", code)]


def _run_sql(blocks: list[str], data_dir, tmp_path) -> str:
    script = tmp_path / "readme.sql"
    script.write_text("\n".join(blocks))
    p = run_cmd(["./scripts/sql.sh", "-f", str(script)], {"LAKEML_DATA_DIR": str(data_dir)}, timeout=900)
    return p.stdout + p.stderr


def test_the_sql_examples_of_the_default_use_case_run(pipeline_data_dir, tmp_path):
    blocks = _sql_blocks("churn")
    assert len(blocks) >= 3
    out = _run_sql(blocks, pipeline_data_dir, tmp_path)
    assert "Error" not in out and "Exception" not in out, out[-3000:]


def test_the_sql_examples_of_the_second_use_case_run(maintenance_data_dir, tmp_path):
    blocks = _sql_blocks("maintenance")
    assert blocks
    out = _run_sql(blocks, maintenance_data_dir, tmp_path)
    assert "Error" not in out and "Exception" not in out, out[-3000:]


def test_the_onnx_scoring_example_runs(pipeline_data_dir):
    code = next(c for lang, c in BLOCKS if lang == "python" and "onnx_runtime.score_onnx" in c)
    p = run_cmd([sys.executable, "-c", code], {"LAKEML_DATA_DIR": str(pipeline_data_dir), "PYTHONPATH": str(ROOT / "lib")}, timeout=600)
    n, lo, hi = p.stdout.strip().splitlines()[-1].split()
    assert int(n) == 1000 and 0.0 <= float(lo) <= float(hi) <= 1.0
