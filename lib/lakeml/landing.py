"""The landing zone: where upstream exports arrive, one folder per arrival date.

    <landing>/<YYYY-MM-DD>/<source>/<files>

File operations go through Hadoop's FileSystem API of the running session, so the same
code works on a local folder and on ``hdfs://``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import SparkSession

BATCH_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LandedFile:
    path: str
    size: int


@dataclass
class Batch:
    """One arrival date: its files per source."""

    batch_date: date
    files: dict[str, list[LandedFile]] = field(default_factory=dict)

    def fingerprint(self, source: str) -> str:
        """Changes when a file of the source is added, removed or changes size."""
        h = hashlib.sha256()
        for f in sorted(self.files.get(source, []), key=lambda f: f.path):
            h.update(f"{f.path.rsplit('/', 1)[-1]}:{f.size};".encode())
        return h.hexdigest()[:16]


def _fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def _visible(name: str) -> bool:
    # Spark and Hadoop treat _ and . prefixed files as metadata (_SUCCESS, .crc)
    return not name.startswith(("_", "."))


def list_batches(spark: SparkSession, landing_dir: str) -> list[Batch]:
    """Every arrival-date folder in the landing zone, oldest first."""
    fs, root = _fs(spark, landing_dir)
    if not fs.exists(root):
        return []
    batches = []
    for st in fs.listStatus(root):
        name = st.getPath().getName()
        if not (st.isDirectory() and BATCH_DIR.match(name)):
            continue
        batch = Batch(date.fromisoformat(name))
        for src in fs.listStatus(st.getPath()):
            if not src.isDirectory():
                continue
            files = [
                LandedFile(f.getPath().toString(), f.getLen())
                for f in fs.listStatus(src.getPath())
                if f.isFile() and _visible(f.getPath().getName())
            ]
            batch.files[src.getPath().getName()] = files
        batches.append(batch)
    return sorted(batches, key=lambda b: b.batch_date)


def first_line(spark: SparkSession, path: str) -> str | None:
    """The first line of a text file (a CSV header), read on the driver."""
    jvm = spark.sparkContext._jvm
    fs, p = _fs(spark, path)
    stream = fs.open(p)
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return reader.readLine()
    finally:
        stream.close()


def delete(spark: SparkSession, path: str) -> None:
    fs, p = _fs(spark, path)
    if fs.exists(p):
        fs.delete(p, True)


def move_partitions_into_batches(
    spark: SparkSession, staging_dir: str, landing_dir: str, source: str, extension: str | None = None
) -> int:
    """Turn ``staging/arrival_date=D/part-*`` into ``landing/D/<source>/part-*``.

    Each destination folder is replaced whole, so regenerating a batch never leaves
    files of an earlier run beside the new ones. Returns the number of batches moved.
    """
    jvm = spark.sparkContext._jvm
    fs, staging = _fs(spark, staging_dir)
    moved = 0
    for st in fs.listStatus(staging):
        name = st.getPath().getName()
        if not (st.isDirectory() and name.startswith("arrival_date=")):
            continue
        day = name.split("=", 1)[1]
        dest = jvm.org.apache.hadoop.fs.Path(f"{landing_dir}/{day}/{source}")
        if fs.exists(dest):
            fs.delete(dest, True)
        fs.mkdirs(dest.getParent())
        if not fs.rename(st.getPath(), dest):
            raise RuntimeError(f"could not move {st.getPath()} to {dest}")
        if extension:
            for f in fs.listStatus(dest):
                fname = f.getPath().getName()
                if _visible(fname) and "." in fname:
                    stem = fname.rsplit(".", 1)[0]
                    fs.rename(f.getPath(), jvm.org.apache.hadoop.fs.Path(dest, f"{stem}.{extension}"))
        moved += 1
    fs.delete(staging, True)
    return moved


def read_text(spark: SparkSession, path: str) -> str | None:
    """A small text file (a manifest), or None when it does not exist."""
    jvm = spark.sparkContext._jvm
    fs, p = _fs(spark, path)
    if not fs.exists(p):
        return None
    stream = fs.open(p)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def write_text(spark: SparkSession, path: str, text: str) -> None:
    fs, p = _fs(spark, path)
    out = fs.create(p, True)
    try:
        out.write(bytearray(text.encode()))
    finally:
        out.close()
