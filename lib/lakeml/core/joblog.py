"""Each job's log file: everything it and its Spark driver log, traces included, while the
console shows one line per event and never a stack trace for an expected failure.

The file is ``$LAKEML_LOG_FILE`` when set (``spark-submit.sh`` sets it before the JVM starts,
so Spark's own log4j lines, ``conf/log4j2.properties``, go to the same file), else
``<log dir>/<job>-<time>-<pid>.log``: ``$LAKEML_LOG_DIR``, else ``$LAKEML_DATA_DIR/logs``, else
``var/logs`` of the project. The newest ``KEEP`` files of a job are kept.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from lakeml.core.paths import PROJECT_ROOT

VAR = "LAKEML_LOG_FILE"
KEEP = 30
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_dir() -> Path:
    if os.environ.get("LAKEML_LOG_DIR"):
        return Path(os.environ["LAKEML_LOG_DIR"])
    if os.environ.get("LAKEML_DATA_DIR"):
        return Path(os.environ["LAKEML_DATA_DIR"]) / "logs"
    return PROJECT_ROOT / "var" / "logs"


def new_path(job: str) -> str:
    """A fresh log file's path for ``job`` (its folder made, the job's oldest files beyond
    ``KEEP`` removed)."""
    d = log_dir()
    d.mkdir(parents=True, exist_ok=True)
    old = sorted(d.glob(f"{job}-*.log"), key=lambda p: p.stat().st_mtime)
    for p in old[: max(0, len(old) - KEEP + 1)]:
        p.unlink(missing_ok=True)
    return str(d / f"{job}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log")


def current() -> str | None:
    return os.environ.get(VAR)


class _OneLine(logging.Formatter):
    """The console's format: the message only, without a trace (the file has it)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _console_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


def setup(job: str, level: str = "INFO") -> str:
    """Console and file logging for the job ``job``; returns the file's path, which is also
    exported as ``$LAKEML_LOG_FILE`` for the JVM this process starts."""
    path = current() or new_path(job)
    os.environ[VAR] = path
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(level)
    for h in list(root.handlers):
        if getattr(h, "_lakeml", False):
            root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(_OneLine(FORMAT, datefmt="%H:%M:%S"))
    console.addFilter(_console_only)
    file = logging.FileHandler(path, encoding="utf-8")
    file.setFormatter(logging.Formatter(FORMAT))
    for h in (console, file):
        h._lakeml = True  # type: ignore[attr-defined]
        root.addHandler(h)
    return path


def trace(logger: logging.Logger, message: str) -> None:
    """The current exception's trace, into the log file only."""
    logger.error(message, exc_info=True, extra={"file_only": True})


def write_trace(job: str) -> str:
    """The current exception's trace in a new log file of ``job`` (a failure before any
    logging was set up: the wrapper's own checks); returns its path."""
    import traceback

    path = new_path(job)
    Path(path).write_text(traceback.format_exc(), encoding="utf-8")
    return path
