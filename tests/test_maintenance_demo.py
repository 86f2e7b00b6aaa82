"""The maintenance demo's data maker (conf/maintenance/demo.py): deterministic, with the
planted signal (frail machines fail more, and again after a repair; sensors drift before a
failure and are back to normal after the repair), delivered off the snapshot schedule; and
how lakeml.demo lands it (JSON lines, CSV, Parquet; nothing lost)."""

from datetime import timedelta

import pytest
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from conftest import CONF
from lakeml import features
from lakeml.core.config import load_usecase
from lakeml.demo import maker
from lakeml.lake import ingest, landing
from lakeml.lake.readers import read_raw


@pytest.fixture(scope="module")
def muc():
    """The maintenance use case (conf/maintenance)."""
    return load_usecase(CONF, "maintenance")


@pytest.fixture(scope="module")
def small(muc):
    # the history (180 days of work orders and failures) comes on top of the 84 days
    return maker.spec_of(muc, entities=150, days=84, seed=11, bad_row_rate=0.0)


@pytest.fixture(scope="module")
def made(spark, muc, small):
    frames = {k: v.persist() for k, v in maker.frames(spark, muc, small).items()}
    yield frames
    for df in frames.values():
        df.unpersist()
    spark.catalog.clearCache()


def _differ(a: DataFrame, b: DataFrame) -> int:
    return a.exceptAll(b).count() + b.exceptAll(a).count()


def test_same_arguments_same_rows_whatever_the_partitioning_other_seed_other_rows(spark, muc, small, made):
    old = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", "7")
    try:
        again = maker.frames(spark, muc, small)
        diffs = {src: _differ(made[src], again[src]) for src in made}
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", old)
    assert diffs == {"machines": 0, "sensor_readings": 0, "maintenance_logs": 0, "failures": 0}
    assert made["sensor_readings"].count() > 20_000 and made["failures"].count() > 100
    other = maker.frames(spark, muc, small.model_copy(update={"seed": small.seed + 1}))
    same_failures = made["failures"].join(other["failures"], ["machine_id", "failed_at"]).count()
    assert same_failures < 0.05 * made["failures"].count()
    same_readings = made["sensor_readings"].join(other["sensor_readings"], ["machine_id", "read_at", "vibration_mm_s"]).count()
    assert same_readings < 0.01 * made["sensor_readings"].count()


def test_ids_are_bigints_beyond_32_bits_and_the_registry_sends_moves_again(made):
    m = made["machines"]
    assert dict(m.dtypes)["machine_id"] == "bigint"
    assert m.agg(F.min("machine_id")).first()[0] > 2**31
    versions = m.groupBy("machine_id").agg(F.count(F.lit(1)).alias("n"), F.countDistinct("site").alias("sites"),
                                           F.min("arrival_date").alias("first"), F.max("arrival_date").alias("last"))
    moved = versions.where("n > 1")
    # a moved machine is sent again later with another site; nobody is sent more than twice
    assert moved.count() > 5
    assert moved.where("n != 2 OR sites != 2 OR last <= first").count() == 0
    assert versions.agg(F.max("n")).first()[0] == 2


