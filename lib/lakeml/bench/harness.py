"""Timing and memory of benchmark stages.

Memory is sampled from outside the work, every ``interval`` seconds, on a thread: the
resident set of this Python process (the PySpark driver) and of the JVM it launched (in
local mode the driver JVM also runs the tasks), and apart from those the Python workers
the JVM forks for UDFs. The JVM heap in use is read over py4j at the same time. A stage's
peak is the largest sample taken while it ran.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

log = logging.getLogger(__name__)
MB = 1024 * 1024


def _tree(proc: psutil.Process) -> tuple[int, int, int]:
    """(python rss, jvm rss, python-worker rss) of the driver process tree."""
    py = proc.memory_info().rss
    jvm = workers = 0
    for c in proc.children(recursive=True):
        try:
            name = c.name()
            rss = c.memory_info().rss
        except psutil.Error:
            continue
        if name == "java":
            jvm += rss
        elif "python" in name:
            workers += rss
    return py, jvm, workers


class MemorySampler:
    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.proc = psutil.Process()
        self.heap_used = None  # a callable returning the JVM's used heap in bytes, once a session exists
        self._peak: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-memory", daemon=True)

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> None:
        py, jvm, workers = _tree(self.proc)
        heap = 0
        if self.heap_used is not None:
            try:
                heap = int(self.heap_used())
            except Exception as e:  # noqa: BLE001 - the gateway is busy or gone (py4j's errors vary); the next sample will do
                log.debug("no JVM heap sample: %s: %s", type(e).__name__, e)
                heap = 0
        s = {"driver_rss": py + jvm, "python_rss": py, "jvm_rss": jvm, "jvm_heap_used": heap, "worker_rss": workers}
        with self._lock:
            for k, v in s.items():
                self._peak[k] = max(self._peak.get(k, 0), v)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except psutil.Error:
                pass

    def take_peak(self) -> dict[str, float]:
        """The peaks since the last call, in MB, and start over."""
        self.sample()
        with self._lock:
            out = {f"{k}_mb": round(v / MB) for k, v in self._peak.items()}
            self._peak = {}
        return out


@dataclass
class Recorder:
    """Stage results in order; prints progress as it goes."""

    cores: int
    sampler: MemorySampler
    results: dict[str, dict] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    on_start: object = None  # called with the stage name first (tags the stage's Spark jobs)

    @contextmanager
    def stage(self, name: str, input_rows: int | None = None, **info):
        """Time the block; ``rec["input_rows"]`` may be set inside it when known only after."""
        rec: dict = {"input_rows": input_rows, **info}
        log.info("[bench +%4.0fs] %s ...", time.time() - self.started, name)
        if self.on_start:
            self.on_start(name)
        self.sampler.take_peak()
        t0 = time.perf_counter()
        yield rec
        rec["seconds"] = round(time.perf_counter() - t0, 2)
        rec.update(self.sampler.take_peak())
        n = rec.get("input_rows")
        if n:
            rec["rows_per_s"] = round(n / rec["seconds"])
            rec["rows_per_s_per_core"] = round(n / rec["seconds"] / self.cores)
        self.results[name] = rec
        log.info(
            "[bench +%4.0fs] %s: %.1f s%s, driver peak %s MB",
            time.time() - self.started,
            name,
            rec["seconds"],
            f", {n:,} rows, {rec['rows_per_s_per_core']:,} rows/s/core" if n else "",
            rec.get("driver_rss_mb"),
        )


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30).stderr.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        java = "?"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "java": java,
    }
