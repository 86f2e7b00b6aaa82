"""The landing zone: where upstream exports arrive, one folder per arrival date.

    <landing>/<usecase>/<YYYY-MM-DD>/<source>/[<sub-folders>/]<files>

What a zone holds (``Batch``: an arrival date and its files per source, found by the one
walker of a source folder, ``walk``), and the file operations ingest and the demo data
need, given a Spark session and a path: each goes through the store of that path
(``lakeml.lake.stores.open_store``: the local disk, or Hadoop's FileSystem of the session),
so the same code works on a local folder and on ``hdfs://``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from pyspark.sql import SparkSession

from lakeml.core.errors import MissingDataError
from lakeml.lake.stores import DIRECTORY, FILE, Store, open_store

log = logging.getLogger(__name__)

BATCH_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class LandedFile:
    path: str  # with its scheme, as Spark's readers take it (file:/..., hdfs://...)
    size: int
    name: str = ""  # the path inside its source folder ("part-1.csv", "eu/part-1.csv"); default the file name
    mtime: int = 0  # last modification, ms since the epoch

    @property
    def rel(self) -> str:
        return self.name or self.path.rsplit("/", 1)[-1]


@dataclass
class Batch:
    """One arrival date: its files per source."""

    batch_date: date
    files: dict[str, list[LandedFile]] = field(default_factory=dict)

    @property
    def sources(self) -> dict[str, list[tuple[str, int]]]:
        """Per source, (path inside the source folder, size) of its files, sorted."""
        return {source: sorted((f.rel, f.size) for f in files) for source, files in self.files.items()}

    def fingerprint(self, source: str, with_times: bool = True) -> str:
        """Changes when a file of the source is added, removed, or changes size or modification
        time (a file replaced by another of the same size). ``with_times=False``: the
        fingerprint logged before times were part of it (names and sizes)."""
        h = hashlib.sha256()
        for f in sorted(self.files.get(source, []), key=lambda f: f.rel):
            h.update((f"{f.rel}:{f.size}:{f.mtime};" if with_times else f"{f.rel}:{f.size};").encode())
        return ("t:" if with_times else "") + h.hexdigest()[:16]

    def ingested(self, source: str, logged: dict[tuple[str, date], str]) -> bool:
        """Whether the source's files, as they stand, are the ones the ingest log recorded
        (``logged``: (source, batch date) -> fingerprint). A batch logged before times were
        part of the fingerprint is compared by names and sizes (not ingested again)."""
        was = logged.get((source, self.batch_date))
        if was is not None and not was.startswith("t:"):
            return was == self.fingerprint(source, with_times=False)
        return was == self.fingerprint(source)


def visible(name: str) -> bool:
    # Spark and Hadoop treat _ and . prefixed files as metadata (_SUCCESS, .crc)
    return not name.startswith(("_", "."))


# Files in sub-folders of a source folder (an export split by region, say) belong to the
# batch like the others; hidden ones (``_temporary``, ``.staging``) are not data.
def walk(store: Store, folder: str = "", prefix: str = "") -> list[LandedFile]:
    """The visible files under ``folder`` of ``store``, sub-folders included, each named by
    its path inside ``folder`` (``prefix`` before it); in name order, folder by folder."""
    out = []
    for e in sorted(store.list(folder)):
        if not visible(e.name):
            continue
        rel = f"{folder}/{e.name}" if folder else e.name
        if e.kind == DIRECTORY:
            out += walk(store, rel, f"{prefix}{e.name}/")
        elif e.kind == FILE:
            out.append(LandedFile(store.uri(rel), e.size, f"{prefix}{e.name}", e.mtime))
    return out


def batches(store: Store) -> list[Batch]:
    """Every arrival-date folder of the landing zone ``store``, oldest first."""
    out = []
    for day, kind, *_ in store.list():
        if not (kind == DIRECTORY and BATCH_DIR.match(day)):
            if visible(day):
                log.warning("%s: not an arrival-date folder (YYYY-MM-DD): not read", store.path(day))
            continue
        batch = Batch(date.fromisoformat(day))
        for source, skind, *_ in store.list(day):
            if skind == DIRECTORY:
                batch.files[source] = walk(store, f"{day}/{source}")
            elif visible(source):
                log.warning("%s: a file outside a source folder (<date>/<source>/<files>): not read", store.path(f"{day}/{source}"))
        out.append(batch)
    return sorted(out, key=lambda b: b.batch_date)


@dataclass(frozen=True)
class Refused:
    """An arrival-date folder ingest leaves in landing, and why."""

    folder: str
    batch_date: date
    reason: str


def today_utc() -> date:
    return datetime.now(UTC).date()


def future_limit(max_days_ahead: int, today: date | None = None) -> date:
    """The latest arrival date that is data: today (UTC) plus the tolerance."""
    return (today or today_utc()) + timedelta(days=max_days_ahead)


def refuse_future(batches: list[Batch], zone: str, max_days_ahead: int,
                  today: date | None = None) -> tuple[list[Batch], list[Refused]]:
    """``batches`` split into those dated at most ``max_days_ahead`` days after today (UTC)
    and the folders dated later (a mistyped year, a clock set wrong), which are not data."""
    today = today or today_utc()
    limit = future_limit(max_days_ahead, today)
    kept, refused = [], []
    for b in batches:
        if b.batch_date <= limit:
            kept.append(b)
        else:
            ahead = (b.batch_date - today).days
            refused.append(Refused(f"{zone.rstrip('/')}/{b.batch_date.isoformat()}", b.batch_date,
                                   f"dated {ahead} days after today ({today.isoformat()}, UTC); landing.max_days_ahead "
                                   f"is {max_days_ahead}: left in landing, not ingested"))
    return kept, refused


def list_batches(spark: SparkSession, landing_dir: str) -> list[Batch]:
    """Every arrival-date folder in the landing zone ``landing_dir``, oldest first."""
    return batches(open_store(landing_dir, spark))


def dated_batches(spark: SparkSession, zone: str, max_days_ahead: int, wanted: list[date] | None = None,
                  today: date | None = None) -> tuple[list[Batch], list[Refused]]:
    """The batches of ``zone`` that are data, oldest first, and the folders dated too far
    ahead (``refuse_future``); with ``wanted``, only those dates, and a ``MissingDataError``
    names any of them that is not there or is refused."""
    kept, refused = refuse_future(list_batches(spark, zone), zone, max_days_ahead, today)
    if wanted:
        asked = set(wanted)
        ahead = [r for r in refused if r.batch_date in asked]
        if ahead:
            raise MissingDataError("; ".join(f"{r.folder}: {r.reason}" for r in ahead))
        missing = asked - {b.batch_date for b in kept}
        if missing:
            raise MissingDataError(f"no landing batch for {', '.join(sorted(str(d) for d in missing))} under {zone}")
        kept = [b for b in kept if b.batch_date in asked]
    return kept, refused


def first_line(spark: SparkSession, path: str) -> str | None:
    """The first line of a text file (a CSV header), read on the driver; a ``.gz`` file is
    decompressed as Spark's reader does."""
    return open_store(path, spark).first_line()


