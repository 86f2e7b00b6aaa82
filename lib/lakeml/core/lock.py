"""One job per data folder at a time.

Two jobs on one data folder would share the embedded Derby metastore (which admits one
process) and write the same tables. Every job takes an exclusive lock on
``<data_dir>/.lakeml.lock`` before it does anything (with an external metastore, on the
warehouse instead: ``EnvConfig.job_lock_key``, so envs that share the tables share the
lock); a second job fails at once with one line naming the holder (pid, command, start
time), or waits for it with ``--wait``.

The lock is an OS file lock (``flock``) held by the job's process, so the kernel releases
it when the process ends, however it ends: a job killed with ``kill -9`` leaves no lock
behind, only its stale description in the file, which the next job overwrites. A data folder
that is not local (``hdfs://``) is locked on this machine, in the temporary folder: jobs
submitted from one machine exclude each other (a driver YARN starts on another node does not
see that lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from lakeml.core.errors import LakemlError

log = logging.getLogger(__name__)

NAME = ".lakeml.lock"
_held: dict[str, int] = {}  # lock path -> the open descriptor this process holds


class JobLocked(LakemlError):
    """Another job holds the data folder; the message names it."""


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:  # gone meanwhile
        return False


def lock_path(data_dir: str) -> Path:
    if data_dir.startswith("file:"):
        data_dir = data_dir[len("file:"):]
    if "://" in data_dir:
        return Path(tempfile.gettempdir()) / f"lakeml-{hashlib.sha256(data_dir.encode()).hexdigest()[:16]}.lock"
    return Path(data_dir) / NAME


def holder(path: Path) -> dict:
    """What the lock file says about the job that holds (or last held) it."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(h: dict) -> str:
    if not h:
        return "a job"
    return f"pid {h.get('pid')} on {h.get('host')} (`{h.get('command')}`, started {h.get('started')})"


def acquire(data_dir: str, wait: bool = False, command: str | None = None) -> Path:
    """Take the data folder's lock for the rest of this process (again in the same process:
    nothing to do). Raises ``JobLocked`` when another process holds it, unless ``wait``."""
    path = lock_path(data_dir)
    if str(path) in _held:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        h = holder(path)
        if not wait:
            os.close(fd)
            raise JobLocked(
                f"another job is running on {data_dir}: {_describe(h)}; run this one when it ends, "
                f"or with --wait to wait for it (lock: {path})"
            ) from None
        log.warning("waiting for the job that holds %s: %s", data_dir, _describe(h))
        fcntl.flock(fd, fcntl.LOCK_EX)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or " ".join(sys.argv),
          "started": datetime.now().astimezone().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    _held[str(path)] = fd
    return path


def held_by(data_dir: str) -> dict | None:
    """Who holds the data folder's lock now, without taking it (``./scripts/sql.sh`` asks
    before it opens the metastore): None when no process does (or this one does), else the
    holder's description (pid, host, command, started; the pid alone when unknown).

    On Linux the answer comes from ``/proc/locks``, which names the holding pid and never
    touches the lock, so a job starting at that instant is not turned away; elsewhere a
    shared non-blocking flock is tried and given back at once."""
    path = lock_path(data_dir)
    if str(path) in _held:
        return None
    try:
        st = path.stat()
    except OSError:
        return None  # no job ever ran here
    pids = _flock_pids(st)
    if pids is None:  # no /proc/locks: probe
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return holder(path)
        finally:
            os.close(fd)  # gives the shared lock back
        return None
    if not pids:
        return None
    h = holder(path)
    if h.get("pid") in pids or not any(p > 0 for p in pids):
        return h
    # the file still describes an earlier job (the holder has not written it yet)
    pid = next(p for p in pids if p > 0)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = None
    return {"pid": pid, "host": socket.gethostname(), "command": command}


def _flock_pids(st: os.stat_result) -> list[int] | None:
    """The pids holding a flock on the file ``st`` describes, from ``/proc/locks``; None
    when that file cannot be read (not Linux)."""
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    me = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in lines:
        # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:9986531 0 EOF"; "1: -> FLOCK ..." is a waiter
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[5] == me:
            try:
                pids.append(int(f[4]))
            except ValueError:
                pids.append(0)
    return pids


def release(data_dir: str) -> None:
    """Give the lock back before the process ends (tests; a job simply exits)."""
    fd = _held.pop(str(lock_path(data_dir)), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
