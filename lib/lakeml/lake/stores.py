"""Where landed files are kept: one interface over the file systems a landing zone can be on.

A store is a folder (its root) and the file operations the landing zone needs under it:
``list``, ``exists``, ``open`` (and on top of it ``head``, ``first_line``, ``read_text``),
``write_text``, ``delete``, ``mkdirs``, ``move`` and ``put``. Paths are relative to the root
("" is the root itself). Three kinds, chosen by the root's scheme in :func:`open_store`:

- ``LocalStore``: a local folder (a plain path or ``file:``), with Python's os module (the
  same operations through the JVM cost a round trip per file);
- ``HadoopStore``: any other path, through the Hadoop FileSystem of the running Spark
  session (``hdfs://``, ``s3a://``, ...);
- ``WebHdfsStore``: ``hdfs://`` without Spark, through WebHDFS with HdfsCLI, the way an
  upstream system or an edge node drops files.

``put`` writes a file beside its target under a hidden name and renames it into place, so
ingest never reads half a file.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, BinaryIO, NamedTuple
from urllib.parse import urlsplit

from lakeml.core.errors import UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lakeml.core.config import EnvConfig

DIRECTORY, FILE = "DIRECTORY", "FILE"  # the kinds of an entry, named as WebHDFS names them


class LandingError(UsageError):
    """A landing operation that cannot be done as asked; the message says why."""


class Entry(NamedTuple):
    """A child of a folder: its name, DIRECTORY or FILE, its size in bytes and its last
    modification, in milliseconds since the epoch (both 0 for a folder)."""

    name: str
    kind: str
    size: int
    mtime: int = 0


def is_local(path: str) -> bool:
    """A path on the local disk: a plain absolute path or a ``file:`` URI."""
    return path.startswith("/") or path.startswith("file:")


def local_path(path: str) -> str:
    """``file:/x`` or ``file:///x`` -> ``/x``; a plain path stays as it is."""
    return re.sub(r"^file:/+", "/", path)


def _tmp_name(name: str) -> str:
    # beside the target, hidden from ingest and Spark (a leading "." or "_")
    return f"._{name}.uploading"


def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if rel else root


