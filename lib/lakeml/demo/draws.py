"""Deterministic random draws as Spark column expressions, for demo data makers.

Every draw is a hash of (seed, a salt, the row's natural key), not a stateful generator, so
the data is the same for the same arguments whatever the partitioning, cluster size or
order of evaluation, and no Python runs on the executors.
"""

from __future__ import annotations

import math

from pyspark.sql import Column
from pyspark.sql import functions as F


def uniform(seed: int, salt: str, *cols: Column) -> Column:
    """A deterministic uniform draw in [0, 1) from the hash of the key columns."""
    h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return F.shiftrightunsigned(h, 11).cast("double") / float(1 << 53)


def normal(seed: int, salt: str, *cols: Column) -> Column:
    """A standard normal draw (Box-Muller on two uniform draws)."""
    u1 = uniform(seed, salt + ":a", *cols) + F.lit(1e-12)
    u2 = uniform(seed, salt + ":b", *cols)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2 * math.pi * u2)


def choice(u: Column, options: list[tuple], value_index: int = 0) -> Column:
    """Pick option i with probability options[i][1] for the uniform draw ``u``; returns
    options[i][value_index]."""
    expr, acc = None, 0.0
    for opt in options[:-1]:
        acc += opt[1]
        expr = (F.when(u < acc, F.lit(opt[value_index]))) if expr is None else expr.when(u < acc, F.lit(opt[value_index]))
    return expr.otherwise(F.lit(options[-1][value_index]))


def lookup(col: Column, options: list[tuple], value_index: int) -> Column:
    """options[i][value_index] of the option whose name (options[i][0]) equals ``col``; 0.0 otherwise."""
    expr = None
    for opt in options:
        expr = F.when(col == opt[0], F.lit(opt[value_index])) if expr is None else expr.when(col == opt[0], F.lit(opt[value_index]))
    return expr.otherwise(F.lit(0.0))
