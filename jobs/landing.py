"""Landing-zone operations of one use case: upload files as batches, list batches, archive ingested ones.

    ./spark-submit.sh [--env NAME] [--usecase NAME] jobs/landing.py upload FOLDER [...]
    ./spark-submit.sh [--env NAME] [--usecase NAME] jobs/landing.py upload FILE_OR_FOLDER [...] --source SOURCE [--date YYYY-MM-DD]
    ./spark-submit.sh [--env NAME] [--usecase NAME] jobs/landing.py list
    ./spark-submit.sh [--env NAME] [--usecase NAME] jobs/landing.py archive (--date YYYY-MM-DD | --ingested)

`upload` without --source takes folders laid out as the landing zone,
<YYYY-MM-DD>/<source>/<files> (or one <YYYY-MM-DD> folder of it), any number of dates
and sources at once; with --source it puts files, or the files of folders, into
<date>/<source>/ (--date, default today). Everything is checked before anything moves:
a folder that is not a date, a source the use case does not have, a file that already
landed (unless --overwrite) refuse the whole upload. Files move through WebHDFS (HdfsCLI,
several at a time) when the landing zone is on HDFS, through the file system otherwise,
each written beside its target and renamed into place.
`list` shows each batch as pending or ingested (against the ingest log); `archive` moves
a batch out of the landing zone only once it is ingested as it stands.
"""

from lakeml import cli


def run(args):
    from lakeml.core.errors import UsageError
    from lakeml.lake import landing_ops as ops
    from lakeml.lake.stores import zone_stores

    env, uc = cli.load(args)
    landing, archive = zone_stores(env, uc.name)
    if args.command == "upload":
        up = ops.upload(landing, args.paths, uc.sources, args.source, args.date, args.overwrite, usecase=uc.name)
        for folder, names in up.folders.items():
            print(f"landed {landing.path(folder)}/: {', '.join(names) if len(names) <= 3 else f'{len(names)} files'}")
        mb = up.bytes / 1e6
        print(f"uploaded {up.files} files ({mb:.1f} MB) into {len(up.folders)} folders of {up.zone} in {up.seconds:.2f}s "
              f"({up.workers} at a time)")
        return up.as_dict()
    batches = ops.list_batches(landing)
    logged = _logged(env, uc)
    if args.command == "list":
        print(f"landing zone {env.landing_zone(uc.name)}: {len(batches)} batches")
        for b in batches:
            state = {s: "ingested" if b.ingested(s, logged) else "pending" for s in sorted(b.files)}
            overall = "ingested" if state and all(v == "ingested" for v in state.values()) else "pending"
            files = sum(len(v) for v in b.files.values())
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
        if args.ingested and not all(b.ingested(s, logged) for s in b.files):
            continue
        moved.append(ops.archive(landing, archive, b, logged))
        print(f"archived {b.batch_date} -> {moved[-1]}")
    print(f"{len(moved)} batches archived")
    return {"archived": moved}


def _logged(env, uc):
    """The ingest log's fingerprint of each (source, batch date); the only step that needs Spark."""
    from lakeml.core import session
    from lakeml.lake import ingest

    return ingest.logged(session.get_spark(env, "lakeml-landing"), uc)


if __name__ == "__main__":
    p = cli.parser(__doc__)
    p.add_argument("command", choices=["upload", "list", "archive"])
    p.add_argument("paths", nargs="*",
                   help="upload: folders laid out as <YYYY-MM-DD>/<source>/<files>; with --source files or folders of files")
    p.add_argument("--source", help="upload: the source the files belong to (without it, the sources are the folder names)")
    p.add_argument("--date", type=cli.iso_date, help="upload with --source: arrival date (default today); archive: the batch")
    p.add_argument("--overwrite", action="store_true", help="upload: replace landed files of the same name")
    p.add_argument("--ingested", action="store_true", help="archive: every batch that is fully ingested")
    a = p.parse_args()
    if a.command == "upload" and not a.paths:
        p.error("upload needs FOLDER ... (laid out as <YYYY-MM-DD>/<source>/<files>), or FILE_OR_FOLDER ... --source SOURCE")
    if a.command != "upload" and a.paths:
        p.error(f"{a.command} takes no paths (got {' '.join(a.paths)})")
    cli.main(run, a)
