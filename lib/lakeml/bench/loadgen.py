"""HTTP load for the serving benchmark: ``wrk`` (C, epoll, a closed loop per connection)
with a Lua script that POSTs pre-formatted JSON bodies, one after the other from a file
(rotating entity ids or rows), and prints its numbers as one JSON line at the end.

A closed loop: each of ``clients`` connections sends its next request when the answer to
the last one arrived, so a slow answer delays the requests behind it (wrk does not correct
for coordinated omission; the p99 is of the requests that were sent). Flat out (no pause) the
server is saturated and the latency is the queue's: ``clients`` / requests per second on
average. Paced (``rate``), each connection waits a random think time after each answer
(exponential, mean ``clients / rate``): together the clients offer about ``rate`` requests
per second, as many users would, and the latency is the server's at that load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

MARK = "BENCH_JSON "

# every thread formats the whole file of bodies once (init), then hands them out in turn;
# done() runs once at the end, in the main Lua state, with the merged statistics
LUA = r"""
local reqs = {}
local at = 0
local made = 0

-- paced: wrk asks delay() before each request only when the script defines it (checked once,
-- after this chunk ran), so it is defined only when a think time is given
local think_ms = tonumber(os.getenv("BENCH_THINK_MS") or "0")
if think_ms > 0 then
  function delay()
    return -think_ms * math.log(1 - math.random())
  end
end

function setup(thread)
  thread:set("tid", made)
  made = made + 1
end

function init(args)
  local headers = {["Content-Type"] = "application/json"}
  for line in io.lines(args[1]) do
    if #line > 0 then reqs[#reqs + 1] = wrk.format("POST", args[2], headers, line) end
  end
  at = ((tid or 0) * 7919) % #reqs  -- threads start apart in the file
  math.randomseed(os.time() + (tid or 0))
end

function request()
  at = at % #reqs + 1
  return reqs[at]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}, "latency_us": {"mean": %.1f, "stdev": %.1f, "p50": %d, "p90": %d, "p99": %d, ' ..
    '"p999": %d, "max": %d}}\n',
    "MARK", summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
""".replace('"MARK"', json.dumps(MARK))


def wrk_path() -> str | None:
    return shutil.which("wrk")


def version() -> str:
    exe = wrk_path()
    if exe is None:
        return "not installed"
    p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    return (p.stdout + p.stderr).split(" Copyright")[0].strip() or "wrk"


def run(url: str, path: str, bodies: Path, clients: int, seconds: float, threads: int = 1, timeout_s: float = 5.0,
        cpus: str | None = None, rate: float | None = None) -> dict:
    """``clients`` connections POST the bodies of ``bodies`` (one a line) to ``url`` + ``path``
    for ``seconds``, flat out or paced to about ``rate`` requests/s; wrk pinned to ``cpus``
    (taskset) when given. Returns requests/s and latency in ms, and every error kind (non-2xx
    answers are ``errors.status``)."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed: ./scripts/setup.sh --bench (Debian package wrk)")
    with tempfile.TemporaryDirectory() as d:
        script = Path(d) / "post.lua"
        script.write_text(LUA)
        cmd = [exe, "-t", str(min(threads, clients)), "-c", str(clients), "-d", f"{seconds:g}s", "--timeout", f"{timeout_s:g}s",
               "-s", str(script), url, "--", str(bodies), path]
        if cpus is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", cpus, *cmd]
        think = {"BENCH_THINK_MS": f"{1000 * clients / rate:.3f}"} if rate else {}
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env={**os.environ, **think})
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith(MARK)), None)
    if p.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    raw = json.loads(line[len(MARK):])
    lat = raw["latency_us"]
    secs = raw["duration_us"] / 1e6
    return {
        "clients": clients,
        "paced_rps": rate,
        "seconds": round(secs, 2),
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / secs, 1),
        "errors": sum(raw["errors"].values()),
        "error_kinds": {k: v for k, v in raw["errors"].items() if v},
        **{f"{k}_ms": round(lat[k] / 1000, 2) for k in ("mean", "p50", "p90", "p99", "p999", "max")},
    }
