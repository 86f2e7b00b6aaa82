"""Per-file conservation: every line (Parquet: row) of every landed file, counted apart
from the reader, is in exactly one row the reader gave (accepted, quarantined, blank or a
header), or the ingest of the source stops naming the files (a bug, never a data problem).
"""

from __future__ import annotations

from datetime import date

from lakeml.core.config import SourceSpec
from lakeml.lake import landing, readers


def check(spec: SourceSpec, source: str, listed: dict[str, tuple[date, landing.LandedFile]], per_file: list,
               in_files: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """Per listed file (by real path): (rows read, accepted, quarantined), once it is proven
    that every line of every file (``in_files``, counted from the files apart from the
    reader) is a row of the reader's output: accepted, quarantined, or no record (a blank
    line, a header). A file with lines missing, or lines from a file that is not one of the
    listed (a path read back differently), fail the ingest with the file's name before
    anything of the source is written."""
    by_path = {readers.real_path(p): f for p, (_, f) in listed.items()}
    problems = []
    counts: dict[str, tuple[int, int, int]] = {}
    framed: dict[str, int | None] = {}
    for r in per_file:
        path = r["_source_file"]
        if path not in by_path or r["_batch_date"] is None:
            problems.append(f"{path}: {r['lines']} lines read from a file that is not one of the listed ones")
            continue
        read = r["records"] - r["skipped"]
        counts[path] = (read, read - r["bad"], r["bad"])
        framed[path] = None if r["whole"] else r["lines"]  # a file quarantined whole (unreadable) has no lines to compare
    for path in by_path:
        counts.setdefault(path, (0, 0, 0))
        if path in framed and framed[path] is None:
            continue
        n, got = in_files.get(path, 0), framed.get(path, 0)
        if n != got:
            unit = "rows" if spec.format == "parquet" else "lines"
            problems.append(f"{path}: {n} {unit} in the file, {got} read")
    if problems:
        raise readers.ConservationError(
            f"{source}: rows of {len(problems)} landed file(s) would be neither accepted nor quarantined; "
            f"nothing of {source} was written:\n  "
            + "\n  ".join(problems)
        )
    return counts
