"""``./scripts/sql.sh`` while a job holds the embedded env's data folder.

The job then holds the Derby metastore too (one process at a time), so spark-sql runs on an
in-memory catalog whose init file declares every Delta table of the warehouse as a view
``db.table`` over its folder: each query reads the table's latest committed version, and
writes are refused (a view is not a table). What the session creates lands in a scratch
folder, removed when spark-sql ends.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from lakeml.core.config import EnvConfig


def in_memory(env: EnvConfig, flags: list[str], holder: dict) -> tuple[list[str], Path, Path, str]:
    """(``flags`` for an in-memory catalog, the init file, the scratch folder, the one-line
    notice naming the ``holder``)."""
    scratch = Path(tempfile.mkdtemp(prefix="lakeml-sql-"))
    init = scratch / "tables.sql"
    init.write_text(read_only_init_sql(env.warehouse_dir))
    confs = {
        "spark.sql.catalogImplementation": "in-memory",
        # what the session creates lands in its scratch folder, never beside the job's tables
        "spark.sql.warehouse.dir": str(scratch / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": None,
    }
    who = ", ".join(str(x) for x in (f"pid {holder['pid']}" if holder.get("pid") else None, holder.get("command")) if x)
    notice = (f"sql.sh: a job{f' ({who})' if who else ''} holds {env.data_dir}: reading the Delta tables "
              "read-only, without the metastore")
    return _with_confs(flags, confs), init, scratch, notice


def _with_confs(flags: list[str], confs: dict[str, str | None]) -> list[str]:
    """``flags`` with each ``--conf k=v`` of a key in ``confs`` set to its value there, or
    dropped when it is None."""
    out: list[str] = []
    i = 0
    while i < len(flags):
        if flags[i] == "--conf" and i + 1 < len(flags) and flags[i + 1].split("=", 1)[0] in confs:
            key = flags[i + 1].split("=", 1)[0]
            if confs[key] is not None:
                out += ["--conf", f"{key}={confs[key]}"]
            i += 2
        else:
            out.append(flags[i])
            i += 1
    return out


def delta_tables(warehouse: str) -> list[tuple[str, str, str]]:
    """(database, table, path) of every Delta table with a commit in a local warehouse
    folder: ``<warehouse>/<db>.db/<table>/_delta_log``, and ``<warehouse>/<table>`` for the
    default database."""
    root = Path(warehouse[len("file:"):] if warehouse.startswith("file:") else warehouse)
    found = []
    for log in sorted(root.glob("*/_delta_log")) + sorted(root.glob("*.db/*/_delta_log")):
        table = log.parent
        if not any(log.glob("0*.json")) and not any(log.glob("*.checkpoint*.parquet")):
            continue  # being created: no version to read yet
        in_db = table.parent != root
        db = table.parent.name[: -len(".db")] if in_db else "default"
        if not in_db and table.name.endswith(".db"):
            continue
        found.append((db, table.name, str(table)))
    return found


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def read_only_init_sql(warehouse: str) -> str:
    """The spark-sql init file that declares every Delta table of the warehouse as a view
    ``db.table`` over its folder: each query reads the table's latest committed version,
    and a write to a view (insert, update, delete) fails."""
    lines = []
    tables = delta_tables(warehouse)
    for db in sorted({db for db, _, _ in tables} - {"default"}):
        lines.append(f"CREATE DATABASE IF NOT EXISTS {_ident(db)};")
    for db, table, path in tables:
        lines.append(f"CREATE OR REPLACE VIEW {_ident(db)}.{_ident(table)} AS SELECT * FROM delta.{_ident(path)};")
    return "\n".join(lines) + "\n"


def run_then_remove(cmd: list[str], scratch: Path) -> int:
    """Run ``cmd`` in the foreground, remove ``scratch`` when it ends, and return its exit
    code. Ctrl-C is the child's (spark-sql cancels the running statement); a TERM or HUP
    sent to this process is passed on to it."""
    children: list[subprocess.Popen] = []

    def forward(signum, _frame):
        for c in children:
            c.send_signal(signum)

    # Python handlers (not SIG_IGN) go back to the default in the child at exec
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    try:
        children.append(subprocess.Popen(cmd))
        rc = children[0].wait()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 128 - rc if rc < 0 else rc
