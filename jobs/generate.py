"""Generate the synthetic churn data set into the landing zone.

    ./spark-submit.sh jobs/generate.py [--customers N] [--days N] [--seed N]
        [--start-date YYYY-MM-DD] [--bad-row-rate R] [--drift-start YYYY-MM-DD]
        [--drift-strength X] [--force]

Defaults come from the use case's ``generator`` block. Deterministic: the same arguments
give the same rows. A landing zone that already holds the same data set is left alone
unless --force.
"""

from lakeml import cli


def run(args):
    from lakeml import generate, session

    env, uc = cli.load(args)
    overrides = {
        k: v
        for k, v in {
            "customers": args.customers,
            "days": args.days,
            "seed": args.seed,
            "start_date": args.start_date,
            "bad_row_rate": args.bad_row_rate,
            "drift_start": args.drift_start,
            "drift_strength": args.drift_strength,
        }.items()
        if v is not None
    }
    spec = uc.generator.model_copy(update=overrides)
    spark = session.get_spark(env, "lakeml-generate")
    return generate.run(spark, spec, env.landing_dir, force=args.force)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--customers", type=int)
    p.add_argument("--days", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--start-date", type=cli.iso_date)
    p.add_argument("--bad-row-rate", type=float)
    p.add_argument("--drift-start", type=cli.iso_date)
    p.add_argument("--drift-strength", type=float)
    p.add_argument("--force", action="store_true", help="rewrite even if the same data set is already there")
    cli.main(run, p.parse_args())
