"""The maintenance demo's data maker: a synthetic fleet of industrial machines, in Spark.

Every random draw is a hash of (seed, a salt, the row's natural key), not a stateful
generator, so the data is the same for the same arguments whatever the partitioning,
cluster size or order of evaluation.

The hidden rule:

- each machine has a failure rate set by its model, its site, its age and a personal
  frailty; failures follow a renewal process on that rate: the machine fails, is repaired
  (1-3 days down, a ``repair`` work order) and runs on, so it can fail again;
- most failures announce themselves: over a 7-21 day ramp before the failure the sensors
  drift, depending on the failing component (a bearing raises vibration, a seal widens
  the pressure spread, a motor runs hot and slower); electrical failures and some sudden
  ones give no warning;
- false alarms: some degradations are caught by an inspection and fixed (a
  ``part_replacement`` work order ends the ramp, no failure), and sensors glitch now and
  then (a day of high vibration);
- routine inspections every ~30 days.

History: the fleet's maintenance system goes back ``history_days`` before the start date;
the first delivery (on the start date) carries those work orders and failure reports, so
the 90- and 180-day windows of the features are full from the first snapshot on.
Telemetry starts on the start date.

Delivery (not on the feature snapshot schedule): telemetry and failure reports come in a
drop every ``telemetry_every_days`` days (readings of the days before it; failures are
reported 0-2 days after they happen, so up to 5 days late); maintenance work orders come
in a weekly CMMS export (``cmms_every_days``, ``cmms_offset_days`` after the start); the
asset registry sends all machines on the first day, then weekly deltas: new machines and
machines moved to another site.

Drift hook: from ``drift_start`` on, temperatures read ``3 * drift_strength`` degrees
higher, vibration ``1 + 0.2 * drift_strength`` times higher, and the failure rate is
``1 + drift_strength`` times higher.

``make`` returns every source's rows with their arrival date; ``lakeml.demo`` writes them
in the formats conf/maintenance/usecase.yaml declares and damages a ``bad_row_rate`` share.
Built from Spark column expressions only (no Python UDF): executors never import this file.
"""

from __future__ import annotations

import math
from datetime import timedelta

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from lakeml.core.config import DemoSpec
from lakeml.core.errors import ConfigError
from lakeml.demo.draws import choice, lookup, normal, uniform

# name, share, rated power kW, vibration mm/s, temperature C, pressure bar, rpm, failure log-rate
MODELS = [
    ("PX-100", 0.35, 15.0, 2.0, 55.0, 6.0, 2900.0, 0.0),
    ("PX-200", 0.25, 37.0, 2.4, 58.0, 8.0, 1450.0, -0.35),
    ("CX-300", 0.25, 75.0, 3.2, 68.0, 10.0, 1480.0, 0.45),
    ("TX-500", 0.15, 250.0, 4.5, 78.0, 14.0, 3000.0, 0.25),
]
# name, share, ambient temperature offset C, failure log-rate
SITES = [
    ("plant_north", 0.30, -3.0, -0.1),
    ("plant_south", 0.25, 4.0, 0.25),
    ("plant_east", 0.25, 0.0, 0.0),
    ("plant_west", 0.20, 1.5, 0.1),
]
# name, share, then what a fully degraded component does to the sensors: vibration x(1 + a),
# temperature + b C, pressure spread x(1 + c), rpm x(1 - d); electrical failures give no warning
COMPONENTS = [
    ("bearing", 0.45, 1.4, 5.0, 0.0, 0.0),
    ("seal", 0.20, 0.2, 4.0, 2.5, 0.0),
    ("motor", 0.20, 0.4, 14.0, 0.0, 0.05),
    ("electrical", 0.15, 0.0, 0.0, 0.0, 0.0),
]
WARNED = COMPONENTS[:3]  # what a caught degradation (a false alarm) can be

ID_BASE = 7_300_000_000  # asset numbers: beyond 32 bits on purpose (machine_id is a bigint)
WORK_ORDER_BASE = 900_000_000_000
BASE_RATE = 1 / 230.0  # failures per operating day at log-rate 0
MAX_RATE = 1 / 20.0
INSPECTION_EVERY = 30
DAY = 86400
# failures and caught degradations this many days past the last day are simulated too: their
# warning ramps have begun inside the window (they are never reported)
TAIL_DAYS = 30