def test_frail_machines_fail_more_and_machines_fail_again_after_a_repair(spark, muc):
    generate = maker.load(muc)
    g = maker.spec_of(muc, entities=3000, days=120, seed=5)
    p = generate.params(g)
    mach = generate.machines(spark, g, p).persist()
    # failures past the last day are simulated for their warning ramps, never reported
    fails = generate.failures_of(mach, g, p).where(F.col("failed_at") < F.lit(g.start_date + timedelta(days=g.days)).cast("timestamp"))
    per = mach.join(fails.groupBy("idx").agg(F.count(F.lit(1)).alias("failures")), "idx", "left").na.fill(0, ["failures"]).persist()
    days = g.days + p["history_days"]
    by_model = {r.model: r.rate for r in per.groupBy("model").agg((F.avg("failures") / days).alias("rate")).collect()}
    # the hidden rule: compressors (CX-300) fail about twice as often as PX-200 pumps
    assert by_model["CX-300"] > 1.5 * by_model["PX-200"], by_model
    old = per.where(F.col("installed_on") < F.date_sub(F.lit(g.start_date), 8 * 365)).agg(F.avg("failures")).first()[0]
    young = per.where(F.col("installed_on") >= F.date_sub(F.lit(g.start_date), 2 * 365)).agg(F.avg("failures")).first()[0]
    assert old > 1.3 * young
    overall = per.agg(F.avg("failures")).first()[0] / days
    assert 1 / 250 < overall < 1 / 70, 1 / overall  # a failure every ~4 months per machine
    # failures recur: most machines that failed failed again (repaired, they run on)
    failed = per.where("failures > 0")
    assert failed.where("failures >= 2").count() > 0.5 * failed.count()
    # never two failures of one machine while it is down for the repair of the first
    w = fails.withColumn("prev_up", F.lag("up_at").over(Window.partitionBy("idx").orderBy("failed_at")))
    assert w.where(F.col("failed_at") < F.col("prev_up")).count() == 0
    per.unpersist()
    mach.unpersist()


def test_sensors_drift_before_a_failure_and_are_normal_after_the_repair(made):
    r = made["sensor_readings"].withColumn("t", F.unix_seconds("read_at"))
    baseline = r.groupBy("machine_id").agg(F.avg("vibration_mm_s").alias("vib0"), F.avg("temperature_c").alias("temp0"))
    f = made["failures"].select("machine_id", F.unix_seconds("failed_at").alias("ft"), "component")
    day = 86400
    # per reading: days to the next failure and since the last one (within 40 days)
    near = (
        r.join(f, "machine_id", "left")
        .groupBy("machine_id", "read_at", "vibration_mm_s", "temperature_c")
        .agg(
            F.min(F.when((F.col("ft") > F.col("t")) & (F.col("ft") - F.col("t") < 40 * day),
                         (F.col("ft") - F.col("t")) / day)).alias("to_next"),
            F.min(F.when((F.col("ft") <= F.col("t")) & (F.col("t") - F.col("ft") < 40 * day),
                         (F.col("t") - F.col("ft")) / day)).alias("since_last"),
        )
        .join(baseline, "machine_id")
        .withColumn("vib", F.col("vibration_mm_s") / F.col("vib0"))
        .withColumn("temp", F.col("temperature_c") - F.col("temp0"))
        .persist()
    )

    def mean(where: str) -> tuple[float, float, int]:
        row = near.where(where).agg(F.avg("vib"), F.avg("temp"), F.count(F.lit(1))).first()
        return row[0], row[1], row[2]

    before = mean("to_next < 3 AND since_last IS NULL")
    quiet = mean("to_next IS NULL AND since_last IS NULL")
    after = mean("since_last BETWEEN 4 AND 12 AND to_next IS NULL")
    near.unpersist()
    assert before[2] > 100 and quiet[2] > 5000 and after[2] > 100, (before, quiet, after)
    # in the last 3 days before a failure: vibration ~1.4x the machine's normal, 3-4 C warmer
    assert before[0] > 1.25 * quiet[0], (before, quiet)
    assert before[1] > quiet[1] + 2.0, (before, quiet)
    # after the repair: no longer raised (the ramp is reset; the machine's mean includes its
    # ramps, so a freshly repaired machine reads a little below it)
    assert after[0] < 1.02 * quiet[0] and after[1] < quiet[1] + 0.5, (after, quiet)


def _dates(df: DataFrame) -> list:
    return sorted(r[0] for r in df.select("arrival_date").distinct().collect())


