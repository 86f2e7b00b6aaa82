"""Compute the point-in-time feature table and the labels from the use case SQL.

    ./spark-submit.sh jobs/features.py [--as-of YYYY-MM-DD ...]

Default: every snapshot date (conf: features.snapshots). Labels are recomputed for all.
"""

from lakeml import cli


def run(args):
    from lakeml import features
    from lakeml.core import session

    env, uc = cli.load(args)
    spark = session.get_spark(env, "lakeml-features")
    return features.run(spark, uc, as_of=args.as_of)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--as-of", type=cli.iso_date, action="append", help="snapshot date to compute; repeatable")
    cli.main(run, p.parse_args())
