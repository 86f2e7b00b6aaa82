"""What spark-submit ships: lib/ as a zip (--py-files) and, in cluster deploy mode, conf/ as a zip (--archives)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from lakeml.core.paths import PROJECT_ROOT


def _publish(dest: Path, files: list[tuple[Path, Path]]) -> Path:
    """The zip of ``files`` (path, name inside) at ``dest``, rewritten only when its bytes
    change, and then by an atomic rename. A job that is running (a streaming query, a
    scoring server's neighbour) reads its modules from this file by path long after it
    started: rewriting it in place under a second job's spark-submit broke the first with
    "bad local file header"."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p, name in files:
            z.write(p, name)
    data = buf.getvalue()
    if dest.is_file() and dest.read_bytes() == data:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    return dest


def build_lib_zip(dest: Path) -> Path:
    """lib/ as a zip for --py-files (what executors import)."""
    src = PROJECT_ROOT / "lib"
    return _publish(dest, [(p, p.relative_to(src)) for p in sorted(src.rglob("*.py"))])


def build_conf_zip(dest: Path, conf_dir: Path) -> Path:
    return _publish(dest, [(p, p.relative_to(conf_dir)) for p in sorted(conf_dir.rglob("*")) if p.is_file()])
