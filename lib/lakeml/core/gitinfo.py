"""The commit of the code that runs, for MLflow's ``git_commit`` tag of a training.

On the machine that submits, it is HEAD of this checkout (:func:`checkout_commit`); a driver
on a cluster (cluster deploy mode) has no checkout, so the submitting machine hands it the
commit as ``LAKEML_GIT_COMMIT``, which :func:`git_commit` reads first. No MLflow here: the
submit wrapper (``lakeml.ops``) asks too.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from lakeml.core.paths import PROJECT_ROOT


def checkout_commit(project_root: str | Path = PROJECT_ROOT) -> str:
    """HEAD of the git checkout at ``project_root``, "unknown" without git or a checkout."""
    return _rev_parse_head(str(project_root))


@functools.cache  # one `git rev-parse` per checkout and process (a submit asks twice, a run more often)
def _rev_parse_head(project_root: str) -> str:
    try:
        out = subprocess.run(["git", "-C", project_root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_commit(project_root: str | Path = PROJECT_ROOT) -> str:
    """``LAKEML_GIT_COMMIT`` when set (what the submitting machine handed a driver), else
    :func:`checkout_commit` of ``project_root``."""
    return os.environ.get("LAKEML_GIT_COMMIT") or checkout_commit(project_root)
