"""What a user sees of each documented failure, run as a user runs it (./spark-submit.sh):
a few lines naming what and where, never a stack trace; the trace is in the job's log file,
whose path an error prints. docs/reliability.md lists these cases."""

import gzip
import json
import random
import re
from pathlib import Path

import pytest

from conftest import edit_yaml, run_cmd

pytestmark = pytest.mark.subprocess

H = "customer_id,signup_date,plan,monthly_fee,region,payment_method,channel,age"
TRACE = re.compile(r"^\s+at [\w.$]+\(|^Traceback \(most recent call last\)|^Caused by: |^\s+File \"", re.M)
LOGGED = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARN|WARNING|ERROR) ")


def _cust(key: str, fee: str = "9.99") -> str:
    return f"{key},2026-01-01,basic,{fee},north,card,ads,30"


def _write(p: Path, b: bytes | str) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b if isinstance(b, bytes) else b.encode())


def _console(p) -> list[str]:
    """The console's lines, without the job's JSON result (spark-submit's PythonRunner
    merges the driver's stderr into its stdout)."""
    text = p.stdout + p.stderr
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "{", "}", "[", "]"))]


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Path:
    """A data folder whose landing zone holds good rows, two gzip files cut short (one inside
    its first block, one half-way through) and a folder dated decades ahead."""
    data = tmp_path_factory.mktemp("console")
    day = data / "landing" / "churn" / "2026-03-01"
    _write(day / "customers" / "ok.csv", f"{H}\n{_cust('C1')}\n")
    rnd = random.Random(1)
    big = gzip.compress((H + "\n" + "".join(_cust(f"X{rnd.getrandbits(64):x}") + "\n" for _ in range(60000))).encode())
    _write(day / "customers" / "cut-late.csv.gz", big[: len(big) // 2])
    _write(day / "customers" / "cut-early.csv.gz", big[:300])
    event = {"event_id": "E1", "customer_id": "C1", "event_ts": "2026-02-28T10:00:00Z", "sessions": 1, "minutes_used": 2.5}
    _write(day / "usage_events" / "e.jsonl", json.dumps(event) + "\n")
    _write(data / "landing" / "churn" / "2062-03-01" / "customers" / "ok.csv", f"{H}\n{_cust('C2')}\n")
    return data


def test_bad_files_and_a_future_folder_cost_a_line_each_and_no_trace(landed):
    p = run_cmd(["./spark-submit.sh", "jobs/ingest.py"], {"LAKEML_DATA_DIR": str(landed)}, check=False)
    console = _console(p)
    assert p.returncode == 0, "\n".join(console[-30:])
    assert not TRACE.search(p.stdout + p.stderr), (p.stdout + p.stderr)[-3000:]
    warnings = [ln for ln in console if re.match(r"^\d\d:\d\d:\d\d (WARN|WARNING|ERROR) ", ln)]
    assert len(warnings) == 1 and "2062-03-01: dated " in warnings[0] and "left in landing, not ingested" in warnings[0], warnings
    assert len(console) <= 20, console
    result = json.loads(p.stdout[p.stdout.index("{"): p.stdout.rindex("}") + 1])
    assert result["refused"][0]["folder"].endswith("/landing/churn/2062-03-01")
    assert {s["source"]: (s["rows_accepted"], s["rows_quarantined"]) for s in result["sources"]}["customers"] == (1, 2)
    # the Spark task failures of the file cut half-way are in the job's log file, with their trace
    logs = list((landed / "logs").glob("ingest-*.log"))
    assert len(logs) == 1 and re.search(r"\n\s+at org\.apache\.spark\.", logs[0].read_text())


def test_a_narrowed_conf_type_is_a_short_message_and_its_trace_is_in_the_log(landed, conf_copy):
    edit_yaml(conf_copy / "churn" / "usecase.yaml", lambda y: y["sources"]["customers"]["columns"]["monthly_fee"].update(type="int"))
    _write(landed / "landing" / "churn" / "2026-03-02" / "customers" / "ok.csv", f"{H}\n{_cust('C3', '12')}\n")
    p = run_cmd(["./spark-submit.sh", "--conf-dir", str(conf_copy), "jobs/ingest.py"], {"LAKEML_DATA_DIR": str(landed)}, check=False)
    console = _console(p)
    assert p.returncode == 2, "\n".join(console[-30:])
    assert not TRACE.search(p.stdout + p.stderr), (p.stdout + p.stderr)[-3000:]
    lines = p.stdout.splitlines()
    errors = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[errors[0]] == "error: conf and tables disagree, nothing was ingested:"
    assert lines[errors[0] - 1].startswith("log file: ")
    said = [ln for ln in lines[errors[0] + 1:] if "monthly_fee is int, churn." in ln]
    assert said == lines[errors[0] + 1: errors[0] + 3], lines[errors[0]:]  # bronze and silver, a line each, right after
    assert len(console) <= 8, console
    log = Path(lines[errors[0] - 1].removeprefix("log file: "))
    assert "lakeml.core.typechange.TypeChangeError" in log.read_text() and "Traceback (most recent call last)" in log.read_text()


def test_a_conf_error_is_named_before_any_jvm_in_two_lines(conf_copy, tmp_path):
    edit_yaml(conf_copy / "churn" / "usecase.yaml", lambda y: y["landing"].update(max_days_ahaed=2))
    p = run_cmd(["./spark-submit.sh", "--conf-dir", str(conf_copy), "--usecase", "churn", "jobs/ingest.py"],
                {"LAKEML_DATA_DIR": str(tmp_path)}, check=False)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[1].startswith(f"error: {conf_copy}/churn/usecase.yaml: landing.max_days_ahaed")
    assert lines[0].startswith(f"log file: {tmp_path}/logs/submit-")
    assert not TRACE.search(p.stderr)