def head_bytes(spark: SparkSession, path: str, n: int) -> bytes:
    """The first ``n`` bytes of a file (a format's magic number)."""
    return open_store(path, spark).head("", n)


def read_text(spark: SparkSession, path: str) -> str | None:
    """A small text file (a manifest), or None when it does not exist."""
    return open_store(path, spark).read_text()


def write_text(spark: SparkSession, path: str, text: str) -> None:
    open_store(path, spark).write_text("", text)


def delete(spark: SparkSession, path: str) -> None:
    """Remove a file or a folder with everything in it (nothing when it is absent)."""
    open_store(path, spark).delete()


def move_partitions_into_batches(
    spark: SparkSession, staging_dir: str, landing_dir: str, source: str, extension: str | None = None
) -> list[str]:
    """Turn ``staging/arrival_date=D/part-*`` into ``landing/D/<source>/part-*``.

    Each destination folder is replaced whole, so regenerating a batch never leaves
    files of an earlier run beside the new ones. Returns the batch dates moved.
    """
    staging, zone = open_store(staging_dir, spark), open_store(landing_dir, spark)
    moved = []
    for part, kind, *_ in staging.list():
        if kind != DIRECTORY or not part.startswith("arrival_date="):
            continue
        day = part.split("=", 1)[1]
        dest = f"{day}/{source}"
        zone.delete(dest)
        staging.move(part, dest, into=zone)
        for name, *_ in zone.list(dest):
            if name.endswith(".crc"):
                zone.delete(f"{dest}/{name}")  # Hadoop's checksums of a local write; upstream exports have none
            elif extension and visible(name) and "." in name:
                zone.move(f"{dest}/{name}", f"{dest}/{name.rsplit('.', 1)[0]}.{extension}")
        moved.append(day)
    staging.delete()
    return moved


def empty_zone_message(uc, zone: str, refused: list[Refused] = ()) -> str:
    """What to do about a landing zone that has never held anything it could ingest."""
    if refused:
        return f"nothing to ingest in {zone}: every batch folder is refused ({'; '.join(f'{r.folder}: {r.reason}' for r in refused)})"
    how = f"land files as {zone}/<YYYY-MM-DD>/<source>/<files> (./spark-submit.sh --usecase {uc.name} jobs/landing.py upload ...)"
    if uc.demo is not None:
        how += f", or write the demo data with ./spark-submit.sh --usecase {uc.name} jobs/generate.py"
    else:
        how += f"; {uc.name} has no demo data maker (no demo: in {uc.source_file})"
    return f"the landing zone {zone} of use case {uc.name} is empty and nothing was ever ingested: {how}"
