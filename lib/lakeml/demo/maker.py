"""Running a use case's demo data maker (``demo.maker`` in its conf).

A maker is a Python file of the use case folder with ``make(spark, spec)`` returning, per
source, a DataFrame with the source's declared columns and ``arrival_date``. It must build
its rows from Spark column expressions (``lakeml.demo.draws``), never Python UDFs: it is
loaded on the driver only, from the conf folder, so executors cannot import it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from types import ModuleType

from pyspark.sql import DataFrame, SparkSession

from lakeml.core.config import DemoSpec, UseCaseConfig
from lakeml.core.errors import ConfigError, UsageError
from lakeml.demo import writer
from lakeml.lake import landing

log = logging.getLogger(__name__)

MANIFEST = "_demo.json"


def spec_of(uc: UseCaseConfig, **overrides) -> DemoSpec:
    """The use case's demo spec with ``overrides`` (None values ignored); a clear error when
    the use case has no maker."""
    if uc.demo is None:
        raise UsageError(
            f"use case {uc.name} has no demo data maker (no demo: in {uc.source_file}): land its files with "
            f"./spark-submit.sh --usecase {uc.name} jobs/landing.py upload ..."
        )
    return uc.demo.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def load(uc: UseCaseConfig, spec: DemoSpec | None = None) -> ModuleType:
    """The maker module of the use case."""
    spec = spec or spec_of(uc)
    path = Path(uc.conf_dir) / spec.maker
    mod_spec = importlib.util.spec_from_file_location(f"lakeml_demo_maker_{uc.name}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ConfigError(f"{uc.source_file}: demo.maker: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    if not callable(getattr(module, "make", None)):
        raise ConfigError(f"{path}: a demo maker needs a function make(spark, spec) -> {{source: DataFrame}}")
    return module


def frames(spark: SparkSession, uc: UseCaseConfig, spec: DemoSpec | None = None) -> dict[str, DataFrame]:
    """What the maker makes: per source, its rows and ``arrival_date`` (nothing written)."""
    spec = spec or spec_of(uc)
    return load(uc, spec).make(spark, spec)


def _fingerprint(uc: UseCaseConfig, spec: DemoSpec) -> dict:
    code = (Path(uc.conf_dir) / spec.maker).read_bytes()
    return {"spec": spec.model_dump(mode="json"), "maker_sha256": hashlib.sha256(code).hexdigest()}


def run(spark: SparkSession, uc: UseCaseConfig, zone: str, spec: DemoSpec | None = None, force: bool = False) -> dict:
    """Write the demo data into the landing zone ``zone`` unless it already holds this exact
    data set (same spec, same maker code). A data set written again (``force``, or another
    spec) replaces the earlier one whole: the batch folders the earlier generation wrote are
    removed first, so none of its days is left behind. Returns rows written per source."""
    spec = spec or spec_of(uc)
    manifest = f"{zone}/{MANIFEST}"
    want = _fingerprint(uc, spec)
    have = landing.read_text(spark, manifest)
    old = json.loads(have) if have else None
    if old is not None and not force and old.get("complete", True) and {k: old.get(k) for k in want} == want:
        log.info("landing zone %s already holds this demo data set (--force rewrites it)", zone)
        return {"landing": zone, "skipped": True, **old}
    # first mark the zone as being written (a crash from here on is cleaned up by the next
    # run), then take the earlier generation's days away
    landing.write_text(spark, manifest, json.dumps({"complete": False, "batches": (old or {}).get("batches")}, indent=2))
    if old is not None:
        _remove_generation(spark, uc, zone, old.get("batches") if old.get("complete", True) else None)
    written: set[str] = set()
    try:
        counts = writer.write(spark, uc, spec, frames(spark, uc, spec), zone, written)
    finally:
        spark.catalog.clearCache()  # what the maker cached to write several sources from one frame
    batches = sorted(written)
    landing.write_text(spark, manifest, json.dumps({**want, "complete": True, "rows": counts, "batches": batches}, indent=2))
    log.info("demo data of %s in %s: %s .. %d days", uc.name, zone, spec.start_date, spec.days)
    limit = landing.future_limit(uc.landing.max_days_ahead)
    ahead = [b for b in batches if b > limit.isoformat()]
    if ahead:
        log.warning("demo data: %d batch folders (%s .. %s) are dated after today (UTC) + landing.max_days_ahead: ingest leaves "
                    "them in landing until their day comes (an earlier --start-date or fewer --days makes them data now)",
                    len(ahead), ahead[0], ahead[-1])
    return {"landing": zone, "skipped": False, **want, "rows": counts}


def _remove_generation(spark: SparkSession, uc: UseCaseConfig, zone: str, batches: list[str] | None) -> None:
    """Remove the sources' folders of the batches an earlier generation wrote (``batches``;
    None when it did not record them or did not finish: every batch of the zone)."""
    days = set(batches) if batches is not None else None
    removed = 0
    for b in landing.list_batches(spark, zone):
        if days is not None and str(b.batch_date) not in days:
            continue
        for source in set(b.files) & set(uc.sources):
            landing.delete(spark, f"{zone}/{b.batch_date}/{source}")
        if not set(b.files) - set(uc.sources):
            landing.delete(spark, f"{zone}/{b.batch_date}")
        removed += 1
    if removed:
        log.info("landing zone %s: the earlier demo data set's %d batch folders removed", zone, removed)
