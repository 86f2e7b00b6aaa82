"""The driver's class-data-sharing archive: a cold daily run starts its JVM faster.

    python -m lakeml.bench.cds build [--force]     (make cds; make bench runs it too)

A scheduler starts each daily run in a fresh process. Before its first Spark job, the
JVM reads, verifies and parses some 15 000 classes from Spark's, Delta's and Hive's jars,
and the small jobs of a day run mostly in the interpreter. Java's AppCDS maps those classes
from one archive instead (JEP 350, dynamic archive): the archive is written at the exit of
a warm-up JVM that ran what a daily run runs (here: the default use case's demo, tiny,
through two scheduled runs: the first trains the champion, the second is a daily run),
and every later driver JVM maps it (``lakeml.core.session.cds_opts``). A JVM whose class
path or java differs ignores the archive quietly and starts as before: correctness never
depends on it. ``LAKEML_CDS=0`` turns it off.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from lakeml.core.paths import CONF_DIR, PROJECT_ROOT
from lakeml.core.session import cds_archive

# the warm-up's demo: small enough to take about four minutes on 2 cores, with a labelled
# train and test snapshot (snapshots from day 14, as the history benchmark measures them)
WARM_ENTITIES = 300
WARM_DAYS = 100


def warm_up(data_dir: Path, dump: Path) -> None:
    """In this process: a JVM that writes ``dump`` at its exit, after two scheduled runs."""
    os.environ["LAKEML_DATA_DIR"] = str(data_dir)
    from lakeml import pipeline
    from lakeml.bench.history import _measured, _move
    from lakeml.core import session
    from lakeml.core.config import load_env, load_usecase
    from lakeml.demo import maker

    env = load_env(CONF_DIR, "embedded")
    uc = _measured(load_usecase(CONF_DIR, None, env))
    # the options every driver gets (the build turned the archive itself off), plus the dump
    opts = f"{session.driver_java_opts(env)} -XX:ArchiveClassesAtExit={dump} -Xlog:cds=off -Xlog:cds+dynamic=off"
    spark = session.get_spark(env, "lakeml-cds-warm-up", {"spark.driver.extraJavaOptions": opts})
    spec = maker.spec_of(uc, entities=WARM_ENTITIES, days=WARM_DAYS)
    upstream = data_dir / "upstream"
    maker.run(spark, uc, str(upstream), spec)
    zone = Path(env.landing_zone(uc.name))
    _move(upstream, zone, spec.start_date + timedelta(days=WARM_DAYS - 2))
    pipeline.run_scheduled(spark, env, uc)
    _move(upstream, zone, spec.start_date + timedelta(days=WARM_DAYS))
    pipeline.run_scheduled(spark, env, uc)
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    # the JVM writes the archive as it exits (at the end of its stdin): wait for it here,
    # or the caller would look for the file while it is being written
    jvm.stdin.close()
    jvm.wait(timeout=600)


def build(force: bool = False) -> Path | None:
    """Write the archive for this java, Spark and jar set unless it is there; the path, or
    None when the JVM wrote none (a JDK without dynamic archives: the runs start as before;
    ``build`` then exits 1)."""
    target = cds_archive(PROJECT_ROOT)
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for old in target.parent.glob("driver-*.jsa"):
        old.unlink()
    started = time.time()
    print("writing the driver's class-data-sharing archive (a scheduled run's JVM starts faster; a few minutes, once) ...",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="lakeml-cds-") as tmp:
        dump = Path(tmp) / target.name
        logfile = target.parent / "warm-up.log"
        env = {**os.environ, "LAKEML_CDS": "0", "LAKEML_LOG_LEVEL": "WARNING"}
        with open(logfile, "w") as out:
            rc = subprocess.call([sys.executable, "-m", "lakeml.bench.cds", "warm-up", tmp, str(dump)],
                                 stdout=out, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)
        if rc != 0 or not dump.is_file():
            print(f"warning: no class-data-sharing archive (warm-up exit {rc}, log {logfile}); "
                  "jobs start without it", file=sys.stderr)
            return None
        shutil.move(str(dump), target)
    print(f"wrote {target.relative_to(PROJECT_ROOT)} ({target.stat().st_size >> 20} MB) in {time.time() - started:.0f} s")
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write the archive unless it is there")
    b.add_argument("--force", action="store_true", help="write it again")
    w = sub.add_parser("warm-up", help=argparse.SUPPRESS)
    w.add_argument("data_dir", type=Path)
    w.add_argument("dump", type=Path)
    a = p.parse_args(argv)
    if a.cmd == "warm-up":
        from lakeml import cli

        cli.setup_logging()
        warm_up(a.data_dir, a.dump)
        return 0
    return 0 if build(a.force) is not None else 1


if __name__ == "__main__":
    sys.exit(main())
