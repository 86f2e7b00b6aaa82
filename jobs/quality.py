"""Run the data-quality checks of the use case (conf: quality.checks) and record them in
<database>.dq_results.

    ./spark-submit.sh jobs/quality.py [--table NAME ...] [--batch YYYY-MM-DD ...]

Default: every table with checks that exists, its newest batch. --batch checks those
batches (of the tables that have them); re-checking a batch replaces its results.
Exits 2, naming each check, when a check of severity error fails; warnings are logged.
"""

from lakeml import cli


def run(args):
    from lakeml.core import session
    from lakeml.lake import quality

    env, uc = cli.load(args)
    spark = session.get_spark(env, "lakeml-quality")
    return quality.run(spark, uc, batch_dates=args.batch, only=args.table)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--table", action="append",
                   help="a table with checks (a key of quality.checks in the use case); repeatable (default: all)")
    p.add_argument("--batch", type=cli.iso_date, action="append", help="batch date to check; repeatable (default: each table's newest)")
    cli.main(run, p.parse_args())
