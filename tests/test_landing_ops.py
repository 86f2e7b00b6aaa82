"""Landing uploads on a local landing zone: whole trees of dates and sources in one call,
checked before anything moves. The same over WebHDFS: tests/test_hdfs_service.py (a mini
HDFS) and tests/test_cluster.py (the stack, through the job)."""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from conftest import edit_yaml, run_cmd
from lakeml.lake import landing_ops as ops

SOURCES = ["customers", "payments", "support_tickets"]


def quarters(n: int) -> list[str]:
    """n quarter starts from 2020-01-01: the dates of the landing tree."""
    return [date(2020 + q // 4, 1 + 3 * (q % 4), 1).isoformat() for q in range(n)]


def make_tree(root: Path, days: list[str], sources: list[str], files: int = 2) -> dict[str, bytes]:
    """``root/<day>/<source>/part-<k>.csv`` for every day and source; returns rel path -> bytes."""
    out = {}
    for day in days:
        for src in sources:
            for k in range(files):
                rel = f"{day}/{src}/part-{k}.csv"
                body = f"id,day,source\n{k},{day},{src}\n".encode()
                (root / day / src).mkdir(parents=True, exist_ok=True)
                (root / rel).write_bytes(body)
                out[rel] = body
    return out


def landed(zone: Path) -> dict[str, bytes]:
    """Every file under the zone (hidden ones too: nothing may be left half-way)."""
    if not zone.exists():
        return {}
    return {str(p.relative_to(zone)): p.read_bytes() for p in sorted(zone.rglob("*")) if p.is_file()}


class CountingStore(ops.LocalStore):
    """A local store that counts listings and can fail the n-th upload."""

    def __init__(self, root: str, fail_at: int | None = None):
        super().__init__(root)
        self.listed: list[str] = []
        self.puts = 0
        self.fail_at = fail_at

    def list(self, rel: str = ""):
        self.listed.append(rel)
        return super().list(rel)

    def put(self, rel, local, overwrite=False):
        self.puts += 1
        if self.puts == self.fail_at:
            raise OSError("disk full")
        super().put(rel, local, overwrite)


@pytest.fixture()
def zone(tmp_path) -> Path:
    return tmp_path / "landing" / "churn"


def test_a_tree_of_25_dates_and_2_sources_lands_whole(tmp_path, zone):
    tree = make_tree(tmp_path / "exports", quarters(25), ["customers", "payments"])
    up = ops.upload(ops.LocalStore(str(zone)), [tmp_path / "exports"], SOURCES, usecase="churn")
    assert landed(zone) == tree  # every file, its bytes, and no temporary file left behind
    assert (up.files, len(up.folders), up.bytes) == (100, 50, sum(len(b) for b in tree.values()))
    assert up.folders["2020-01-01/customers"] == ["part-0.csv", "part-1.csv"]
    assert up.zone == str(zone)


def test_a_date_folder_and_several_paths_in_one_call(tmp_path, zone):
    a = make_tree(tmp_path / "a", ["2026-01-01"], ["customers"])
    b = make_tree(tmp_path / "b", ["2026-02-01", "2026-03-01"], ["payments"])
    ops.upload(ops.LocalStore(str(zone)), [tmp_path / "a" / "2026-01-01", tmp_path / "b"], SOURCES)
    assert landed(zone) == {**a, **b}


def test_with_source_files_and_folders_of_files_go_to_one_batch(tmp_path, zone):
    (tmp_path / "one.csv").write_text("id\n1\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "two.csv").write_text("id\n2\n")
    (tmp_path / "more" / ".hidden").write_text("skipped, as ingest skips it")
    up = ops.upload(ops.LocalStore(str(zone)), [tmp_path / "one.csv", tmp_path / "more"], SOURCES,
                    source="payments", batch_date=date(2026, 12, 1))
    assert landed(zone) == {"2026-12-01/payments/one.csv": b"id\n1\n", "2026-12-01/payments/two.csv": b"id\n2\n"}
    assert up.folders == {"2026-12-01/payments": ["one.csv", "two.csv"]}


def test_sub_folders_of_a_source_folder_land_as_they_are(tmp_path, zone):
    """Ingest reads them as part of the batch; an export split by region keeps its folders,
    and a second upload of the same nested file is refused like any other."""
    src = tmp_path / "exports" / "2026-01-01" / "customers"
    (src / "eu" / "fr").mkdir(parents=True)
    (src / "top.csv").write_text("id\n1\n")
    (src / "eu" / "fr" / "Clients – été.csv").write_text("id\n2\n")
    up = ops.upload(ops.LocalStore(str(zone)), [tmp_path / "exports"], SOURCES)
    assert landed(zone) == {"2026-01-01/customers/top.csv": b"id\n1\n", "2026-01-01/customers/eu/fr/Clients – été.csv": b"id\n2\n"}
    assert up.folders == {"2026-01-01/customers": ["eu/fr/Clients – été.csv", "top.csv"]}
    [b] = ops.list_batches(ops.LocalStore(str(zone)))
    assert b.sources == {"customers": [("eu/fr/Clients – été.csv", 5), ("top.csv", 5)]}
    with pytest.raises(ops.LandingError, match="already landed"):
        ops.upload(ops.LocalStore(str(zone)), [tmp_path / "exports"], SOURCES)


def _bad_tree(root: Path) -> None:
    make_tree(root, ["2026-01-01", "2026-02-01"], ["customers"])  # good parts: must not land either
    make_tree(root, ["2026-01-01", "2026-02-01"], ["tickets"])  # not a source, twice
    (root / "misc").mkdir()  # not a date
    (root / "2026-13-01" / "customers").mkdir(parents=True)  # not a real date
    (root / "notes.txt").write_text("x")  # a file outside the layout
    (root / "2026-01-01" / "readme.md").write_text("x")  # a file in a date folder
    (root / "2026-02-01" / "customers" / "nested").mkdir()  # a folder in a source folder: part of the batch, no problem


def test_every_layout_problem_is_reported_and_nothing_lands(tmp_path, zone):
    _bad_tree(tmp_path / "exports")
    with pytest.raises(ops.LandingError) as e:
        ops.upload(ops.LocalStore(str(zone)), [tmp_path / "exports"], SOURCES, usecase="churn")
    x = tmp_path / "exports"
    assert str(e.value).splitlines() == [
        f"nothing uploaded: 5 problems in {x}",
        f"  {x}/2026-01-01/tickets (and 1 more folder): 'tickets' is not a source of use case churn; "
        "its sources: customers, payments, support_tickets",
        f"  {x}/2026-01-01/readme.md: a file directly in a date folder; files go in 2026-01-01/<source>/",
        f"  {x}/2026-13-01: not a date folder (YYYY-MM-DD); "
        "without --source a folder is uploaded as laid out: <YYYY-MM-DD>/<source>/<files>",
        f"  {x}/misc: not a date folder (YYYY-MM-DD); without --source a folder is uploaded as laid out: <YYYY-MM-DD>/<source>/<files>",
        f"  {x}/notes.txt: a file outside a <YYYY-MM-DD>/<source>/<files> folder",
    ]
    assert not zone.exists()


@pytest.mark.parametrize(
    "case, kwargs, message",
    [
        ("missing", {}, r"^nothing uploaded: 1 problem in .*/nope\n  .*/nope: no such file or folder$"),
        ("file", {}, r"a file; upload single files with --source S \[--date D\], or folders laid out as"),
        ("tree", {"source": "customers"}, r"has date folders \(2026-01-01\); with --source a folder's files go to one batch"),
        ("file", {"source": "tickets"},
         r"--source tickets: 'tickets' is not a source of the use case; its sources: customers, payments, support_tickets"),
        ("tree", {"batch_date": date(2026, 1, 1)}, r"^--date goes with --source: without --source a folder is uploaded as laid out"),
        ("twice", {"source": "customers"}, r"a/x\.csv and .*b/x\.csv would both land as \d{4}-\d\d-\d\d/customers/x\.csv"),
        ("empty", {}, r"empty folder"),
    ],
)
def test_a_refused_upload_lands_nothing(tmp_path, zone, case, kwargs, message):
    make_tree(tmp_path / "tree", ["2026-01-01"], ["customers"])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.csv").write_text("1")
    (tmp_path / "b" / "x.csv").write_text("2")
    (tmp_path / "empty").mkdir()
    paths = {"missing": [tmp_path / "nope"], "file": [tmp_path / "a" / "x.csv"], "tree": [tmp_path / "tree"],
             "twice": [tmp_path / "a", tmp_path / "b"], "empty": [tmp_path / "empty"]}[case]  # fmt: skip
    with pytest.raises(ops.LandingError, match=message):
        ops.upload(ops.LocalStore(str(zone)), paths, SOURCES, **kwargs)
    assert not zone.exists()


def test_files_that_already_landed_refuse_the_whole_upload_unless_overwrite(tmp_path, zone):
    store = ops.LocalStore(str(zone))
    first = make_tree(tmp_path / "exports", ["2026-01-01", "2026-02-01"], ["customers"])
    ops.upload(store, [tmp_path / "exports"], SOURCES)
    # a new date beside two that already landed, one of them changed
    second = make_tree(tmp_path / "exports", ["2026-03-01"], ["customers"])
    (tmp_path / "exports" / "2026-01-01" / "customers" / "part-0.csv").write_bytes(b"changed\n")
    with pytest.raises(ops.LandingError) as e:
        ops.upload(store, [tmp_path / "exports"], SOURCES)
    assert str(e.value).splitlines()[0] == (
        "nothing uploaded: 4 files already landed, and a landed file is never replaced silently "
        "(--overwrite replaces them; ingest then reads their batches again):"
    )
    assert f"  {zone}/2026-02-01/customers/part-1.csv" in str(e.value).splitlines()
    assert landed(zone) == first  # the new date did not land, the changed file was not replaced
    ops.upload(store, [tmp_path / "exports"], SOURCES, overwrite=True)
    assert landed(zone) == {**first, **second, "2026-01-01/customers/part-0.csv": b"changed\n"}


def test_the_existence_check_lists_folders_not_files(tmp_path, zone):
    make_tree(tmp_path / "exports", quarters(8), ["customers", "payments"], files=3)
    store = CountingStore(str(zone))
    ops.upload(store, [tmp_path / "exports"], SOURCES)
    assert store.listed == [""]  # a new zone: one listing for 48 files
    make_tree(tmp_path / "more", quarters(9)[8:], ["customers"])
    store.listed.clear()
    ops.upload(store, [tmp_path / "more"], SOURCES)
    assert store.listed == [""]  # a new date: still one
    store.listed.clear()
    with pytest.raises(ops.LandingError, match="48 files already landed"):
        ops.upload(store, [tmp_path / "exports"], SOURCES)
    assert sorted(store.listed) == sorted(["", *quarters(8), *(f"{d}/{s}" for d in quarters(8) for s in ("customers", "payments"))])


def test_a_failed_upload_says_how_many_files_had_landed(tmp_path, zone):
    make_tree(tmp_path / "exports", quarters(3), ["customers"])
    store = CountingStore(str(zone), fail_at=3)
    with pytest.raises(ops.LandingError) as e:
        ops.put(store, ops.plan_upload([tmp_path / "exports"], SOURCES), workers=1)
    assert str(e.value) == (
        f"upload to {zone} failed: disk full; 2 of 6 files had landed "
        "(the same command with --overwrite lands the rest, replacing those with the same files)"
    )
    assert sorted(landed(zone)) == ["2020-01-01/customers/part-0.csv", "2020-01-01/customers/part-1.csv"]


def test_an_upload_never_replaces_a_file_that_appears_meanwhile(tmp_path, zone):
    (tmp_path / "x.csv").write_text("new")
    store = ops.LocalStore(str(zone))
    (zone / "2026-01-01" / "customers").mkdir(parents=True)
    (zone / "2026-01-01" / "customers" / "x.csv").write_text("old")
    with pytest.raises(ops.LandingError, match="x.csv appeared while uploading; it was left as it is"):
        store.put("2026-01-01/customers/x.csv", str(tmp_path / "x.csv"))
    assert landed(zone) == {"2026-01-01/customers/x.csv": b"old"}


@pytest.mark.subprocess
def test_the_job_uploads_a_tree_for_the_usecase_given_before_it(tmp_path, conf_copy):
    """./spark-submit.sh --usecase NAME jobs/landing.py upload TREE: one JVM, the use case's
    own zone, and a refusal that lands nothing."""
    shutil.copytree(conf_copy / "churn", conf_copy / "other")
    edit_yaml(conf_copy / "other" / "usecase.yaml", lambda d: d.update(name="other", database="other"))
    data = tmp_path / "data"
    tree = make_tree(tmp_path / "exports", quarters(25), ["customers", "payments"])
    v = {"LAKEML_DATA_DIR": str(data)}
    cmd = ["./spark-submit.sh", "--usecase", "other", "--conf-dir", str(conf_copy), "jobs/landing.py", "upload"]
    p = run_cmd([*cmd, str(tmp_path / "exports")], v)
    assert landed(data / "landing" / "other") == tree and not (data / "landing" / "churn").exists()
    assert f"landed {data}/landing/other/2020-01-01/customers/: part-0.csv, part-1.csv\n" in p.stdout
    assert f"uploaded 100 files (0.0 MB) into 50 folders of {data}/landing/other in " in p.stdout
    # again, with one more date and a folder that is not one: refused whole, exit 2
    make_tree(tmp_path / "exports", ["2026-12-01"], ["customers"])
    (tmp_path / "exports" / "latest").mkdir()
    again = run_cmd([*cmd, str(tmp_path / "exports")], v, check=False)
    assert again.returncode == 2
    # spark-submit hands the Python driver's stderr to its stdout
    assert (f"error: nothing uploaded: 1 problem in {tmp_path / 'exports'}\n"
            f"  {tmp_path / 'exports' / 'latest'}: not a date folder") in again.stdout
    assert landed(data / "landing" / "other") == tree
    assert os.listdir(data / "landing") == ["other"]