class Store(ABC):
    """A folder on some file system and the file operations under it."""

    workers = 4  # files the landing operations put at once
    location: str  # the root, as messages name it
    filesystem: str  # a move cannot leave it: the store moved into must have the same

    @abstractmethod
    def path(self, rel: str = "") -> str:
        """``rel`` as this file system names it (and messages show it)."""

    def uri(self, rel: str = "") -> str:
        """``rel`` with its scheme, as Spark's readers take it."""
        return self.path(rel)

    @abstractmethod
    def list(self, rel: str = "") -> list[Entry]:
        """The children of the folder ``rel`` (any order); [] when there is no such folder."""

    @abstractmethod
    def exists(self, rel: str = "") -> bool: ...

    @abstractmethod
    def open(self, rel: str = "") -> BinaryIO:
        """The file ``rel``, opened to read its bytes (use it in a ``with``)."""

    @abstractmethod
    def write_text(self, rel: str, text: str) -> None:
        """Write a small text file (UTF-8), replacing it if it exists, making its folder."""

    @abstractmethod
    def delete(self, rel: str = "") -> None:
        """Remove a file, or a folder with everything in it; nothing when it is absent."""

    @abstractmethod
    def mkdirs(self, rel: str = "") -> None:
        """Make the folder ``rel`` and the folders above it (none when they exist)."""

    @abstractmethod
    def put(self, rel: str, local: str, overwrite: bool = False) -> None:
        """Copy the local file ``local`` to ``rel``: beside it under a hidden name first, then
        renamed into place, replacing an existing file only with ``overwrite`` (else a
        ``LandingError``, the existing file left as it is)."""

    @abstractmethod
    def _rename(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target`` (both as :meth:`path` gives them); fail if it cannot."""

    def move(self, rel: str, to: str, into: Store | None = None) -> None:
        """Move the file or folder ``rel`` to ``to`` in this store or in ``into`` (a store on the
        same file system: a rename, nothing is copied), making the folder it goes into."""
        dest = self if into is None else into
        if dest.filesystem != self.filesystem:
            raise LandingError(f"{self.location} and {dest.location} must be on the same file system to move {rel}")
        dest.mkdirs(to.rsplit("/", 1)[0] if "/" in to else "")
        self._rename(self.path(rel), dest.path(to))

    def head(self, rel: str, n: int) -> bytes:
        """The first ``n`` bytes of a file (a format's magic number)."""
        with self.open(rel) as f:
            return f.read(n)

    def first_line(self, rel: str = "") -> str | None:
        """The first line of a text file (a CSV header), None for an empty file; a ``.gz``
        file is decompressed, as Spark's reader does."""
        with self.open(rel) as f:
            data = gzip.GzipFile(fileobj=f) if self.path(rel).endswith(".gz") else f
            with io.TextIOWrapper(data, encoding="utf-8", errors="replace") as text:
                line = text.readline()
        return line.rstrip("\r\n") if line else None

    def read_text(self, rel: str = "") -> str | None:
        """A small text file (a manifest), or None when it does not exist."""
        if not self.exists(rel):
            return None
        with self.open(rel) as f:
            return f.read().decode("utf-8")


class LocalStore(Store):
    """A folder on the local disk."""

    workers = 4  # file copies; the disk, not the thread count, is the limit
    filesystem = "file:"

    def __init__(self, root: str):
        self.root = self.location = local_path(root)

    def path(self, rel: str = "") -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def uri(self, rel: str = "") -> str:
        return f"file:{self.path(rel)}"

    def list(self, rel: str = "") -> list[Entry]:
        p = self.path(rel)
        if not os.path.isdir(p):
            return []
        out = []
        with os.scandir(p) as entries:
            for e in entries:
                if e.is_dir():
                    out.append(Entry(e.name, DIRECTORY, 0))
                elif e.is_file():  # not a socket, nor a link to nothing
                    st = e.stat()
                    out.append(Entry(e.name, FILE, st.st_size, st.st_mtime_ns // 1_000_000))
        return out

    def exists(self, rel: str = "") -> bool:
        return os.path.exists(self.path(rel))

    def open(self, rel: str = "") -> BinaryIO:
        return open(self.path(rel), "rb")

    def write_text(self, rel: str, text: str) -> None:
        os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)
        with open(self.path(rel), "w", encoding="utf-8") as f:
            f.write(text)

    def delete(self, rel: str = "") -> None:
        p = self.path(rel)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)

    def mkdirs(self, rel: str = "") -> None:
        os.makedirs(self.path(rel), exist_ok=True)

    def _rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def put(self, rel: str, local: str, overwrite: bool = False) -> None:
        target = self.path(rel)
        parent, name = os.path.split(target)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, _tmp_name(name))
        shutil.copyfile(local, tmp)
        if overwrite:
            os.replace(tmp, target)
            return
        try:
            os.link(tmp, target)  # unlike a rename, refuses an existing target
        except FileExistsError:
            os.remove(tmp)
            raise LandingError(f"{target} appeared while uploading; it was left as it is") from None
        os.remove(tmp)


class _JavaInput(io.RawIOBase):
    """A Java InputStream (through py4j) as a Python binary file."""

    def __init__(self, stream):
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.stream.readNBytes(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.stream.close()
        super().close()


class HadoopStore(Store):
    """A folder on any file system Hadoop reaches (``hdfs://``, ``s3a://``, ...), through the
    FileSystem API of the running Spark session: one JVM round trip per call."""

    def __init__(self, spark: SparkSession, root: str):
        self._jvm = spark.sparkContext._jvm
        p = self._jvm.org.apache.hadoop.fs.Path(root)
        self.fs = p.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
        # qualified (hdfs:///x -> hdfs://namenode:port/x): the paths Spark's readers report
        self.root = self.location = self.fs.makeQualified(p).toString()

    @property
    def filesystem(self) -> str:
        return self.fs.getUri().toString()

    def path(self, rel: str = "") -> str:
        return _join(self.root, rel)

    def _hadoop_path(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def list(self, rel: str = "") -> list[Entry]:
        p = self._hadoop_path(self.path(rel))
        if not self.fs.isDirectory(p):  # absent, or a file (whose listStatus is the file itself)
            return []
        out = []
        for st in self.fs.listStatus(p):
            if st.isDirectory():
                out.append(Entry(st.getPath().getName(), DIRECTORY, 0))
            elif st.isFile():
                out.append(Entry(st.getPath().getName(), FILE, st.getLen(), st.getModificationTime()))
        return out

    def exists(self, rel: str = "") -> bool:
        return self.fs.exists(self._hadoop_path(self.path(rel)))

    def open(self, rel: str = "") -> BinaryIO:
        return io.BufferedReader(_JavaInput(self.fs.open(self._hadoop_path(self.path(rel)))))

    def write_text(self, rel: str, text: str) -> None:
        out = self.fs.create(self._hadoop_path(self.path(rel)), True)  # makes the folders
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()

    def delete(self, rel: str = "") -> None:
        p = self._hadoop_path(self.path(rel))
        if self.fs.exists(p):
            self.fs.delete(p, True)

    def mkdirs(self, rel: str = "") -> None:
        self.fs.mkdirs(self._hadoop_path(self.path(rel)))

    def _rename(self, source: str, target: str) -> None:
        if not self.fs.rename(self._hadoop_path(source), self._hadoop_path(target)):
            raise RuntimeError(f"could not move {source} to {target}")

    def put(self, rel: str, local: str, overwrite: bool = False) -> None:
        target = self.path(rel)
        parent, name = target.rsplit("/", 1)
        tmp = f"{parent}/{_tmp_name(name)}"
        self.fs.copyFromLocalFile(False, True, self._hadoop_path(f"file:{os.path.abspath(local)}"), self._hadoop_path(tmp))
        if overwrite:
            # FileSystem.rename never replaces: the old file goes first (a moment without it)
            self.fs.delete(self._hadoop_path(target), False)
        if not self.fs.rename(self._hadoop_path(tmp), self._hadoop_path(target)):
            self.fs.delete(self._hadoop_path(tmp), False)
            raise LandingError(f"{target} appeared while uploading; it was left as it is")


class WebHdfsStore(Store):
    """A folder on HDFS, reached through WebHDFS with HdfsCLI (no Spark, no JVM)."""

    workers = 8  # concurrent uploads: each is HTTP round trips (NameNode, DataNode, rename), not CPU

    def __init__(self, root: str, webhdfs_url: str, user: str | None = None):
        parts = urlsplit(root)
        self.root = parts.path.rstrip("/") or "/"
        self.location = root  # what messages call it (hdfs://...)
        self.scheme = f"{parts.scheme}://{parts.netloc}" if parts.scheme else ""
        self.webhdfs_url = self.filesystem = webhdfs_url
        self.user = user or os.environ.get("HADOOP_USER_NAME") or os.environ.get("USER") or "lakeml"
        self._local = threading.local()

    def _client(self):
        """One HdfsCLI client (one HTTP session) per thread."""
        c = getattr(self._local, "client", None)
        if c is None:
            from hdfs import InsecureClient

            c = self._local.client = InsecureClient(self.webhdfs_url, user=self.user)
        return c

    def path(self, rel: str = "") -> str:
        return _join(self.root, rel)

    def uri(self, rel: str = "") -> str:
        return self.scheme + self.path(rel)

    def list(self, rel: str = "") -> list[Entry]:
        c = self._client()
        st = c.status(self.path(rel), strict=False)
        if st is None or st["type"] != DIRECTORY:
            return []
        return [Entry(name, s["type"], s["length"], s["modificationTime"] if s["type"] == FILE else 0)
                for name, s in c.list(self.path(rel), status=True)]

    def exists(self, rel: str = "") -> bool:
        return self._client().status(self.path(rel), strict=False) is not None

    def open(self, rel: str = "") -> BinaryIO:
        return self._client().read(self.path(rel))  # a context manager: the HTTP response's stream

    def write_text(self, rel: str, text: str) -> None:
        self._client().write(self.path(rel), data=text.encode("utf-8"), overwrite=True)  # makes the folders

    def delete(self, rel: str = "") -> None:
        self._client().delete(self.path(rel), recursive=True)

    def mkdirs(self, rel: str = "") -> None:
        self._client().makedirs(self.path(rel))

    def _rename(self, source: str, target: str) -> None:
        self._client().rename(source, target)

    def put(self, rel: str, local: str, overwrite: bool = False) -> None:
        """Three HTTP calls: CREATE on the NameNode, the bytes to the DataNode, RENAME. With
        ``overwrite`` the rename's OVERWRITE option replaces the old file in one step."""
        c = self._client()
        target = self.path(rel)
        parent, name = target.rsplit("/", 1)
        tmp = f"{parent}/{_tmp_name(name)}"
        with open(local, "rb") as f:
            c.write(tmp, data=f, overwrite=True)
        if overwrite:
            c._rename(tmp, destination=target, renameoptions="OVERWRITE")
            return
        if not c._rename(tmp, destination=target).json()["boolean"]:  # HDFS refuses an existing target
            c.delete(tmp)
            raise LandingError(f"{target} appeared while uploading; it was left as it is")


def open_store(path: str, spark: SparkSession | None = None, webhdfs: str | None = None) -> Store:
    """The store of the folder (or file) ``path``, by its scheme: a local path (plain or
    ``file:``) on the local disk; any other through the Hadoop FileSystem of ``spark`` when
    there is a session; without one, ``hdfs://`` through WebHDFS at ``webhdfs``."""
    if is_local(path):
        return LocalStore(path)
    if spark is not None:
        return HadoopStore(spark, path)
    if path.startswith("hdfs://") and webhdfs:
        return WebHdfsStore(path, webhdfs)
    raise LandingError(f"{path}: only local folders and hdfs:// (through WebHDFS) are supported without Spark")


def zone_stores(env: EnvConfig, usecase: str) -> tuple[Store, Store]:
    """(landing store, archive store) of one use case, for the landing operations, which run
    without Spark: a landing zone on HDFS is reached through WebHDFS."""
    root = env.landing_zone(usecase)
    if root.startswith("hdfs://") and not env.storage.webhdfs:
        raise LandingError(
            f"storage.webhdfs is not set in {env.source_file}: the landing zone {root} is on HDFS and these operations use WebHDFS"
        )
    return open_store(root, webhdfs=env.storage.webhdfs), open_store(env.archive_zone(usecase), webhdfs=env.storage.webhdfs)