DEFAULTS = {
    "readings_per_day": 3,
    "telemetry_every_days": 3,  # telemetry and failure reports
    "cmms_every_days": 7,  # maintenance work orders
    "cmms_offset_days": 4,
    "registry_every_days": 7,  # asset registry deltas
    "registry_offset_days": 2,
    "history_days": 180,  # work orders and failures before the start, in the first delivery
}


def params(g: DemoSpec) -> dict:
    """The delivery and history settings: ``demo.params`` of the use case over DEFAULTS."""
    unknown = set(g.params) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"conf/maintenance/usecase.yaml: demo.params: unknown {', '.join(sorted(unknown))}; known: {', '.join(DEFAULTS)}")
    return {**DEFAULTS, **g.params}


def delivered(day: Column, g: DemoSpec, every: int, offset: int = 0) -> Column:
    """The first delivery date strictly after ``day`` of a feed that delivers every
    ``every`` days, ``offset`` days after the start date."""
    dd = F.datediff(day, F.lit(g.start_date)) - offset
    return F.date_add(F.lit(g.start_date), (F.floor(dd / every) + 1).cast("int") * every + offset)


def _ts(day: Column, seconds: Column) -> Column:
    """The timestamp ``seconds`` after midnight of ``day``."""
    return F.timestamp_seconds(F.unix_seconds(day.cast("timestamp")) + seconds.cast("long"))


def _pick_index(u: Column, options: list[tuple]) -> Column:
    return choice(u, [(i, o[1]) for i, o in enumerate(options)])


def _name(idx: Column, options: list[tuple]) -> Column:
    return F.element_at(F.array(*[F.lit(o[0]) for o in options]), idx + 1)


def _drift_on(g: DemoSpec, day: Column) -> Column:
    return F.lit(False) if g.drift_start is None else day >= F.lit(g.drift_start)


def machines(spark: SparkSession, g: DemoSpec, p: dict) -> DataFrame:
    """One row per machine: public attributes and the hidden failure rate."""
    s = g.seed
    start = F.lit(g.start_date)
    history_start = F.lit(g.start_date - timedelta(days=int(p["history_days"])))
    df = spark.range(g.entities).withColumnRenamed("id", "idx")
    k = F.col("idx")
    existing = uniform(s, "existing", k) < 0.85
    installed = F.when(existing, F.date_sub(start, (30 + uniform(s, "age", k) * 3600).cast("int"))).otherwise(
        F.date_add(start, (uniform(s, "install", k) * g.days).cast("int"))
    )
    site_idx = _pick_index(uniform(s, "site", k), SITES)
    # a share of machines moves once to another site, some time after it was registered
    moved_idx = F.pmod(site_idx + 1 + (uniform(s, "new_site", k) * (len(SITES) - 1)).cast("int"), F.lit(len(SITES)))
    df = (
        df.withColumn("machine_id", F.lit(ID_BASE) + k)
        .withColumn("installed_on", installed)
        .withColumn("origin", F.greatest(F.col("installed_on"), history_start))  # first day simulated
        .withColumn("online", F.greatest(F.col("installed_on"), start))  # first day with telemetry
        .withColumn("model", choice(uniform(s, "model", k), MODELS))
        .withColumn("site_idx", site_idx)
        .withColumn("site", _name(site_idx, SITES))
        .withColumn("rated_power_kw", F.round(lookup(F.col("model"), MODELS, 2) * (0.9 + 0.2 * uniform(s, "power", k)), 1))
        .withColumn("moves", uniform(s, "moves", k) < 0.12)
        .withColumn("new_site", _name(moved_idx, SITES))
        .withColumn("move_day", F.date_add(F.col("online"), (14 + uniform(s, "move_day", k) * g.days).cast("int")))
    )
    age_years = F.greatest(F.datediff(start, F.col("installed_on")), F.lit(0)) / 365.25
    log_rate = (
        lookup(F.col("model"), MODELS, 7)
        + lookup(F.col("site"), SITES, 3)
        + 0.08 * age_years
        + 0.5 * normal(s, "frailty", k)
    )
    return (
        df.withColumn("rate", F.least(BASE_RATE * F.exp(log_rate), F.lit(MAX_RATE)))
        .withColumn("vib_factor", F.exp(0.15 * normal(s, "vib_factor", k)))
        .withColumn("inspection_phase", (uniform(s, "inspection_phase", k) * INSPECTION_EVERY).cast("int"))
    )


