"""The churn use case's feature and label SQL on hand-made rows (the generic no-leakage
property of every use case is tests/test_leakage.py), and the snapshot schedule."""

from datetime import date, datetime, timedelta

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from lakeml import features
from lakeml.core.errors import ConfigError

D = date(2026, 4, 1)
B0 = date(2026, 1, 1)  # the batch the history arrived in


def _frames(spark, customers, usage, payments, tickets, churn):
    def mk(rows, ddl):
        return spark.createDataFrame(rows, ddl + ", _batch_date date, _source_file string")

    return {
        "customers": mk(customers, "customer_id string, signup_date date, plan string, monthly_fee double, region string, "
                                   "payment_method string, channel string, age int"),
        "usage_events": mk(usage, "event_id string, customer_id string, event_ts timestamp, sessions int, minutes_used double, "
                                  "device string"),
        "payments": mk(payments, "payment_id string, customer_id string, payment_date date, amount double, status string, method string"),
        "support_tickets": mk(tickets, "ticket_id string, customer_id string, opened_at timestamp, category string, priority string"),
        "churn_events": mk(churn, "customer_id string, churn_date date, reason string"),
    }


def _cust(cid, signup, plan="basic", batch=B0):
    return (cid, signup, plan, 9.99, "north", "card", "ads", 30, batch, "f")


def _ts(d, hour=12):
    return datetime(d.year, d.month, d.day, hour)


PAST_CUSTOMERS = [
    _cust("C1", date(2026, 1, 1)),
    _cust("C2", date(2026, 3, 1), "premium"),
    _cust("C3", D),  # signs up on the as-of date: not yet a customer
    _cust("C4", date(2026, 1, 1)),  # churned before the as-of date
    _cust("C5", date(2026, 1, 1)),  # churns 9 days after
]
PAST_USAGE = [
    (f"E{c}{i}", c, _ts(D - timedelta(days=i)), 2, 10.0 * i, "web", B0, "f")
    for c in ("C1", "C2", "C5")
    for i in (1, 3, 8, 20, 45, 89, 90, 91)
]
PAST_PAYMENTS = [("P1", "C1", D - timedelta(days=10), 9.99, "failed", "card", B0, "f"),
                 ("P2", "C5", D - timedelta(days=40), 9.99, "paid", "card", B0, "f")]
PAST_TICKETS = [("T1", "C5", _ts(D - timedelta(days=2)), "cancellation", "high", B0, "f")]
PAST_CHURN = [("C4", date(2026, 3, 15), "price", B0, "f"), ("C5", D + timedelta(days=9), "price", B0, "f")]

# everything that happens on or after the as-of date, including a plan change for C1
FUTURE_CUSTOMERS = [_cust("C1", date(2026, 1, 1), "premium", batch=D + timedelta(days=1))]
FUTURE_USAGE = [(f"F{c}{i}", c, _ts(D + timedelta(days=i), 0), 50, 999.0, "tv", D, "f") for c in ("C1", "C2", "C5") for i in (0, 1, 10)]
FUTURE_PAYMENTS = [(f"FP{c}", c, D, 9.99, "failed", "card", D, "f") for c in ("C1", "C2", "C5")]
FUTURE_TICKETS = [(f"FT{c}", c, _ts(D, 0), "billing", "high", D, "f") for c in ("C1", "C2", "C5")]
FUTURE_CHURN = [("C2", D + timedelta(days=5), "price", D, "f")]


def test_features_use_only_events_strictly_before_the_as_of_date(spark, uc):
    past = _frames(spark, PAST_CUSTOMERS, PAST_USAGE, PAST_PAYMENTS, PAST_TICKETS, PAST_CHURN)
    before = features.build_features(spark, uc, [D], frames=past).persist()
    assert sorted(r.customer_id for r in before.collect()) == ["C1", "C2", "C5"]
    c1 = before.where("customer_id = 'C1'").first()
    # windows are [as_of - N, as_of): days 1 and 3 in 7d; 1..20 in 30d; 1..90 in 90d
    assert (c1.active_days_7d, c1.active_days_30d, c1.active_days_90d) == (2, 4, 7)
    assert c1.minutes_7d == 40.0 and c1.days_since_last_activity == 1
    assert c1.failed_payments_30d == 1 and c1.plan == "basic" and c1.tenure_days == 90
    assert before.where("customer_id = 'C5'").first().cancellation_tickets_90d == 1

    future = _frames(
        spark,
        PAST_CUSTOMERS + FUTURE_CUSTOMERS,
        PAST_USAGE + FUTURE_USAGE,
        PAST_PAYMENTS + FUTURE_PAYMENTS,
        PAST_TICKETS + FUTURE_TICKETS,
        PAST_CHURN + FUTURE_CHURN,
    )
    after = features.build_features(spark, uc, [D], frames=future)
    assertDataFrameEqual(after, before)  # nothing from the future moved a feature


def test_labels_look_only_forward_within_the_horizon(spark, uc):
    frames = _frames(spark, PAST_CUSTOMERS, PAST_USAGE, PAST_PAYMENTS, PAST_TICKETS, PAST_CHURN + FUTURE_CHURN)
    h = uc.label.horizon_days
    labels = features.build_labels(spark, uc, [D], observed_until=D + timedelta(days=h), frames=frames)
    assertDataFrameEqual(
        labels.select("customer_id", uc.label.column), [("C1", 0), ("C2", 1), ("C5", 1)], checkRowOrder=False
    )
    open_window = features.build_labels(spark, uc, [D], observed_until=D + timedelta(days=h - 1), frames=frames)
    assert open_window.where(F.col(uc.label.column).isNotNull()).count() == 0


def test_snapshot_dates_are_anchored_and_end_on_the_newest_batch():
    got = features.snapshot_dates(date(2026, 1, 1), date(2026, 5, 3), every_days=14, first_after_days=90)
    assert got == [date(2026, 4, 1), date(2026, 4, 15), date(2026, 4, 29), date(2026, 5, 3)]
    assert features.snapshot_dates(date(2026, 1, 1), date(2026, 4, 29), 14, 90)[:3] == got[:3]


def test_placeholders_are_checked():
    assert features.render("x < ${a}", {"a": 3}) == "x < 3"
    with pytest.raises(ConfigError, match=r"label.sql: unknown placeholder \$\{b\}"):
        features.render("${b}", {"a": 1}, "label.sql")
