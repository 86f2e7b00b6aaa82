"""Where landed files are kept, and the few file operations the landing job needs on it:
a local folder (``LocalStore``) or HDFS through WebHDFS with HdfsCLI (``WebHdfsStore``), the
way an upstream system or an edge node drops files. Writes go beside the target under a
hidden name and are renamed into place, so ingest never reads half a file."""

from __future__ import annotations

import os
import shutil
import threading
from urllib.parse import urlsplit

from lakeml.core.config import EnvConfig
from lakeml.core.errors import UsageError


class LandingError(UsageError):
    """A landing operation that cannot be done as asked; the message says why."""


def _tmp_name(name: str) -> str:
    # beside the target, hidden from ingest and Spark (a leading "." or "_")
    return f"._{name}.uploading"


class LocalStore:
    """A landing zone in a local folder."""

    workers = 4  # file copies; the disk, not the thread count, is the limit

    def __init__(self, root: str):
        self.root = root[len("file:") :] if root.startswith("file:") else root
        self.location = self.root  # what messages call it

    def uri(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    def list(self, rel: str = "") -> list[tuple[str, str, int]]:
        """(name, 'DIRECTORY'|'FILE', size) of the children of ``rel``; [] if it is absent."""
        p = self.uri(rel)
        if not os.path.isdir(p):
            return []
        return [(e.name, "DIRECTORY" if e.is_dir() else "FILE", 0 if e.is_dir() else e.stat().st_size) for e in os.scandir(p)]

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.uri(rel))

    def put(self, rel: str, local: str, overwrite: bool = False) -> None:
        """Copy ``local`` to ``rel``: beside it under a hidden name first, then into place
        (replacing an existing file only with ``overwrite``)."""
        target = self.uri(rel)
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

    def move(self, rel_from: str, rel_to: str) -> None:
        os.makedirs(os.path.dirname(self.uri(rel_to)), exist_ok=True)
        os.rename(self.uri(rel_from), self.uri(rel_to))


class WebHdfsStore:
    """A landing zone on HDFS, reached through WebHDFS with HdfsCLI."""

    workers = 8  # concurrent uploads: each is HTTP round trips (NameNode, DataNode, rename), not CPU

    def __init__(self, root: str, webhdfs_url: str, user: str | None = None):
        self.root = urlsplit(root).path.rstrip("/") or "/"
        self.location = root  # what messages call it (hdfs://...)
        self.webhdfs_url = webhdfs_url
        self.user = user or os.environ.get("HADOOP_USER_NAME") or os.environ.get("USER") or "lakeml"
        self._local = threading.local()
        self.client = self._client()

    def _client(self):
        """One HdfsCLI client (one HTTP session) per thread."""
        c = getattr(self._local, "client", None)
        if c is None:
            from hdfs import InsecureClient

            c = self._local.client = InsecureClient(self.webhdfs_url, user=self.user)
        return c

    def uri(self, rel: str) -> str:
        return f"{self.root.rstrip('/')}/{rel}" if rel else self.root

    def list(self, rel: str = "") -> list[tuple[str, str, int]]:
        c = self._client()
        st = c.status(self.uri(rel), strict=False)
        if st is None or st["type"] != "DIRECTORY":
            return []
        return [(name, s["type"], s["length"]) for name, s in c.list(self.uri(rel), status=True)]

    def exists(self, rel: str) -> bool:
        return self._client().status(self.uri(rel), strict=False) is not None

    def put(self, rel: str, local: str, overwrite: bool = False) -> None:
        """Write ``local`` beside ``rel`` under a hidden name, then rename it into place: three
        HTTP calls (CREATE on the NameNode, the bytes to the DataNode, RENAME). With
        ``overwrite`` the rename's OVERWRITE option replaces the old file in one step."""
        c = self._client()
        target = self.uri(rel)
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

    def move(self, rel_from: str, rel_to: str) -> None:
        parent = self.uri(rel_to).rsplit("/", 1)[0]
        self.client.makedirs(parent)
        self.client.rename(self.uri(rel_from), self.uri(rel_to))


def stores(env: EnvConfig, usecase: str):
    """(landing store, archive store) of one use case's landing zone."""
    root, arch = env.landing_zone(usecase), env.archive_zone(usecase)
    if root.startswith("hdfs://"):
        if not env.storage.webhdfs:
            raise LandingError(f"storage.webhdfs is not set in {env.source_file}: the landing zone {root} is on HDFS and these operations use WebHDFS")
        return WebHdfsStore(root, env.storage.webhdfs), WebHdfsStore(arch, env.storage.webhdfs)
    if "://" in root and not root.startswith("file:"):
        raise LandingError(f"landing zone {root}: only local folders and hdfs:// are supported by the landing operations")
    return LocalStore(root), LocalStore(arch)
