"""Landing-zone operations an operator runs by hand or from a scheduler, without Spark:
upload external files as batches, list batches (pending or ingested), archive a batch
once it is ingested.

Each works on a store of ``lakeml.lake.stores`` (``zone_stores``: on HDFS through WebHDFS
with the ``hdfs`` package, HdfsCLI; on a local landing zone through the file system) and
lists a zone as ingest does (``lakeml.lake.landing.batches``). Layout::

    <landing>/<usecase>/<YYYY-MM-DD>/<source>/<files>   pending or ingested
    <archive>/<usecase>/<YYYY-MM-DD>/<source>/<files>   moved here by `archive` once ingested

``<archive>`` is ``storage.archive`` of the env, by default a folder ``archive`` beside
the landing folder.

An upload is planned and checked whole before the first byte moves (:func:`plan_upload`,
:func:`conflicts`): a folder that is not a date, a source the use case does not have, a
file that already landed (without ``overwrite``) refuse the whole upload. Then the files
go up in parallel (:func:`put`), each written beside its target under a hidden name and
renamed into place, so ingest never reads half a file.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from lakeml.lake import landing
from lakeml.lake.landing import BATCH_DIR, Batch, visible
from lakeml.lake.stores import DIRECTORY, LandingError, LocalStore, Store

MAX_PROBLEMS_SHOWN = 20
LAYOUT = "<YYYY-MM-DD>/<source>/<files>"


# upload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One local file and where it lands."""

    local: Path
    batch_date: date
    source: str
    size: int
    name: str = ""  # its path inside the source folder (sub-folders kept); default the file's name

    @property
    def folder(self) -> str:
        return f"{self.batch_date.isoformat()}/{self.source}"

    @property
    def inner(self) -> str:
        return self.name or self.local.name

    @property
    def rel(self) -> str:
        return f"{self.folder}/{self.inner}"


@dataclass
class Uploaded:
    """What an upload did: per ``<date>/<source>`` folder its file names, and the totals."""

    zone: str
    folders: dict[str, list[str]] = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    workers: int = 1

    def as_dict(self) -> dict:
        return {"zone": self.zone, "folders": len(self.folders), "files": self.files, "bytes": self.bytes,
                "seconds": round(self.seconds, 3)}


def _as_date(name: str) -> date | None:
    try:
        return date.fromisoformat(name) if BATCH_DIR.match(name) else None
    except ValueError:  # 2026-13-01
        return None


def _children(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if visible(p.name))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _refusal(head: str, lines: list[str]) -> LandingError:
    """One error: the head line, then the lines (the first MAX_PROBLEMS_SHOWN), indented."""
    shown = lines[:MAX_PROBLEMS_SHOWN]
    more = [f"... and {len(lines) - len(shown)} more"] if len(lines) > len(shown) else []
    return LandingError("\n  ".join([head, *shown, *more]))