def failures_of(mach: DataFrame, g: DemoSpec, p: dict) -> DataFrame:
    """Every failure of every machine (a renewal process per machine), from the start of
    its history to ``TAIL_DAYS`` past the last day (those are never reported: only their
    warning ramps, begun inside the window, show).

    The machine's hazard clock runs at ``rate`` per operating day (``rate * (1 +
    drift_strength)`` from drift_start on) and pauses while it is repaired; failure j
    happens when the clock reaches E_1 + ... + E_j (E_i ~ Exp(1)), then it is down for
    ``repair_days``. Window sums give every failure time without a loop."""
    s = g.seed
    strength = g.drift_strength if g.drift_start is not None else 0.0
    cycles = int(math.ceil((g.days + TAIL_DAYS + int(p["history_days"])) * MAX_RATE * (1 + strength) * 1.5)) + 8
    end_ts = F.lit(g.start_date + timedelta(days=g.days + TAIL_DAYS)).cast("timestamp")
    k = (F.col("idx"), F.col("cycle"))
    df = mach.select("idx", "machine_id", "origin", "rate").withColumn("cycle", F.explode(F.sequence(F.lit(0), F.lit(cycles - 1))))
    df = (
        df.withColumn("gap", -F.log(uniform(s, "gap", *k) + F.lit(1e-12)))
        .withColumn("repair_days", 1 + (uniform(s, "repair", *k) * 3).cast("int"))
    )
    w = Window.partitionBy("idx").orderBy("cycle")
    before = w.rowsBetween(Window.unboundedPreceding, -1)
    df = df.withColumn("clock", F.sum("gap").over(w)).withColumn("down_before", F.coalesce(F.sum("repair_days").over(before), F.lit(0)))
    df = df.withColumn("op", F.col("clock") / F.col("rate"))  # operating days at the base rate
    if strength > 0:
        # operating days from the origin to drift_start: its days after the origin less the
        # repair days before it (failures before drift_start are those of the base rate)
        d_rel = F.datediff(F.lit(g.drift_start), F.col("origin"))
        base_at = F.col("op") + F.col("down_before")
        repaired = F.greatest(F.least(F.col("repair_days"), d_rel - base_at), F.lit(0.0))
        every = w.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)  # summed in cycle order: the same bits
        df = df.withColumn("op_drift", F.greatest(d_rel - F.sum(repaired).over(every), F.lit(0.0)))
        slowed = F.col("op_drift") + (F.col("op") - F.col("op_drift")) / (1 + strength)
        op = F.when(F.col("op") < F.col("op_drift"), F.col("op")).otherwise(slowed)
    else:
        op = F.col("op")
    df = df.withColumn("at_day", op + F.col("down_before"))  # days after the origin, downtime included
    df = df.withColumn("failed_at", _ts(F.col("origin"), F.col("at_day") * DAY))
    # the machine runs again after the previous repair: a ramp cannot start before that
    up_since = F.lag(F.col("at_day") + F.col("repair_days"), 1, -1000.0).over(w)
    comp_idx = _pick_index(uniform(s, "component", *k), COMPONENTS)
    sudden = uniform(s, "sudden", *k) < 0.10
    ramp = F.least(10 + uniform(s, "ramp", *k) * 18, F.col("at_day") - up_since)
    return (
        df.withColumn("component", _name(comp_idx, COMPONENTS))
        .withColumn("ramp_days", F.when(sudden | (F.col("component") == "electrical"), F.lit(0.0)).otherwise(ramp))
        .withColumn("up_at", _ts(F.col("origin"), (F.col("at_day") + F.col("repair_days")) * DAY))
        .where(F.col("failed_at") < end_ts)
        .select("idx", "machine_id", "cycle", "failed_at", "component", "repair_days", "ramp_days", "up_at")
    )


