"""Landing-zone operations: upload external files as a batch, list batches, archive ingested ones.

    ./spark-submit.sh [--env NAME] jobs/landing.py upload FILE_OR_DIR [...] --source SOURCE [--date YYYY-MM-DD] [--overwrite]
    ./spark-submit.sh [--env NAME] jobs/landing.py list
    ./spark-submit.sh [--env NAME] jobs/landing.py archive (--date YYYY-MM-DD | --ingested)

Files move through WebHDFS (HdfsCLI) when the landing zone is on HDFS, through the file
system otherwise. `list` shows each batch as pending or ingested (against the ingest log);
`archive` moves a batch out of the landing zone only once it is ingested as it stands.
"""

from datetime import date

from lakeml import cli


def _ingested(env, uc):
    from lakeml.core import session

    spark = session.get_spark(env, "lakeml-landing")
    log_table = uc.table(uc.tables.ingest_log)
    if not spark.catalog.tableExists(log_table):
        return {}
    return {(r.source, r.batch_date): r.fingerprint for r in spark.table(log_table).select("source", "batch_date", "fingerprint").collect()}


def run(args):
    from lakeml.core.errors import UsageError
    from lakeml.lake import landing_ops as ops

    env, uc = cli.load(args)
    landing, archive = ops.stores(env, uc.name)
    if args.command == "upload":
        if args.source not in uc.sources:
            raise UsageError(f"unknown source {args.source!r}; sources of {uc.name}: {', '.join(uc.sources)}")
        done = ops.upload(landing, args.paths, args.source, args.date or date.today(), args.overwrite)
        for p in done:
            print(f"landed {p}")
        return {"landed": done}
    batches = ops.list_batches(landing)
    ingested = _ingested(env, uc)
    if args.command == "list":
        print(f"landing zone {env.landing_zone(uc.name)}: {len(batches)} batches")
        for b in batches:
            state = {s: "ingested" if ingested.get((s, b.batch_date)) == b.fingerprint(s) else "pending" for s in sorted(b.sources)}
            overall = "ingested" if state and all(v == "ingested" for v in state.values()) else "pending"
            files = sum(len(v) for v in b.sources.values())
            print(f"  {b.batch_date}  {overall:8}  {files:3} files  " + ", ".join(f"{s}:{v}" for s, v in state.items()))
        return None
    # archive
    if not (args.date or args.ingested):
        raise UsageError("archive needs --date YYYY-MM-DD or --ingested")
    chosen = [b for b in batches if (args.date is None or b.batch_date == args.date)]
    if args.date and not chosen:
        raise UsageError(f"no batch {args.date} in the landing zone {env.landing_zone(uc.name)}")
    moved = []
    for b in chosen:
        if args.ingested and not all(ingested.get((s, b.batch_date)) == b.fingerprint(s) for s in b.sources):
            continue
        moved.append(ops.archive(landing, archive, b, ingested))
        print(f"archived {b.batch_date} -> {moved[-1]}")
    print(f"{len(moved)} batches archived")
    return {"archived": moved}


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("command", choices=["upload", "list", "archive"])
    p.add_argument("paths", nargs="*", help="upload: local files or folders")
    p.add_argument("--source", help="upload: the source the files belong to")
    p.add_argument("--date", type=cli.iso_date, help="upload: arrival date (default today); archive: the batch")
    p.add_argument("--overwrite", action="store_true", help="upload: replace a landed file of the same name")
    p.add_argument("--ingested", action="store_true", help="archive: every batch that is fully ingested")
    a = p.parse_args()
    if a.command == "upload" and (not a.paths or not a.source):
        p.error("upload needs FILE_OR_DIR ... and --source SOURCE")
    cli.main(run, a)
