"""Compute the point-in-time feature table and the labels from the use case SQL.

    ./spark-submit.sh jobs/features.py [--as-of YYYY-MM-DD ... | --backfill [FROM [TO]]] [--skip-leakage-check]

Default: what is new since the last run (lakeml.features.plan): the scheduled snapshots
(conf: features.snapshots) the table does not have yet, the newest batch date, and the
snapshots rows ingested since could have changed (features.late_days); labels of every
date whose window was still open. A change of the feature or label SQL or conf recomputes
everything, and the log says so. --as-of computes those dates; --backfill every date of the
table and the schedule (between FROM and TO when given). Feature SQL the table was not built
with (new, or changed) is first run on a sample with its future rewritten: if any feature
moves, the job refuses and names the file (lakeml.features.leakage; --skip-leakage-check).
"""

from lakeml import cli


def run(args):
    from lakeml.core import session
    from lakeml.core.errors import UsageError
    from lakeml.features import job as features_job

    env, uc = cli.load(args)
    backfill = None
    if args.backfill is not None:
        if len(args.backfill) > 2:
            raise UsageError("--backfill takes at most two dates: FROM and TO")
        dates = [cli.iso_date(d) for d in args.backfill] + [None, None]
        backfill = (dates[0], dates[1])
        if args.as_of:
            raise UsageError("give --as-of or --backfill, not both")
    spark = session.get_spark(env, "lakeml-features")
    return features_job.run(spark, uc, as_of=args.as_of, backfill=backfill, leakage_check=not args.skip_leakage_check)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--as-of", type=cli.iso_date, action="append", help="snapshot date to compute; repeatable")
    p.add_argument("--backfill", nargs="*", metavar="DATE", help="recompute every snapshot (between FROM and TO when given)")
    p.add_argument("--skip-leakage-check", action="store_true",
                   help="write features from new or changed SQL without first proving on a sample "
                        "that it reads no event on or after as_of_date")
    cli.main(run, p.parse_args())