def caught_of(mach: DataFrame, g: DemoSpec, p: dict) -> DataFrame:
    """Degradations caught in time (false alarms of the sensors): a ramp that ends with a
    part replacement, not a failure. At most one per machine and 60 days."""
    s = g.seed
    span = 60
    first = g.start_date - timedelta(days=int(p["history_days"]))
    slots = -(-(g.days + TAIL_DAYS + int(p["history_days"])) // span)
    k = (F.col("idx"), F.col("slot"))
    df = mach.select("idx", "machine_id", "origin").withColumn("slot", F.explode(F.sequence(F.lit(0), F.lit(slots - 1))))
    at_day = (F.col("slot") + uniform(s, "caught_at", *k)) * span  # days after the first simulated day
    df = df.withColumn("fixed_at", _ts(F.lit(first), at_day * DAY)).where(uniform(s, "caught", *k) < 0.2)
    end_ts = F.lit(g.start_date + timedelta(days=g.days + TAIL_DAYS)).cast("timestamp")
    return df.where((F.to_date("fixed_at") > F.date_add(F.col("origin"), 14)) & (F.col("fixed_at") < end_ts)).select(
        "idx",
        "machine_id",
        "slot",
        "fixed_at",
        _name(_pick_index(uniform(s, "caught_component", *k), WARNED), WARNED).alias("component"),
        (5 + uniform(s, "caught_ramp", *k) * 9).alias("ramp_days"),
        (0.4 + 0.4 * uniform(s, "caught_peak", *k)).alias("peak"),
    )


def degradation(fails: DataFrame, caught: DataFrame) -> DataFrame:
    """Per machine and day of a ramp: what the degradation does to each sensor (the
    strongest ramp wins when two overlap)."""
    ramps = fails.where("ramp_days > 0").select(
        "idx", F.col("failed_at").alias("end_at"), "component", "ramp_days", F.lit(1.0).alias("peak")
    )
    ramps = ramps.unionByName(caught.select("idx", F.col("fixed_at").alias("end_at"), "component", "ramp_days", "peak"))
    ramps = ramps.withColumn("start_at", F.timestamp_seconds(F.unix_seconds("end_at") - (F.col("ramp_days") * DAY).cast("long")))
    days = ramps.withColumn("day", F.explode(F.sequence(F.to_date("start_at"), F.to_date("end_at"))))
    mid = F.unix_seconds(F.col("day").cast("timestamp")) + DAY // 2
    frac = (mid - F.unix_seconds("start_at")) / (F.unix_seconds("end_at") - F.unix_seconds("start_at"))
    # concave: a degradation shows early (the P-F interval), then keeps growing to the end
    d = F.col("peak") * F.sqrt(F.least(F.greatest(frac, F.lit(0.0)), F.lit(1.0)))
    comp = F.col("component")
    return (
        days.withColumn("d", d)
        .groupBy("idx", "day")
        .agg(
            F.max(F.col("d") * lookup(comp, COMPONENTS, 2)).alias("vib_gain"),
            F.max(F.col("d") * lookup(comp, COMPONENTS, 3)).alias("temp_gain"),
            F.max(F.col("d") * lookup(comp, COMPONENTS, 4)).alias("press_gain"),
            F.max(F.col("d") * lookup(comp, COMPONENTS, 5)).alias("rpm_drop"),
        )
    )


def downtime(fails: DataFrame) -> DataFrame:
    """Per machine and day it is down for a repair: from when to when (no readings then)."""
    return (
        fails.withColumn("day", F.explode(F.sequence(F.to_date("failed_at"), F.to_date("up_at"))))
        .groupBy("idx", "day")
        .agg(F.min("failed_at").alias("down_from"), F.max("up_at").alias("down_to"))
    )


def machine_days(mach: DataFrame, fails: DataFrame, caught: DataFrame, g: DemoSpec) -> DataFrame:
    """One row per machine and day simulated (from installation or the start of the
    history), with the site of that day, the degradation and the downtime."""
    last = F.lit(g.start_date + timedelta(days=g.days - 1))
    df = mach.where(F.col("origin") <= last).withColumn("day", F.explode(F.sequence(F.col("origin"), last)))
    df = df.withColumn("site_now", F.when(F.col("moves") & (F.col("day") >= F.col("move_day")), F.col("new_site")).otherwise(F.col("site")))
    return (
        df.join(degradation(fails, caught), ["idx", "day"], "left")
        .join(downtime(fails), ["idx", "day"], "left")
        .na.fill(0.0, ["vib_gain", "temp_gain", "press_gain", "rpm_drop"])
        .withColumn("dkey", F.date_format("day", "yyyyMMdd"))
    )


def sensor_readings(md: DataFrame, g: DemoSpec, p: dict) -> DataFrame:
    """``readings_per_day`` readings per machine and day from its first day online, none
    while it is down; the model's normal values moved by the degradation, the site's
    ambient temperature, a glitch now and then, noise and the drift."""
    s = g.seed
    per_day = int(p["readings_per_day"])
    md = md.where(F.col("day") >= F.col("online")).withColumn("slot", F.explode(F.sequence(F.lit(0), F.lit(per_day - 1))))
    k = (F.col("idx"), F.col("dkey"), F.col("slot"))
    offset = F.col("slot") * (DAY // per_day) + (uniform(s, "jitter", *k) * 600).cast("int")
    md = md.withColumn("read_at", _ts(F.col("day"), offset))
    up = F.col("down_from").isNull() | (F.col("read_at") < F.col("down_from")) | (F.col("read_at") >= F.col("down_to"))
    md = md.where(up & (uniform(s, "dropout", *k) >= 0.02))
    drift = _drift_on(g, F.col("day"))
    glitch = F.when(uniform(s, "glitch", F.col("idx"), F.col("dkey")) < 0.01, 1.0).otherwise(0.0)
    model = F.col("model")
    vibration = (
        lookup(model, MODELS, 3) * F.col("vib_factor") * (1 + F.col("vib_gain") + glitch)
        * F.exp(0.10 * normal(s, "vibration", *k)) * F.when(drift, 1 + 0.2 * g.drift_strength).otherwise(1.0)
    )
    temperature = (
        lookup(model, MODELS, 4) + lookup(F.col("site_now"), SITES, 2) + F.col("temp_gain")
        + 1.5 * normal(s, "temperature", *k) + F.when(drift, 3.0 * g.drift_strength).otherwise(0.0)
    )
    pressure = lookup(model, MODELS, 5) + 0.25 * (1 + F.col("press_gain")) * normal(s, "pressure", *k)
    rpm = lookup(model, MODELS, 6) * (1 - F.col("rpm_drop")) * (1 + 0.004 * normal(s, "rpm", *k))
    return md.select(
        "machine_id",
        "read_at",
        F.round(temperature, 2).alias("temperature_c"),
        F.round(vibration, 3).alias("vibration_mm_s"),
        F.round(pressure, 3).alias("pressure_bar"),
        F.round(rpm).cast("int").alias("rpm"),
        delivered(F.col("day"), g, p["telemetry_every_days"]).alias("arrival_date"),
    )


def maintenance_logs(md: DataFrame, fails: DataFrame, caught: DataFrame, g: DemoSpec, p: dict) -> DataFrame:
    """Work orders: a repair after each failure, a part replacement for each caught
    degradation, routine inspections every ~30 days (a few skipped)."""
    s = g.seed
    start = F.lit(g.start_date)

    def order_id(kind: int, day: Column) -> Column:
        return F.lit(WORK_ORDER_BASE) + (F.col("idx") * 3 + kind) * 100_000 + F.datediff(day, start)

    repairs = fails.select(
        "idx",
        "machine_id",
        F.to_date("failed_at").alias("performed_on"),
        F.lit("repair").alias("kind"),
        F.col("component").alias("part"),
        F.round(
            F.col("repair_days") * 24 * (0.5 + 0.5 * uniform(s, "repair_hours", F.col("idx"), F.col("cycle"))), 1
        ).alias("downtime_hours"),
    ).withColumn("work_order_id", order_id(1, F.col("performed_on")))
    replacements = caught.select(
        "idx",
        "machine_id",
        F.to_date("fixed_at").alias("performed_on"),
        F.lit("part_replacement").alias("kind"),
        F.col("component").alias("part"),
        F.round(2 + 6 * uniform(s, "replacement_hours", F.col("idx"), F.col("slot")), 1).alias("downtime_hours"),
    ).withColumn("work_order_id", order_id(2, F.col("performed_on")))
    due = F.pmod(F.datediff(F.col("day"), F.col("origin")) + F.col("inspection_phase"), F.lit(INSPECTION_EVERY)) == 0
    inspections = md.where(due & (uniform(s, "inspection_skipped", F.col("idx"), F.col("dkey")) >= 0.1)).select(
        "idx",
        "machine_id",
        F.col("day").alias("performed_on"),
        F.lit("inspection").alias("kind"),
        F.lit(None).cast("string").alias("part"),
        F.round(0.5 + 1.5 * uniform(s, "inspection_hours", F.col("idx"), F.col("dkey")), 1).alias("downtime_hours"),
    ).withColumn("work_order_id", order_id(0, F.col("performed_on")))
    end = F.date_add(start, g.days)
    return (
        repairs.unionByName(replacements)
        .unionByName(inspections)
        .where(F.col("performed_on") < end)
        .select(
            "work_order_id", "machine_id", "performed_on", "kind", "part", "downtime_hours",
            # the history before the start arrives in the first delivery
            F.greatest(
                F.lit(g.start_date), delivered(F.col("performed_on"), g, p["cmms_every_days"], p["cmms_offset_days"])
            ).alias("arrival_date"),
        )
    )


def failure_reports(fails: DataFrame, g: DemoSpec, p: dict) -> DataFrame:
    """Failures as the field reports them: 0-2 days after the fact, in the next telemetry drop."""
    s = g.seed
    lag = (uniform(s, "report_lag", F.col("idx"), F.col("cycle")) * 3).cast("int")
    reported = F.date_add(F.to_date("failed_at"), lag)
    return fails.select(
        "machine_id",
        "failed_at",
        "component",
        F.when(F.col("repair_days") >= 3, "major").otherwise("minor").alias("severity"),
        reported.alias("reported_on"),
        F.greatest(F.lit(g.start_date), delivered(reported, g, p["telemetry_every_days"])).alias("arrival_date"),
    )


def registry(mach: DataFrame, g: DemoSpec, p: dict) -> DataFrame:
    """The asset registry: every machine installed before the start on the first day, then
    weekly deltas with new machines and machines moved to another site."""
    start = F.lit(g.start_date)
    first = F.when(F.col("installed_on") < start, start).otherwise(
        delivered(F.col("installed_on"), g, p["registry_every_days"], p["registry_offset_days"])
    )
    cols = ["machine_id", "model", "site", "installed_on", "rated_power_kw"]
    base = mach.withColumn("arrival_date", first)
    moved = (
        base.where(F.col("moves"))
        .withColumn(
            "arrival_date",
            F.greatest(
                delivered(F.col("move_day"), g, p["registry_every_days"], p["registry_offset_days"]),
                F.date_add(F.col("arrival_date"), 1),
            ),
        )
        .withColumn("site", F.col("new_site"))
    )
    return base.select(*cols, "arrival_date").unionByName(moved.select(*cols, "arrival_date"))


def make(spark: SparkSession, g: DemoSpec) -> dict[str, DataFrame]:
    """Every source of the use case, as rows with their ``arrival_date`` (those that would
    arrive after the last day have not arrived)."""
    p = params(g)
    last_export = F.lit(g.start_date + timedelta(days=g.days))
    mach = machines(spark, g, p).persist()
    fails = failures_of(mach, g, p).persist()
    caught = caught_of(mach, g, p).persist()
    md = machine_days(mach, fails, caught, g).persist()
    out = {
        "machines": registry(mach, g, p),
        "sensor_readings": sensor_readings(md, g, p),
        "maintenance_logs": maintenance_logs(md, fails, caught, g, p),
        "failures": failure_reports(fails, g, p),
    }
    return {name: df.where(F.col("arrival_date") <= last_export) for name, df in out.items()}
