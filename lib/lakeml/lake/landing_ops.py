"""Landing-zone operations an operator runs by hand or from a scheduler, without Spark:
upload external files as a batch, list batches (pending or ingested), archive a batch
once it is ingested.

On HDFS they go through WebHDFS with the ``hdfs`` package (HdfsCLI), the way an upstream
system or an edge node drops files; on a local landing zone through the file system.
Layout (the one ingest reads)::

    <landing>/<usecase>/<YYYY-MM-DD>/<source>/<files>   pending or ingested
    <archive>/<usecase>/<YYYY-MM-DD>/<source>/<files>   moved here by `archive` once ingested

``<archive>`` is ``storage.archive`` of the env, by default a folder ``archive`` beside
the landing folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

from lakeml.core.config import EnvConfig
from lakeml.core.errors import UsageError
from lakeml.lake.landing import BATCH_DIR, Batch, LandedFile, visible


class LandingError(UsageError):
    """A landing operation that cannot be done as asked; the message says why."""


class LocalStore:
    """A landing zone in a local folder."""

    def __init__(self, root: str):
        self.root = root[len("file:") :] if root.startswith("file:") else root

    def uri(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def list(self, rel: str = "") -> list[tuple[str, str, int]]:
        """(name, 'DIRECTORY'|'FILE', size) of the children of ``rel``; [] if it is absent."""
        p = self.uri(rel)
        if not os.path.isdir(p):
            return []
        return [(e.name, "DIRECTORY" if e.is_dir() else "FILE", 0 if e.is_dir() else e.stat().st_size) for e in os.scandir(p)]

    def exists(self, rel: str) -> bool:
        return os.path.exists(self.uri(rel))

    def upload(self, rel: str, local: str) -> None:
        os.makedirs(os.path.dirname(self.uri(rel)), exist_ok=True)
        tmp = self.uri(rel) + "._uploading"
        shutil.copyfile(local, tmp)
        os.replace(tmp, self.uri(rel))

    def move(self, rel_from: str, rel_to: str) -> None:
        os.makedirs(os.path.dirname(self.uri(rel_to)), exist_ok=True)
        os.rename(self.uri(rel_from), self.uri(rel_to))


class WebHdfsStore:
    """A landing zone on HDFS, reached through WebHDFS with HdfsCLI."""

    def __init__(self, root: str, webhdfs_url: str, user: str | None = None):
        from hdfs import InsecureClient

        self.root = urlsplit(root).path.rstrip("/") or "/"
        self.client = InsecureClient(webhdfs_url, user=user or os.environ.get("HADOOP_USER_NAME") or os.environ.get("USER") or "lakeml")
        self.webhdfs_url = webhdfs_url

    def uri(self, rel: str) -> str:
        return f"{self.root}/{rel}" if rel else self.root

    def list(self, rel: str = "") -> list[tuple[str, str, int]]:
        st = self.client.status(self.uri(rel), strict=False)
        if st is None or st["type"] != "DIRECTORY":
            return []
        return [(name, s["type"], s["length"]) for name, s in self.client.list(self.uri(rel), status=True)]

    def exists(self, rel: str) -> bool:
        return self.client.status(self.uri(rel), strict=False) is not None

    def upload(self, rel: str, local: str) -> None:
        # write beside, then rename: ingest never sees half a file (names starting "._" are hidden)
        target = self.uri(rel)
        tmp = f"{target.rsplit('/', 1)[0]}/._{target.rsplit('/', 1)[1]}.uploading"
        self.client.upload(tmp, local, overwrite=True)
        self.client.rename(tmp, target)

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


@dataclass
class BatchInfo:
    batch_date: date
    sources: dict[str, list[tuple[str, int]]]  # source -> [(file name, size)]

    def fingerprint(self, source: str) -> str:
        # the same fingerprint ingest records (file names and sizes)
        b = Batch(self.batch_date, {source: [LandedFile(n, s) for n, s in self.sources.get(source, [])]})
        return b.fingerprint(source)


def list_batches(store) -> list[BatchInfo]:
    out = []
    for name, kind, _ in store.list():
        if kind != "DIRECTORY" or not BATCH_DIR.match(name):
            continue
        srcs = {}
        for src, skind, _ in store.list(name):
            if skind == "DIRECTORY":
                srcs[src] = sorted((f, size) for f, fkind, size in store.list(f"{name}/{src}") if fkind == "FILE" and visible(f))
        out.append(BatchInfo(date.fromisoformat(name), srcs))
    return sorted(out, key=lambda b: b.batch_date)


def upload(store, files: list[str], source: str, batch_date: date, overwrite: bool = False) -> list[str]:
    """Put local files (or every file of local folders) into ``<date>/<source>/``."""
    paths: list[Path] = []
    for f in files:
        p = Path(f)
        if p.is_dir():
            paths += sorted(x for x in p.iterdir() if x.is_file() and visible(x.name))
        elif p.is_file():
            paths.append(p)
        else:
            raise LandingError(f"no such file or folder: {f}")
    if not paths:
        raise LandingError(f"nothing to upload from {', '.join(files)}")
    done = []
    for p in paths:
        rel = f"{batch_date.isoformat()}/{source}/{p.name}"
        if store.exists(rel) and not overwrite:
            raise LandingError(
                f"{store.uri(rel)} already exists: a landed file is never replaced silently "
                "(use --overwrite to replace it; ingest then re-reads that batch)"
            )
        store.upload(rel, str(p))
        done.append(store.uri(rel))
    return done


def archive(landing, archive_store, batch: BatchInfo, ingested: dict[tuple[str, date], str]) -> str:
    """Move an ingested batch to the archive; refuse if any of its sources is not ingested
    as it stands now (a file added after ingest, say)."""
    day = batch.batch_date.isoformat()
    missing = [s for s in batch.sources if ingested.get((s, batch.batch_date)) != batch.fingerprint(s)]
    if missing:
        raise LandingError(f"batch {day} is not ingested as it stands ({', '.join(sorted(missing))}): run jobs/ingest.py first")
    if archive_store.exists(day):
        # an earlier archive of the same date: keep both, the new one under a suffix
        n = 1
        while archive_store.exists(f"{day}.{n}"):
            n += 1
        target = f"{day}.{n}"
    else:
        target = day
    if isinstance(landing, WebHdfsStore) and isinstance(archive_store, WebHdfsStore):
        landing.client.makedirs(archive_store.root)
        landing.client.rename(landing.uri(day), archive_store.uri(target))
    elif isinstance(landing, LocalStore) and isinstance(archive_store, LocalStore):
        os.makedirs(archive_store.root, exist_ok=True)
        os.rename(landing.uri(day), archive_store.uri(target))
    else:
        raise LandingError("landing zone and archive must be on the same file system")
    return archive_store.uri(target)
