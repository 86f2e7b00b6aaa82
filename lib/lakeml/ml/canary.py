"""Which entities a canary serves, and which version is in canary now.

The hash: an entity is in the canary when ``crc32(utf-8 of its id) % BUCKETS <
round(share * BUCKETS)``. Spark's ``crc32`` of a string column and Python's ``zlib.crc32``
of its UTF-8 bytes agree, so batch scoring (``lakeml.ml.score``, Spark) and the online
server (Python) split the entities the same way: an entity sees one model on every path.

The state, in the MLflow registry (what batch and online both read): a canary runs when
``scoring.canary.share > 0``, ``@challenger`` names a version other than ``@champion``,
and that version carries the tag ``lakeml.canary = running`` (set by the validation gate
when the challenger passed it; ``promoted`` or ``ended`` once the retraining policy judged
its live performance, ``lakeml.lifecycle.release``). A challenger that was only trained, or
was refused, has no such tag and is never served.

This lives in ``ml`` (not in ``lifecycle``, which re-exports it) because batch scoring,
one layer below the lifecycle, splits the entities with it; it imports nothing of Spark at
load time, so the scoring server (no JVM, no pyspark) applies the same rule from here.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from lakeml.core.config import UseCaseConfig

if TYPE_CHECKING:  # tracking imports mlflow.spark (pyspark): the scoring server imports this module without it
    from lakeml.core import tracking

BUCKETS = 10_000
TAG = "lakeml.canary"  # on a model version: running | promoted | ended
RUNNING, PROMOTED, ENDED = "running", "promoted", "ended"


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


def running(client, uc: UseCaseConfig) -> tracking.ModelRef | None:
    """The version serving the canary share now (reported under the alias ``challenger``),
    or None: no share configured, no challenger, the challenger is the champion, or it is
    not tagged ``lakeml.canary = running``. The rule the online server follows too."""
    from lakeml.core import tracking

    if uc.scoring.canary.share <= 0:
        return None
    challenger = tracking.get_alias(client, uc.model.name, tracking.CHALLENGER)
    if challenger is None:
        return None
    champion = tracking.get_alias(client, uc.model.name, tracking.CHAMPION)
    if champion is None or champion.version == challenger.version:
        return None
    if tracking.version_tags(client, uc.model.name, challenger.version).get(TAG) != RUNNING:
        return None
    return challenger
