"""Score records as they arrive (Spark Structured Streaming) into the stream predictions table.

    ./spark-submit.sh jobs/stream.py --source landing [--once] [--trigger-seconds 2]
    ./spark-submit.sh jobs/stream.py --source features [--once]

--source landing: JSON lines files dropped into <data_dir>/stream/<usecase>/in/ (an entity
row {"<entity>": "..."} is scored with the entity's newest feature row, a row of features as
given; a malformed record goes to <stream_predictions>_rejects with its raw text and reason).
--source features: each snapshot the features job writes, as it is committed.
Exactly once across crashes and restarts (checkpoint under <data_dir>/checkpoints/). Runs until
SIGTERM / Ctrl-C, or with --once until everything available is scored.

With the embedded Derby metastore (one process at a time) the stream holds the data folder as
every job does: run it with --once between the daily runs. With an external metastore it runs
beside them (it writes its own tables only) and holds no lock.
"""

from lakeml import cli


def run(args):
    from lakeml.core import session
    from lakeml.core.config import load_env, load_usecase
    from lakeml.serving import stream

    env = load_env(args.conf_dir, args.env)
    if env.storage.metastore == "derby":
        env, uc = cli.load(args)
    else:
        uc = load_usecase(args.conf_dir, args.usecase, env)
    spark = session.get_spark(env, f"lakeml-stream-{args.source}")
    return stream.run(spark, env, uc, args.source, once=args.once, trigger_seconds=args.trigger_seconds,
                      landing=args.landing, checkpoint=args.checkpoint, max_files=args.max_files)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("--source", required=True, choices=["features", "landing"], help="what to score as it arrives")
    p.add_argument("--once", action="store_true", help="score everything available, then stop (availableNow)")
    p.add_argument("--trigger-seconds", type=float, default=2.0, help="a micro-batch every N seconds (default 2)")
    p.add_argument("--landing", help="the folder of JSON lines files (default <data_dir>/stream/<usecase>/in)")
    p.add_argument("--checkpoint", help="the query's checkpoint folder (default <data_dir>/checkpoints/<usecase>/stream_<source>)")
    p.add_argument("--max-files", type=int, help="at most N landed files per micro-batch (default: all there are)")
    cli.main(run, p.parse_args())