def test_batches_arrive_off_the_snapshot_schedule(muc, small, made):
    start = small.start_date
    offsets = {src: [(d - start).days for d in _dates(df)] for src, df in made.items()}
    # telemetry: a drop every 3 days with the readings of the days before it
    assert offsets["sensor_readings"] == list(range(3, small.days + 1, 3))
    # failure reports come with the telemetry drops; the history in the first delivery
    assert set(offsets["failures"]) <= {0, *offsets["sensor_readings"]} and offsets["failures"][0] == 0
    # work orders: the history on the first day, then a weekly export 4 days into the week
    assert offsets["maintenance_logs"] == [0, *range(4, small.days + 1, 7)]
    # the registry: everything on the first day, then weekly deltas 2 days into the week
    assert offsets["machines"][0] == 0 and {o % 7 for o in offsets["machines"][1:]} == {2}
    lags = (made["sensor_readings"].select(F.datediff("arrival_date", F.to_date("read_at")).alias("lag"))
            .agg(F.min("lag"), F.max("lag")).first())
    assert tuple(lags) == (1, 3)
    late = made["failures"].where(F.col("failed_at") >= F.lit(start).cast("timestamp"))
    lags = late.select(F.datediff("arrival_date", F.to_date("failed_at")).alias("lag")).agg(F.min("lag"), F.max("lag")).first()
    assert lags[0] >= 1 and lags[1] <= 5 and lags[1] >= 3, tuple(lags)
    # the snapshot schedule (every 7 days from day 56): of its dates before the newest batch,
    # only day 63 has a batch of its own (a telemetry drop)
    every = sorted({d for df in made.values() for d in _dates(df)})
    snaps = muc.features.snapshots
    scheduled = features.snapshot_dates(every[0], every[-1], snaps.every_days, snaps.first_after_days)[:-1]
    assert [(d - start).days for d in scheduled] == [56, 63, 70, 77]
    assert [(d - start).days for d in scheduled if d in set(every)] == [63]


def _bronze(muc, made) -> dict[str, DataFrame]:
    return {
        name: made[name].select(
            *[F.col(c).cast(cs.type).alias(c) for c, cs in spec.columns.items()],
            F.col("arrival_date").alias("_batch_date"),
            F.lit("demo").alias("_source_file"),
        )
        for name, spec in muc.sources.items()
    }


def test_the_label_counts_every_failure_in_the_horizon_and_waits_for_late_reports(spark, muc, small, made):
    frames = _bronze(muc, made)
    start = small.start_date
    dates = [start + timedelta(days=d) for d in (56, 63, 70, 77)]
    newest = max(d for df in made.values() for d in _dates(df))
    assert newest == start + timedelta(days=84)  # a telemetry drop
    observed = newest - timedelta(days=muc.label.delay_days)
    labels = features.build_labels(spark, muc, dates, observed, frames=frames).persist()
    h = muc.label.horizon_days
    fail = made["failures"].select("machine_id", F.to_date("failed_at").alias("day"))
    expected = (
        labels.select("machine_id", "as_of_date")
        .join(fail, "machine_id", "left")
        .groupBy("machine_id", "as_of_date")
        .agg(F.max(((F.col("day") >= F.col("as_of_date")) & (F.col("day") < F.date_add("as_of_date", h))).cast("int")).alias("y"))
        .withColumn("y", F.when(F.date_add("as_of_date", h) <= F.lit(observed), F.coalesce("y", F.lit(0))))
    )
    got = labels.select("machine_id", "as_of_date", F.col(muc.label.column).alias("y"))
    assert _differ(got, expected) == 0
    rates = {str(r.as_of_date): (r.n, r.rate)
             for r in labels.groupBy("as_of_date").agg(F.count(F.lit(1)).alias("n"), F.avg(muc.label.column).alias("rate")).collect()}
    # day 56 and 63: observed (14 days + 4 days of reporting delay before day 84); 70 and 77: not yet
    assert [rates[str(d)][1] is None for d in dates] == [False, False, True, True]
    assert 0.04 < rates[str(dates[0])][1] < 0.25, rates
    assert min(n for n, _ in rates.values()) > 120
    labels.unpersist()


