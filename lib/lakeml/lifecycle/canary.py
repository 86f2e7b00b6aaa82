"""Which entities a canary serves (a deterministic hash share, the same in batch and online)
and which version is in canary now: ``lakeml.ml.canary``, re-exported here, where the
lifecycle and the online server look for it. How a canary starts, is judged and ends:
``lakeml.lifecycle.release``.

An entity is in the canary when ``crc32(utf-8 of its id) % BUCKETS < round(share * BUCKETS)``:
Spark's ``crc32`` of a string column and Python's ``zlib.crc32`` of its UTF-8 bytes agree.
The online server serves ``@challenger`` to the canary share exactly when ``running``
returns it (share > 0, ``@challenger`` is not ``@champion`` and is tagged
``lakeml.canary = running``).
"""

from __future__ import annotations

from lakeml.ml.canary import BUCKETS as BUCKETS
from lakeml.ml.canary import ENDED as ENDED
from lakeml.ml.canary import PROMOTED as PROMOTED
from lakeml.ml.canary import RUNNING as RUNNING
from lakeml.ml.canary import TAG as TAG
from lakeml.ml.canary import bucket as bucket
from lakeml.ml.canary import cutoff as cutoff
from lakeml.ml.canary import in_canary as in_canary
from lakeml.ml.canary import in_canary_col as in_canary_col
from lakeml.ml.canary import running as running
