"""What spark-submit ships: lib/ as a zip (--py-files) and, in cluster deploy mode, conf/ as a zip (--archives)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from lakeml.core.paths import PROJECT_ROOT


def build_lib_zip(dest: Path) -> Path:
    """lib/ as a zip for --py-files (what executors import)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = PROJECT_ROOT / "lib"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(src.rglob("*.py")):
            z.write(p, p.relative_to(src))
    return dest


def build_conf_zip(dest: Path, conf_dir: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(conf_dir.rglob("*")):
            if p.is_file():
                z.write(p, p.relative_to(conf_dir))
    return dest