def test_landing_layout_formats_and_no_row_lost(spark, muc, tmp_path):
    g = maker.spec_of(muc, entities=40, days=20, seed=3, bad_row_rate=0.02)
    land = str(tmp_path / "landing")
    out = maker.run(spark, muc, land, g)
    assert out["skipped"] is False and out["rows"]["machines"] > 30
    batches = landing.list_batches(spark, land)
    assert batches[0].batch_date == g.start_date and batches[-1].batch_date <= g.start_date + timedelta(days=20)
    ext = {src: {f.path.rsplit("/", 1)[-1].rsplit(".", 1)[-1] for b in batches for f in b.files.get(src, [])} for src in muc.sources}
    assert ext == {"machines": {"jsonl"}, "sensor_readings": {"csv"}, "maintenance_logs": {"parquet"}, "failures": {"csv"}}
    # one folder per arrival date: telemetry every third day
    assert [(b.batch_date - g.start_date).days for b in batches if b.files.get("sensor_readings")] == [3, 6, 9, 12, 15, 18]
    csv = next(f.path for b in batches for f in b.files.get("sensor_readings", []))
    assert landing.first_line(spark, csv) == "machine_id,read_at,temperature_c,vibration_mm_s,pressure_bar,rpm"
    # every written row is read back by ingest's reader: accepted or quarantined, none lost
    counts, schemas = {}, {}
    for src, spec in muc.sources.items():
        files = [f.path for b in batches for f in b.files.get(src, [])]
        v = ingest.validate(read_raw(spark, spec, files), spec).where(F.col("_skip").isNull())  # records, not headers
        row = v.agg(F.count(F.lit(1)).alias("read"), F.count("_reason").alias("bad")).first()
        counts[src] = (row.read, row.read - row.bad, row.bad)
        schemas[src] = ingest.accepted_rows(v, spec).schema["machine_id"].dataType
    assert {src: c[0] for src, c in counts.items()} == out["rows"]
    assert sum(c[2] for c in counts.values()) > 0  # the damaged share lands in quarantine
    assert min(c[1] / c[0] for c in counts.values()) > 0.8
    assert set(schemas.values()) == {T.LongType()}


def test_the_drift_hook_shifts_the_telemetry_and_raises_the_failure_rate(spark, muc):
    generate = maker.load(muc)
    g = maker.spec_of(muc, entities=1500, days=120, seed=5)
    drifted = g.model_copy(update={"drift_start": g.start_date + timedelta(days=60), "drift_strength": 1.0})
    p = generate.params(g)
    mach = generate.machines(spark, g, p).persist()
    start, mid, end = (F.lit(g.start_date + timedelta(days=d)).cast("timestamp") for d in (0, 60, 120))

    def rates(spec) -> tuple[int, int]:
        f = generate.failures_of(mach, spec, p)
        return (f.where((F.col("failed_at") >= start) & (F.col("failed_at") < mid)).count(),
                f.where((F.col("failed_at") >= mid) & (F.col("failed_at") < end)).count())

    (calm_before, calm_after), (before, after) = rates(g), rates(drifted)
    assert before == calm_before  # nothing changes before drift_start
    assert after > 1.6 * calm_after, (calm_after, after)  # rate x(1 + strength)
    mach.unpersist()
    small = maker.spec_of(muc, entities=30, days=40, seed=5)
    temps = {}
    for name, spec in (("calm", small),
                       ("drifted", small.model_copy(update={"drift_start": small.start_date + timedelta(days=20), "drift_strength": 1.0}))):
        r = (maker.frames(spark, muc, spec)["sensor_readings"]
             .where(F.col("read_at") >= F.lit(spec.start_date + timedelta(days=20)).cast("timestamp")))
        temps[name] = r.agg(F.avg("temperature_c"), F.avg("vibration_mm_s")).first()
    spark.catalog.clearCache()
    assert 2.0 < temps["drifted"][0] - temps["calm"][0] < 4.5, temps  # +3 C per unit of strength
    assert 1.1 < temps["drifted"][1] / temps["calm"][1] < 1.5, temps  # x(1 + 0.2 * strength), more ramps
