"""Which entities a canary serves: a deterministic hash share, the same in batch (Spark) and
online (Python), so a customer sees one model on every path.

An entity is in the canary when ``crc32(utf-8 of its id) % BUCKETS < round(share * BUCKETS)``:
Spark's ``crc32`` of a string column and Python's ``zlib.crc32`` of its UTF-8 bytes agree.
"""

from __future__ import annotations

import zlib

BUCKETS = 10_000


def cutoff(share: float) -> int:
    return int(round(share * BUCKETS))


def bucket(entity: str) -> int:
    return zlib.crc32(str(entity).encode("utf-8")) % BUCKETS


def in_canary(entity: str, share: float) -> bool:
    return bucket(entity) < cutoff(share)


def in_canary_col(col, share: float):
    """The same test as a Spark column expression over the entity column ``col``."""
    from pyspark.sql import functions as F

    return (F.crc32(F.col(col).cast("string")) % BUCKETS) < F.lit(cutoff(share))
