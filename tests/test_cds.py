"""The driver's class-data-sharing archive (lakeml.bench.cds): named by what it is valid for,
mapped when it is there, and a JVM that cannot use it starts quietly as without it."""

import subprocess

from lakeml.core import session


def _root(tmp_path, monkeypatch):
    """A checkout with one jar, its jars folder the one in use, the archive not turned off."""
    jars = tmp_path / ".cache" / "jars"
    jars.mkdir(parents=True)
    (jars / "delta-spark_2.13-4.1.0.jar").write_bytes(b"")
    monkeypatch.setenv("LAKEML_JARS_DIR", str(jars))
    monkeypatch.delenv("LAKEML_CDS", raising=False)
    return tmp_path


def test_the_archive_is_named_by_java_spark_and_the_jars(tmp_path, monkeypatch):
    root = _root(tmp_path, monkeypatch)
    first = session.cds_archive(root)
    assert first.parent == root / ".cache" / "cds" and first.name.startswith("driver-") and first.suffix == ".jsa"
    assert session.cds_archive(root) == first  # stable
    (root / ".cache" / "jars" / "lakeml-jvm-0123456789ab.jar").write_bytes(b"")
    assert session.cds_archive(root) != first  # another jar set: another archive


def test_the_options_map_the_archive_only_when_it_is_there(tmp_path, monkeypatch):
    root = _root(tmp_path, monkeypatch)
    assert session.cds_opts(root) == ""
    archive = session.cds_archive(root)
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"not an archive")
    opts = session.cds_opts(root)
    assert f"-XX:SharedArchiveFile={archive}" in opts.split() and "-Xlog:cds=off" in opts.split()
    monkeypatch.setenv("LAKEML_CDS", "0")
    assert session.cds_opts(root) == ""


def test_a_jvm_maps_the_archive_and_one_that_cannot_use_it_starts_quietly(tmp_path, monkeypatch):
    """A real dynamic archive (of a one-class jar: the JVM mechanism the driver's archive
    uses): a JVM with the same class path loads its classes from the archive; a JVM with
    another class path (a job with the JDBC driver first, a moved jar) starts as without it
    and says nothing, where the same JVM without the options warns (a job's console stays
    clean)."""
    root = _root(tmp_path, monkeypatch)
    java = session.java_bin()
    src = tmp_path / "src"
    src.mkdir()
    (src / "Hello.java").write_text('public class Hello { public static void main(String[] a) { System.out.println("hi"); } }\n')
    subprocess.run([str(java.parent / "javac"), "-d", str(src), str(src / "Hello.java")], check=True)
    jar = tmp_path / "hello.jar"
    subprocess.run([str(java.parent / "jar"), "cf", str(jar), "-C", str(src), "Hello.class"], check=True)
    archive = session.cds_archive(root)
    archive.parent.mkdir(parents=True)
    subprocess.run([str(java), f"-XX:ArchiveClassesAtExit={archive}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off",
                    "-cp", str(jar), "Hello"], check=True, capture_output=True)
    opts = session.cds_opts(root).split()
    assert opts, "the archive was written"

    used = subprocess.run([str(java), *opts, "-Xlog:class+load", "-cp", str(jar), "Hello"], capture_output=True, text=True)
    assert "Hello source: shared objects file" in used.stdout

    moved = tmp_path / "moved.jar"
    moved.write_bytes(jar.read_bytes())
    loud = subprocess.run([str(java), f"-XX:SharedArchiveFile={archive}", "-cp", str(moved), "Hello"], capture_output=True, text=True)
    assert "Unable to use shared archive" in loud.stdout + loud.stderr  # what the options silence
    quiet = subprocess.run([str(java), *opts, "-Xlog:class+load", "-cp", str(moved), "Hello"], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "Hello source: file:" in quiet.stdout and "\nhi\n" in quiet.stdout  # from the jar, as without
    assert "shared archive" not in quiet.stdout.lower()