def plan_upload(
    paths: Iterable[str | Path],
    sources: Collection[str],
    source: str | None = None,
    batch_date: date | None = None,
    usecase: str = "",
) -> list[Planned]:
    """Every file to upload and where it lands, or a ``LandingError`` listing every problem.

    With ``source``: each path is a file, or a folder whose files (sub-folders kept as
    they are; no date folders) go to ``<batch_date or today>/<source>/``. Without: each path is a folder
    laid out as the landing zone, ``<YYYY-MM-DD>/<source>/<files>``, or one ``<YYYY-MM-DD>``
    folder of that layout. Names starting with ``.`` or ``_`` are skipped, as ingest does.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise LandingError("nothing to upload: name files or folders")
    if source is None and batch_date is not None:
        raise LandingError(
            f"--date goes with --source: without --source a folder is uploaded as laid out ({LAYOUT}), its dates are its folder names"
        )
    # every reason to refuse, gathered before anything moves; unknown sources once per name
    problems: list[str] = []
    unknown: dict[str, list[str]] = {}
    planned: list[Planned] = []

    def add_files(folder: Path, day: date, src: str) -> None:
        # sub-folders of a source folder are part of its batch (ingest reads them): kept as they are
        for f in landing.walk(LocalStore(str(folder))):
            planned.append(Planned(folder / f.name, day, src, f.size, f.name))

    def add_date_folder(folder: Path, day: date) -> None:
        for child in _children(folder):
            if not child.is_dir():
                problems.append(f"{child}: a file directly in a date folder; files go in {folder.name}/<source>/")
            elif child.name not in sources:
                unknown.setdefault(child.name, []).append(str(child))
            else:
                add_files(child, day, child.name)

    if source is not None and source not in sources:
        unknown[source] = [f"--source {source}"]
    for p in paths:
        if not p.exists():
            problems.append(f"{p}: no such file or folder")
        elif source is not None:
            if p.is_file():
                planned.append(Planned(p, batch_date or date.today(), source, p.stat().st_size))
                continue
            dated = [c.name for c in _children(p) if c.is_dir() and _as_date(c.name) is not None]
            if dated:
                problems.append(
                    f"{p}: has date folders ({', '.join(dated[:3])}{', ...' if len(dated) > 3 else ''}); with --source a folder's files "
                    f"go to one batch, to upload a folder laid out as {LAYOUT} leave out --source and --date"
                )
            else:
                add_files(p, batch_date or date.today(), source)
        elif p.is_file():
            problems.append(f"{p}: a file; upload single files with --source S [--date D], or folders laid out as {LAYOUT}")
        elif (day := _as_date(p.name)) is not None:
            add_date_folder(p, day)
        else:
            children = _children(p)
            if not children:
                problems.append(f"{p}: empty folder")
            for child in children:
                if not child.is_dir():
                    problems.append(f"{child}: a file outside a {LAYOUT} folder")
                elif (day := _as_date(child.name)) is None:
                    problems.append(f"{child}: not a date folder (YYYY-MM-DD); without --source a folder is uploaded as laid out: {LAYOUT}")
                else:
                    add_date_folder(child, day)
    seen: dict[str, Path] = {}
    for f in planned:
        if f.rel in seen:
            problems.append(f"{seen[f.rel]} and {f.local} would both land as {f.rel}")
        seen.setdefault(f.rel, f.local)
    of, known = (f"use case {usecase}" if usecase else "the use case"), ", ".join(sorted(sources))
    more = {n: f" (and {_plural(len(w) - 1, 'more folder')})" if len(w) > 1 else "" for n, w in unknown.items()}
    found = [f"{w[0]}{more[n]}: {n!r} is not a source of {of}; its sources: {known}" for n, w in unknown.items()] + problems
    if found:
        raise _refusal(f"nothing uploaded: {_plural(len(found), 'problem')} in {' '.join(str(p) for p in paths)}", found)
    if not planned:
        raise LandingError(f"nothing to upload: no files in {' '.join(str(p) for p in paths)}")
    return planned


def _pool_map(fn, items: list, workers: int) -> list:
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def conflicts(store: Store, planned: list[Planned]) -> list[str]:
    """The targets of ``planned`` that already exist in ``store``. Each existing ``<date>``
    and ``<date>/<source>`` folder is listed once (not a request per file): uploading
    new batches costs one listing of the zone."""
    present = {e.name for e in store.list("") if e.kind == DIRECTORY}
    days = sorted({f.batch_date.isoformat() for f in planned} & present)
    in_day = dict(zip(days, _pool_map(store.list, days, store.workers), strict=True))
    folders = sorted({
        f.folder for f in planned
        if any(e.name == f.source and e.kind == DIRECTORY for e in in_day.get(f.batch_date.isoformat(), []))
    })
    in_folder = dict(zip(folders, _pool_map(store.list, folders, store.workers), strict=True))
    top = [f for f in planned if "/" not in f.inner]
    nested = [f for f in planned if "/" in f.inner and f.folder in in_folder]  # rare: one request each
    return [store.path(f.rel) for f in top if any(e.name == f.inner for e in in_folder.get(f.folder, []))] + [
        store.path(f.rel) for f in nested if store.exists(f.rel)
    ]


def put(store: Store, planned: list[Planned], overwrite: bool = False, workers: int | None = None) -> Uploaded:
    """Upload planned files, ``workers`` at a time (default: the store's). The first failure
    stops the rest; the error says how many had landed."""
    workers = max(1, workers or store.workers)
    t0 = time.monotonic()
    done: list[Planned] = []
    lock = threading.Lock()
    failed = threading.Event()

    def one(f: Planned) -> None:
        if failed.is_set():
            return  # an upload failed: start no more
        try:
            store.put(f.rel, str(f.local), overwrite)
        except BaseException:
            failed.set()
            raise
        with lock:
            done.append(f)

    pool = ThreadPoolExecutor(max_workers=min(workers, len(planned)))
    try:
        futures = [pool.submit(one, f) for f in planned]
        wait(futures, return_when=FIRST_EXCEPTION)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    errors = [e for fut in futures if not fut.cancelled() and (e := fut.exception()) is not None]
    if errors:
        raise LandingError(
            f"upload to {store.location} failed: {errors[0]}; {len(done)} of {len(planned)} files had landed "
            "(the same command with --overwrite lands the rest, replacing those with the same files)"
        ) from errors[0]
    out = Uploaded(store.location, workers=min(workers, len(planned)), seconds=time.monotonic() - t0)
    for f in sorted(done, key=lambda f: f.rel):
        out.folders.setdefault(f.folder, []).append(f.inner)
        out.files += 1
        out.bytes += f.size
    return out


def upload(
    store: Store,
    paths: Iterable[str | Path],
    sources: Collection[str],
    source: str | None = None,
    batch_date: date | None = None,
    overwrite: bool = False,
    usecase: str = "",
    workers: int | None = None,
) -> Uploaded:
    """Plan, check, then upload (see :func:`plan_upload`): nothing moves unless every file
    can land; a file that already landed is refused unless ``overwrite``."""
    planned = plan_upload(paths, sources, source, batch_date, usecase)
    if not overwrite:
        taken = conflicts(store, planned)
        if taken:
            raise _refusal(
                f"nothing uploaded: {_plural(len(taken), 'file')} already landed, and a landed file is never replaced silently "
                "(--overwrite replaces them; ingest then reads their batches again):",
                taken,
            )
    return put(store, planned, overwrite, workers)


# list / archive ---------------------------------------------------------------------------


def list_batches(store: Store) -> list[Batch]:
    """Every batch of the landing zone ``store``, oldest first, listed as ingest lists it."""
    return landing.batches(store)


def archive(zone: Store, archive_zone: Store, batch: Batch, logged: dict[tuple[str, date], str]) -> str:
    """Move an ingested batch of ``zone`` to ``archive_zone`` (on the same file system);
    refuse if any of its sources is not ingested as it stands now (a file added after
    ingest, say). ``logged``: the ingest log's fingerprints. Returns where it went."""
    day = batch.batch_date.isoformat()
    missing = [s for s in batch.files if not batch.ingested(s, logged)]
    if missing:
        raise LandingError(f"batch {day} is not ingested as it stands ({', '.join(sorted(missing))}): run jobs/ingest.py first")
    if archive_zone.exists(day):
        # an earlier archive of the same date: keep both, the new one under a suffix
        n = 1
        while archive_zone.exists(f"{day}.{n}"):
            n += 1
        target = f"{day}.{n}"
    else:
        target = day
    zone.move(day, target, into=archive_zone)
    return archive_zone.path(target)
