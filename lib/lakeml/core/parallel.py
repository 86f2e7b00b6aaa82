"""Small Spark actions side by side, from driver threads.

A daily run is mostly many small jobs and Delta commits whose time is driver latency
(planning, the Delta log, the metastore) more than executor work. Independent ones (one per
source, one per table) run from a few threads so that one's latency overlaps another's
work. Each thread gets the caller's Spark job group and description, so the Spark UI and
the benchmark's profile still attribute its jobs to the calling stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from pyspark.sql import SparkSession

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 8
_PROPS = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel", "spark.scheduler.pool")


def _with_props(spark: SparkSession, fn: Callable[[T], R]) -> Callable[[T], R]:
    sc = spark.sparkContext
    props = {k: sc.getLocalProperty(k) for k in _PROPS}

    def call(item):
        for k, v in props.items():
            if v is not None:
                sc.setLocalProperty(k, v)
        return fn(item)

    return call


def start(spark: SparkSession, fn: Callable[[], R]) -> Future:
    """``fn()`` from a thread of its own, started now; the caller goes on and takes the
    result from the future when it needs it."""
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(_with_props(spark, lambda _: fn()), None)
    finally:
        pool.shutdown(wait=False)


def submit_all(spark: SparkSession, fn: Callable[[T], R], items: Iterable[T], max_threads: int = MAX_THREADS) -> list[Future]:
    """``fn(item)`` for every item, from up to ``max_threads`` threads; the futures in the
    order of ``items`` (all finished when this returns)."""
    items = list(items)
    if not items:
        return []
    call = _with_props(spark, fn)
    if len(items) == 1:
        f: Future = Future()
        try:
            f.set_result(fn(items[0]))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(e)
        return [f]
    with ThreadPoolExecutor(max_workers=max(1, min(max_threads, len(items)))) as pool:
        return [pool.submit(call, i) for i in items]


def map_all(spark: SparkSession, fn: Callable[[T], R], items: Iterable[T], max_threads: int = MAX_THREADS) -> list[R]:
    """``[fn(item) for item in items]``, side by side; the first error (in item order) is raised
    after every call has finished."""
    futures = submit_all(spark, fn, items, max_threads)
    for f in futures:
        if f.exception() is not None:
            raise f.exception()
    return [f.result() for f in futures]
