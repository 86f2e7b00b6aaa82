"""Ingest landing batches into bronze Delta tables; bad rows go to the quarantine table.

    ./spark-submit.sh jobs/ingest.py [--batch YYYY-MM-DD ...] [--all]

Default: every batch that is new or whose files changed since it was ingested. A batch
folder dated more than landing.max_days_ahead (conf, default 1) days after today (UTC) is
left in landing and listed under "refused" (exit 0, like quarantined rows: the rest is
ingested); --batch naming such a date is an error (exit 2).
--batch re-ingests the named arrival dates; --all re-ingests everything. Either way
the result is the same tables (each batch slice is replaced, never appended twice).
"""

from lakeml import cli


def run(args):
    from dataclasses import asdict

    from lakeml.core import session
    from lakeml.lake import ingest

    env, uc = cli.load(args)
    spark = session.get_spark(env, "lakeml-ingest")
    done = ingest.ingest(spark, env, uc, batch_dates=args.batch, force=args.all)
    return {"sources": [asdict(r) for r in done], "refused": [asdict(r) for r in done.refused]}


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--batch", type=cli.iso_date, action="append", help="arrival date to (re)ingest; repeatable")
    p.add_argument("--all", action="store_true", help="re-ingest every batch in the landing zone")
    cli.main(run, p.parse_args())
