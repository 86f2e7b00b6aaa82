"""The churn demo's data maker: a synthetic subscription business, at any scale, in Spark.

Every random draw is a hash of (seed, a salt, the row's natural key), not a stateful
generator, so the data is the same for the same arguments whatever the partitioning,
cluster size or order of evaluation.

The hidden rule: each customer has a churn hazard set by plan, payment method, channel
and age plus personal noise; the churn day is drawn from it. In the weeks before churning
a customer disengages (less usage, more failed payments, more support tickets). Some
customers who stay have a dip of their own, so the signal is real but imperfect.

Drift hook: from ``drift_start`` on, usage minutes scale by ``1 + drift_strength``, new
customers lean towards invoice payment, and their hazard rises.

``make`` returns every source's rows with their arrival date; ``lakeml.demo`` writes them
in the formats conf/churn/usecase.yaml declares and damages a ``bad_row_rate`` share.
Built from Spark column expressions only (no Python UDF): executors never import this file.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from lakeml.core.config import DemoSpec
from lakeml.demo.draws import choice, lookup, normal, uniform

PLANS = [("basic", 0.50, 9.99, 0.45), ("standard", 0.35, 14.99, 0.0), ("premium", 0.15, 24.99, -0.55)]
REGIONS = [("north", 0.2), ("south", 0.25), ("east", 0.2), ("west", 0.2), ("central", 0.15)]
PAYMENT = [("card", 0.55, 0.0, 0.01), ("paypal", 0.20, 0.1, 0.015), ("bank_transfer", 0.15, 0.25, 0.03), ("invoice", 0.10, 0.65, 0.06)]
CHANNELS = [("organic", 0.40, 0.0), ("ads", 0.30, 0.35), ("referral", 0.15, -0.3), ("partner", 0.15, -0.15)]
DEVICES = [("mobile", 0.55), ("web", 0.35), ("tv", 0.10)]
TICKET_CATEGORIES = [("billing", 0.35), ("technical", 0.40), ("account", 0.15), ("cancellation", 0.10)]
CHURN_REASONS = [("price", 0.35), ("competitor", 0.25), ("quality", 0.2), ("moved", 0.1), ("other", 0.1)]



def customers(spark: SparkSession, g: DemoSpec) -> DataFrame:
    """One row per customer with its public attributes and the hidden churn state."""
    s = g.seed
    start = F.lit(g.start_date)
    end = F.date_add(start, g.days)  # exclusive
    df = spark.range(g.entities).withColumnRenamed("id", "idx")
    k = F.col("idx")
    df = df.withColumn("customer_id", F.format_string("C%08d", k))
    existing = uniform(s, "existing", k) < 0.6
    signup = F.when(existing, F.date_sub(start, (1 + uniform(s, "tenure", k) * 720).cast("int"))).otherwise(
        F.date_add(start, (uniform(s, "signup", k) * g.days).cast("int"))
    )
    df = df.withColumn("signup_date", signup)
    after_drift = F.lit(False) if g.drift_start is None else (F.col("signup_date") >= F.lit(g.drift_start))
    drift_u = uniform(s, "drift_pay", k) < g.drift_strength * 0.5
    df = (
        df.withColumn("plan", choice(uniform(s, "plan", k), PLANS))
        .withColumn("monthly_fee", lookup(F.col("plan"), PLANS, 2))
        .withColumn("region", choice(uniform(s, "region", k), REGIONS))
        .withColumn(
            "payment_method",
            F.when(after_drift & drift_u, F.lit("invoice")).otherwise(choice(uniform(s, "pay", k), PAYMENT)),
        )
        .withColumn("channel", choice(uniform(s, "channel", k), CHANNELS))
        .withColumn("age", (18 + uniform(s, "age", k) * 57).cast("int"))
    )
    logit = (
        F.lit(-3.3)
        + lookup(F.col("plan"), PLANS, 3)
        + lookup(F.col("payment_method"), PAYMENT, 2)
        + lookup(F.col("channel"), CHANNELS, 2)
        + F.when(F.col("age") < 30, 0.3).otherwise(0.0)
        + 0.5 * normal(s, "risk", k)
        + F.when(after_drift, g.drift_strength * 0.5).otherwise(0.0)
    )
    monthly = 1 / (1 + F.exp(-logit))
    daily = 1 - F.pow(1 - monthly, 1 / 30.0)
    active_from = F.greatest(F.col("signup_date"), start)
    # geometric waiting time; memoryless, so drawing from the window start is exact
    wait = F.ceil(F.log(uniform(s, "churn", k) + F.lit(1e-12)) / F.log(1 - daily)).cast("int")
    df = (
        df.withColumn("active_from", active_from)
        .withColumn("churn_day", F.date_add(F.col("active_from"), F.least(wait, F.lit(100_000))))
        .withColumn("churn_date", F.when(F.col("churn_day") < end, F.col("churn_day")))
        .withColumn("active_to", F.coalesce(F.col("churn_date"), end))  # exclusive
        .withColumn("disengage_days", (14 + uniform(s, "disengage", k) * 46).cast("int"))
        .withColumn("engagement", 0.25 + 0.6 * uniform(s, "engagement", k) + F.when(F.col("plan") == "premium", 0.1).otherwise(0.0))
        .withColumn("has_dip", uniform(s, "dip", k) < 0.2)
        .withColumn("dip_start", F.date_add(start, (uniform(s, "dip_start", k) * g.days).cast("int")))
        .drop("churn_day")
    )
    return df


def customer_days(cust: DataFrame, g: DemoSpec) -> DataFrame:
    """One row per customer and active day, with the disengagement multiplier."""
    df = cust.where(F.col("active_from") < F.col("active_to")).withColumn(
        "day", F.explode(F.sequence(F.col("active_from"), F.date_sub(F.col("active_to"), 1)))
    )
    to_churn = F.datediff(F.col("churn_date"), F.col("day"))
    disengage = F.when(
        F.col("churn_date").isNotNull() & (to_churn <= F.col("disengage_days")),
        F.greatest(F.lit(0.1), to_churn / F.col("disengage_days")),
    ).otherwise(1.0)
    in_dip = F.col("has_dip") & (F.col("day") >= F.col("dip_start")) & (F.datediff(F.col("day"), F.col("dip_start")) < 21)
    mult = disengage * F.when(in_dip, 0.45).otherwise(1.0)
    return df.withColumn("mult", mult).withColumn("dkey", F.date_format("day", "yyyyMMdd"))


def usage_events(cd: DataFrame, g: DemoSpec) -> DataFrame:
    s = g.seed
    k = (F.col("customer_id"), F.col("dkey"))
    drift = F.lit(1.0) if g.drift_start is None else F.when(F.col("day") >= F.lit(g.drift_start), 1 + g.drift_strength).otherwise(1.0)
    active = uniform(s, "active", *k) < F.col("engagement") * F.col("mult")
    sessions = 1 + F.floor(-F.log(uniform(s, "sessions", *k) + F.lit(1e-12)) * 1.5 * F.col("mult")).cast("int")
    minutes = F.round(sessions * 14.0 * F.exp(0.6 * normal(s, "minutes", *k)) * drift, 1)
    second = (uniform(s, "second", *k) * 86399).cast("int")
    return cd.where(active).select(
        F.concat(F.lit("E"), F.col("customer_id"), F.col("dkey")).alias("event_id"),
        "customer_id",
        (F.col("day").cast("timestamp") + F.make_interval(secs=second)).alias("event_ts"),
        sessions.alias("sessions"),
        minutes.alias("minutes_used"),
        choice(uniform(s, "device", *k), DEVICES).alias("device"),
        F.date_add(F.col("day"), 1).alias("arrival_date"),
    )


def payments(cd: DataFrame, g: DemoSpec) -> DataFrame:
    s = g.seed
    k = (F.col("customer_id"), F.col("dkey"))
    billing_day = F.pmod(F.datediff(F.col("day"), F.col("signup_date")), F.lit(30)) == 0
    p_fail = lookup(F.col("payment_method"), PAYMENT, 3) + 0.25 * (1 - F.col("mult"))
    return cd.where(billing_day).select(
        F.concat(F.lit("P"), F.col("customer_id"), F.col("dkey")).alias("payment_id"),
        "customer_id",
        F.col("day").alias("payment_date"),
        F.col("monthly_fee").cast("double").alias("amount"),
        F.when(uniform(s, "fail", *k) < p_fail, "failed").otherwise("paid").alias("status"),
        F.col("payment_method").alias("method"),
        F.date_add(F.col("day"), 1).alias("arrival_date"),
    )


def support_tickets(cd: DataFrame, g: DemoSpec) -> DataFrame:
    s = g.seed
    k = (F.col("customer_id"), F.col("dkey"))
    p_ticket = 0.004 + 0.04 * (1 - F.col("mult"))
    second = (uniform(s, "ticket_second", *k) * 86399).cast("int")
    return cd.where(uniform(s, "ticket", *k) < p_ticket).select(
        F.concat(F.lit("T"), F.col("customer_id"), F.col("dkey")).alias("ticket_id"),
        "customer_id",
        (F.col("day").cast("timestamp") + F.make_interval(secs=second)).alias("opened_at"),
        choice(uniform(s, "category", *k), TICKET_CATEGORIES).alias("category"),
        F.when(uniform(s, "priority", *k) < 0.2, "high").otherwise("normal").alias("priority"),
        F.date_add(F.col("day"), 1).alias("arrival_date"),
    )


def churn_events(cust: DataFrame, g: DemoSpec) -> DataFrame:
    """Cancellations; those whose export would arrive after the last day have not arrived."""
    s = g.seed
    k = F.col("customer_id")
    last_export = F.date_add(F.lit(g.start_date), g.days)
    return cust.where(F.col("churn_date").isNotNull()).select(
        "customer_id",
        "churn_date",
        choice(uniform(s, "reason", k), CHURN_REASONS).alias("reason"),
        # cancellations reach the export one to three days late
        F.date_add(F.col("churn_date"), 1 + (uniform(s, "churn_lag", k) * 3).cast("int")).alias("arrival_date"),
    ).where(F.col("arrival_date") <= last_export)


def customer_export(cust: DataFrame, g: DemoSpec) -> DataFrame:
    start = F.lit(g.start_date)
    return cust.select(
        "customer_id",
        "signup_date",
        "plan",
        "monthly_fee",
        "region",
        "payment_method",
        "channel",
        "age",
        # customers who signed up before the window arrive in the first export
        F.greatest(F.date_add(F.col("signup_date"), 1), start).alias("arrival_date"),
    )


def make(spark: SparkSession, g: DemoSpec) -> dict[str, DataFrame]:
    """Every source of the use case, as rows with their ``arrival_date``."""
    cust = customers(spark, g).persist()
    cd = customer_days(cust, g).persist()
    return {
        "customers": customer_export(cust, g),
        "usage_events": usage_events(cd, g),
        "payments": payments(cd, g),
        "support_tickets": support_tickets(cd, g),
        "churn_events": churn_events(cust, g),
    }
