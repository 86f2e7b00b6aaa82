"""Write the use case's demo data set into its landing zone, with its own data maker
(``demo.maker`` in conf/<usecase>/usecase.yaml).

    ./spark-submit.sh [--usecase NAME] jobs/generate.py [--entities N] [--days N] [--seed N]
        [--start-date YYYY-MM-DD] [--bad-row-rate R] [--drift-start YYYY-MM-DD]
        [--drift-strength X] [--force]

Defaults come from the use case's ``demo`` block. Deterministic: the same arguments give
the same rows. A landing zone that already holds the same data set is left alone unless
--force. A use case without a maker has no demo data: land its files with jobs/landing.py.
"""

from lakeml import cli


def run(args):
    from lakeml.core import session
    from lakeml.demo import maker

    env, uc = cli.load(args)
    spec = maker.spec_of(
        uc, entities=args.entities, days=args.days, seed=args.seed, start_date=args.start_date,
        bad_row_rate=args.bad_row_rate, drift_start=args.drift_start, drift_strength=args.drift_strength,
    )
    spark = session.get_spark(env, "lakeml-generate")
    return maker.run(spark, uc, env.landing_zone(uc.name), spec, force=args.force)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--entities", type=int, help="how many entities (features.entity of the use case) to simulate")
    p.add_argument("--days", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--start-date", type=cli.iso_date)
    p.add_argument("--bad-row-rate", type=float)
    p.add_argument("--drift-start", type=cli.iso_date)
    p.add_argument("--drift-strength", type=float)
    p.add_argument("--force", action="store_true", help="rewrite even if the same data set is already there")
    cli.main(run, p.parse_args())
