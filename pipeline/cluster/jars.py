"""Fetch Hadoop's server jars from Maven Central and check them against a committed lock.

Why jars and not the release tarball: Maven Central is reachable where the Apache mirrors may
not be, and Maven checks each download against the repository's checksums (``-C``). The lock
(``hadoop-jars.lock``, sha256 per jar) pins the exact bytes on top of that, so a changed or
substituted artifact stops the start instead of running.

The result is a "Hadoop home" in the cache dir, outside the repo::

    <cache>/hadoop-<version>/lib/*.jar                 the classpath of every daemon
    <cache>/hadoop-<version>/webapps-root/webapps/...  HDFS's web UI files (on the classpath)

The HDFS web UI files ship only in ``hadoop-hdfs-<version>-tests.jar`` (the main jar has none;
the release tarball keeps them as loose files). Without ``webapps/hdfs`` on the classpath the
NameNode cannot start its HTTP server, so they are unpacked from that jar, which then stays off
the classpath.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from pipeline import config
from pipeline.cluster.errors import ClusterError

log = logging.getLogger(__name__)

POM = Path(__file__).with_name("hadoop-jars.pom.xml")
LOCK = Path(__file__).with_name("hadoop-jars.lock")
#: Written last into a verified home, holding the sha256 of the lock it was checked against:
#: a home is complete and current when its marker matches today's lock.
MARKER = ".verified"


def hadoop_home() -> Path:
    return config.CACHE_DIR / f"hadoop-{config.HADOOP_VERSION}"


def classpath(conf_dir: Path) -> str:
    """The daemons' classpath: configuration first (Hadoop reads *-site.xml from it)."""
    home = hadoop_home()
    return f"{conf_dir}:{home / 'webapps-root'}:{home / 'lib'}/*"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_lock(lock: Path = LOCK) -> dict[str, str]:
    """jar file name -> sha256, from lines ``<sha256>  <name>`` (sha256sum's format)."""
    if not lock.exists():
        raise ClusterError(f"no jar lock at {lock}: run `python -m pipeline.cluster lock`")
    entries: dict[str, str] = {}
    version = None
    for line in lock.read_text().splitlines():
        if line.startswith("# hadoop "):
            version = line.split()[2]
        if not line.strip() or line.startswith("#"):
            continue
        digest, name = line.split(maxsplit=1)
        entries[name.strip()] = digest
    if version != config.HADOOP_VERSION:
        raise ClusterError(
            f"{lock.name} pins Hadoop {version}, config asks for {config.HADOOP_VERSION}: "
            "run `python -m pipeline.cluster lock` to re-pin")
    return entries


def _maven_fetch(dest: Path) -> None:
    """copy-dependencies of the pom into dest, with Maven's strict checksum policy."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ClusterError("Maven (mvn) is not installed: it fetches Hadoop's jars; "
                           "install it (apt-get install maven)")
    cmd = [mvn, "-B", "-q", "-C", "-f", str(POM),
           f"-Dmaven.repo.local={config.CACHE_DIR / 'm2'}",
           f"-Dhadoop.version={config.HADOOP_VERSION}",
           "dependency:copy-dependencies", "-DincludeScope=runtime",
           f"-DoutputDirectory={dest}"]
    log.info("fetching Hadoop %s jars from Maven Central: %s", config.HADOOP_VERSION,
             " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise ClusterError("mvn could not fetch Hadoop's jars:\n" + "\n".join(tail))


def _verify(lib: Path, expected: dict[str, str]) -> None:
    found = {p.name for p in lib.glob("*.jar")}
    missing, extra = sorted(set(expected) - found), sorted(found - set(expected))
    if missing or extra:
        raise ClusterError(f"jars differ from {LOCK.name}: missing {missing}, unexpected {extra}")
    for name, digest in sorted(expected.items()):
        actual = _sha256(lib / name)
        if actual != digest:
            raise ClusterError(f"sha256 mismatch for {name}: {LOCK.name} has {digest}, "
                               f"the download has {actual}; refusing to run it (a corrupt "
                               f"cached copy? remove {config.CACHE_DIR / 'm2'} and retry)")


def _unpack_webapps(lib: Path, root: Path) -> int:
    """Unpack webapps/ from hadoop-hdfs-*-tests.jar into root, then drop that jar."""
    tests_jar = lib / f"hadoop-hdfs-{config.HADOOP_VERSION}-tests.jar"
    with zipfile.ZipFile(tests_jar) as jar:
        members = [m for m in jar.namelist() if m.startswith("webapps/")]
        jar.extractall(root, members)
    tests_jar.unlink()
    return len(members)


def _lock_digest() -> str:
    return hashlib.sha256(LOCK.read_bytes()).hexdigest()


def is_current() -> bool:
    """The Hadoop home exists and was verified against the lock as it is now."""
    marker = hadoop_home() / MARKER
    return marker.exists() and marker.read_text().strip() == _lock_digest()


def ensure_jars() -> Path:
    """The verified Hadoop home; fetches and verifies it first when absent (about 100 MB)."""
    home = hadoop_home()
    expected = read_lock()
    if is_current():
        return home
    config.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"{home.name}.", dir=config.CACHE_DIR) as tmp:
        staging = Path(tmp) / "home"
        _maven_fetch(staging / "lib")
        _verify(staging / "lib", expected)
        size = sum(p.stat().st_size for p in (staging / "lib").glob("*.jar"))
        files = _unpack_webapps(staging / "lib", staging / "webapps-root")
        (staging / MARKER).write_text(_lock_digest() + "\n")
        if home.exists():  # incomplete, or checked against another lock: replace it
            shutil.rmtree(home)
        staging.rename(home)
    log.info("Hadoop home ready at %s: %d jars (%.1f MB) verified against %s, %d web UI "
             "files unpacked, in %.1f s", home, len(expected), size / 1e6, LOCK.name, files,
             time.monotonic() - start)
    return home


def write_lock() -> Path:
    """Fetch the pom's jars and pin their sha256 in the lock (after a version change)."""
    config.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=config.CACHE_DIR) as tmp:
        lib = Path(tmp) / "lib"
        _maven_fetch(lib)
        lines = [f"# hadoop {config.HADOOP_VERSION}",
                 "# sha256 of every jar hadoop-jars.pom.xml resolves to; verified after each "
                 "download.",
                 "# Regenerate with `python -m pipeline.cluster lock` after changing the pom "
                 "or HADOOP_VERSION."]
        lines += [f"{_sha256(p)}  {p.name}" for p in sorted(lib.glob("*.jar"))]
    LOCK.write_text("\n".join(lines) + "\n")
    log.info("pinned %d jars in %s", len(lines) - 3, LOCK)
    return LOCK
