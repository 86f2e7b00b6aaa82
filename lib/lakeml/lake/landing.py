"""The landing zone: where upstream exports arrive, one folder per arrival date.

    <landing>/<usecase>/<YYYY-MM-DD>/<source>/<files>

File operations go through Hadoop's FileSystem API of the running session, so the same
code works on a local folder and on ``hdfs://``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
from dataclasses import dataclass, field
from datetime import date

from pyspark.sql import SparkSession

BATCH_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LandedFile:
    path: str
    size: int
    name: str = ""  # the path inside its source folder ("part-1.csv", "eu/part-1.csv"); default the file name

    @property
    def rel(self) -> str:
        return self.name or self.path.rsplit("/", 1)[-1]


@dataclass
class Batch:
    """One arrival date: its files per source."""

    batch_date: date
    files: dict[str, list[LandedFile]] = field(default_factory=dict)

    def fingerprint(self, source: str) -> str:
        """Changes when a file of the source is added, removed or changes size."""
        h = hashlib.sha256()
        for f in sorted(self.files.get(source, []), key=lambda f: f.rel):
            h.update(f"{f.rel}:{f.size};".encode())
        return h.hexdigest()[:16]


def is_local(path: str) -> bool:
    """A local folder (plain path or file:), handled with Python's os module: the same
    operations through the JVM cost a round trip per file."""
    return path.startswith("/") or path.startswith("file:")


def local_path(path: str) -> str:
    """``file:/x`` or ``file:///x`` -> ``/x``; a plain path stays as it is."""
    return re.sub(r"^file:/+", "/", path)


def _fs(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    return p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), p


def visible(name: str) -> bool:
    # Spark and Hadoop treat _ and . prefixed files as metadata (_SUCCESS, .crc)
    return not name.startswith(("_", "."))


def list_batches(spark: SparkSession, landing_dir: str) -> list[Batch]:
    """Every arrival-date folder in the landing zone, oldest first."""
    if is_local(landing_dir):
        return _list_local(local_path(landing_dir))
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
            if src.isDirectory():
                batch.files[src.getPath().getName()] = _walk_hadoop(fs, src.getPath(), "")
        batches.append(batch)
    return sorted(batches, key=lambda b: b.batch_date)


def _list_local(root: str) -> list[Batch]:
    if not os.path.isdir(root):
        return []
    batches = []
    for day in os.scandir(root):
        if not (day.is_dir() and BATCH_DIR.match(day.name)):
            continue
        batch = Batch(date.fromisoformat(day.name))
        for src in os.scandir(day.path):
            if src.is_dir():
                batch.files[src.name] = _walk_local(src.path, "")
        batches.append(batch)
    return sorted(batches, key=lambda b: b.batch_date)


# Files in sub-folders of a source folder (an export split by region, say) belong to the
# batch like the others; hidden ones (``_temporary``, ``.staging``) are not data.
def _walk_local(folder: str, prefix: str) -> list[LandedFile]:
    out = []
    for f in sorted(os.scandir(folder), key=lambda e: e.name):
        if not visible(f.name):
            continue
        if f.is_dir():
            out += _walk_local(f.path, f"{prefix}{f.name}/")
        elif f.is_file():
            out.append(LandedFile(f"file:{f.path}", f.stat().st_size, f"{prefix}{f.name}"))
    return out


def _walk_hadoop(fs, folder, prefix: str) -> list[LandedFile]:
    out = []
    for f in fs.listStatus(folder):
        name = f.getPath().getName()
        if not visible(name):
            continue
        if f.isDirectory():
            out += _walk_hadoop(fs, f.getPath(), f"{prefix}{name}/")
        elif f.isFile():
            out.append(LandedFile(f.getPath().toString(), f.getLen(), f"{prefix}{name}"))
    return out


def first_line(spark: SparkSession, path: str) -> str | None:
    """The first line of a text file (a CSV header), read on the driver; a ``.gz`` file is
    decompressed as Spark's reader does."""
    if is_local(path):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(local_path(path), "rt", encoding="utf-8", errors="replace") as f:
            line = f.readline()
        return line.rstrip("\r\n") if line else None
    jvm = spark.sparkContext._jvm
    fs, p = _fs(spark, path)
    stream = fs.open(p)
    try:
        if path.endswith(".gz"):
            stream = jvm.java.util.zip.GZIPInputStream(stream)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return reader.readLine()
    finally:
        stream.close()


def head_bytes(spark: SparkSession, path: str, n: int) -> bytes:
    """The first ``n`` bytes of a file (a format's magic number)."""
    if is_local(path):
        with open(local_path(path), "rb") as f:
            return f.read(n)
    fs, p = _fs(spark, path)
    stream = fs.open(p)
    try:
        return bytes(bytearray(stream.readNBytes(n)))
    finally:
        stream.close()


def delete(spark: SparkSession, path: str) -> None:
    if is_local(path):
        p = local_path(path)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
        return
    fs, p = _fs(spark, path)
    if fs.exists(p):
        fs.delete(p, True)


def move_partitions_into_batches(
    spark: SparkSession, staging_dir: str, landing_dir: str, source: str, extension: str | None = None
) -> list[str]:
    """Turn ``staging/arrival_date=D/part-*`` into ``landing/D/<source>/part-*``.

    Each destination folder is replaced whole, so regenerating a batch never leaves
    files of an earlier run beside the new ones. Returns the batch dates moved.
    """
    if is_local(staging_dir) and is_local(landing_dir):
        return _move_local(local_path(staging_dir), local_path(landing_dir), source, extension)
    jvm = spark.sparkContext._jvm
    fs, staging = _fs(spark, staging_dir)
    moved = []
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
                if visible(fname) and "." in fname:
                    stem = fname.rsplit(".", 1)[0]
                    fs.rename(f.getPath(), jvm.org.apache.hadoop.fs.Path(dest, f"{stem}.{extension}"))
        moved.append(day)
    fs.delete(staging, True)
    return moved


def _move_local(staging: str, landing_dir: str, source: str, extension: str | None) -> list[str]:
    moved = []
    for part in os.scandir(staging):
        if not (part.is_dir() and part.name.startswith("arrival_date=")):
            continue
        dest = os.path.join(landing_dir, part.name.split("=", 1)[1], source)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.rename(part.path, dest)
        for f in os.scandir(dest):
            if f.name.endswith(".crc"):
                os.remove(f.path)  # Hadoop's checksums; upstream exports have none
            elif extension and visible(f.name) and "." in f.name:
                os.rename(f.path, os.path.join(dest, f"{f.name.rsplit('.', 1)[0]}.{extension}"))
        moved.append(part.name.split("=", 1)[1])
    shutil.rmtree(staging)
    return moved


def read_text(spark: SparkSession, path: str) -> str | None:
    """A small text file (a manifest), or None when it does not exist."""
    if is_local(path):
        p = local_path(path)
        return open(p).read() if os.path.exists(p) else None
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
    if is_local(path):
        os.makedirs(os.path.dirname(local_path(path)), exist_ok=True)
        with open(local_path(path), "w") as f:
            f.write(text)
        return
    fs, p = _fs(spark, path)
    out = fs.create(p, True)
    try:
        out.write(bytearray(text.encode()))
    finally:
        out.close()
