"""The executors' Python libraries, shipped with every job on YARN (``--archives``).

Spark's "Python package management" recipe: the driver's virtual environment is packed into
an archive, YARN localizes it on each node and unpacks it as ``./environment``, and the
executors run ``./environment/bin/python``. On YARN the recipe's ``--archives`` is
``spark.yarn.dist.archives``: YARN's distributed cache alone ships it. (``spark.archives``
would also make the driver download and unpack the whole archive, 2.4 GB, at every start.) A node then needs only a Python interpreter of
the driver's minor version, not pyspark, TensorFlow or Keras: the Docker cluster's
NodeManagers have none of them, and native mode goes through the same code, so one path is
tested twice.

Costs, each paid once: the archive is built into the cache dir once per set of installed
distributions (their names and versions, which change with setup.cfg), uploaded to HDFS once
(``spark.xray.pyenv.dir``, default ``.xray/pyenv`` in the user's HDFS home; to a temporary
name, then renamed), and localized once per node and user: it is readable by its owner only,
so YARN keeps it in the user's PRIVATE cache, reused by all of that user's applications. Not
PUBLIC on purpose: YARN resets the permissions of every file of a PUBLIC archive, and without
Hadoop's native library that is one ``chmod`` process per file (19,000 here), minutes per node.

Left out of the archive (safe: an executor's Python worker never imports them): pyspark's
jars (the JVM has them from spark.yarn.archive), TensorFlow's C++ headers, pip, setuptools,
the test-only browser driver, libclang, and the editable install of this project (executors
get ``pipeline`` from the driver: ``package_zip``, ``session.ship_package``). That is about
1.1 GB of a 3.4 GB virtual environment; what stays is mostly TensorFlow's 1.2 GB of shared
libraries.

Why this module packs with ``tarfile`` instead of venv-pack: venv-pack (0.2.0, and the
venv-pack2 fork) rewrites a venv's ``bin/python3 -> <home>/bin/python3`` link with
``--python-prefix /usr`` into ``/usr/bin/python3.113`` (a prefix replacement on
``<home>/bin/python``), and refuses editable installs. The archive it would make is the same
thing: the venv's files, its ``bin/python*`` links pointing at the nodes' interpreter, and
``pyvenv.cfg`` naming that interpreter's home.

Settings (spark-submit ``--conf`` or spark-defaults.conf): ``spark.xray.pyenv.enabled``
(default true; false: the nodes' own Python libraries are used. The native cluster's
rendered configuration says false: its one node is this machine, whose venv the executors
run directly, and shipping 2 GB to the same disk would cost every fresh cluster minutes of
upload and unpacking for nothing; tests/test_pyenv.py turns it on there once, so the same
path runs in both modes),
``spark.xray.pyenv.pythonPrefix`` (where the nodes' Python lives; default this interpreter's
own prefix, right when the nodes are this machine; the Docker cluster's client configuration
says ``/usr``), ``spark.xray.pyenv.dir``. A job given its own archives
(``spark.yarn.dist.archives`` or ``spark.archives``) keeps them.
"""
from __future__ import annotations

import hashlib
import io
import importlib.metadata
import logging
import os
import socket
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pipeline
from pipeline import config
from pipeline.cluster.errors import ClusterError

log = logging.getLogger(__name__)

ALIAS = "environment"
PYTHON = f"./{ALIAS}/bin/python"
DEFAULT_DIR = ".xray/pyenv"
#: Paths (relative to site-packages, or names of top-level entries there) never shipped.
#: playwright (its browser driver, 165 MB) serves only the browser tests; clang (libclang,
#: 62 MB) is a TensorFlow build-time requirement that ``import tensorflow`` never loads.
EXCLUDE_IN_SITE = ("pyspark/jars", "tensorflow/include", "pip", "setuptools", "_distutils_hack",
                   "distutils-precedence.pth", "playwright", "clang")
EXCLUDE_PREFIX = ("__editable__",)
#: Raised when the archive's layout changes, so an old cached archive is not reused.
FORMAT = "3"
#: An uncompressed tar: gzip of 2 GB took minutes of CPU on our 2 busy cores (about 1 MB/s
#: under load) to save disk and network time a cluster on one machine does not spend; YARN
#: unpacks .tar as it does .tar.gz.
SUFFIX = ".tar"


def venv() -> Path:
    """The driver's virtual environment, which the archive packs."""
    if sys.prefix == sys.base_prefix:
        raise ClusterError(f"{sys.executable} does not run in a virtual environment: the "
                           "executors' Python libraries are shipped as a packed venv "
                           "(--archives); run the jobs with the project's .venv, or set "
                           "spark.xray.pyenv.enabled=false when the nodes have the libraries")
    return Path(sys.prefix)


def package_zip(folder: Path) -> Path:
    """``folder/pipeline.zip``: this ``pipeline`` package (``pipeline/...`` inside, sources
    only), which ``session.ship_package`` adds to every job. The archive has no project code,
    so one archive serves every checkout and a code change never repacks gigabytes."""
    package = Path(pipeline.__file__).resolve().parent
    target = folder / "pipeline.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(package.parent))
    return target


def _site_packages(root: Path) -> Path:
    return root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / \
        "site-packages"


def identity(python_prefix: str) -> str:
    """What decides the archive's content: installed distributions, the nodes' Python,
    this module's layout. Same identity, same archive (built once, uploaded once)."""
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in
                   importlib.metadata.distributions(path=[str(_site_packages(venv()))]))
    text = "\n".join([FORMAT, python_prefix, sys.version.split()[0], *EXCLUDE_IN_SITE, *dists])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _skip(rel: str) -> bool:
    site = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages/"
    if not rel.startswith(site):
        return rel in ("pyvenv.cfg",) or rel.startswith(("include/", "share/"))
    inner = rel[len(site):]
    return (inner.startswith(EXCLUDE_PREFIX) or
            any(inner == ex or inner.startswith(ex + "/") for ex in EXCLUDE_IN_SITE))


def _pyvenv_cfg(python_prefix: str) -> bytes:
    major_minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    return (f"home = {python_prefix}/bin\ninclude-system-site-packages = false\n"
            f"version = {sys.version.split()[0]}\n"
            f"executable = {python_prefix}/bin/python{major_minor}\n").encode()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    archive.addfile(info, io.BytesIO(data))


def build(python_prefix: str) -> Path:
    """The archive for nodes whose Python is ``<python_prefix>/bin/python3.X``, from the cache
    dir or built there (written to a temporary name and renamed)."""
    root = venv()
    target = config.CACHE_DIR / f"pyenv-py{sys.version_info.major}{sys.version_info.minor}-" \
                                f"{identity(python_prefix)}{SUFFIX}"
    if target.exists():
        return target
    config.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    interpreter = f"{python_prefix}/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    files = 0
    with tarfile.open(tmp, "w") as archive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(filenames) + [d for d in dirnames
                                             if os.path.islink(os.path.join(dirpath, d))]:
                rel = os.path.normpath(os.path.join(rel_dir, name))
                path = os.path.join(dirpath, name)
                if _skip(rel):
                    continue
                if rel.startswith("bin/python") and os.path.islink(path):
                    info = tarfile.TarInfo(rel)
                    info.type, info.linkname = tarfile.SYMTYPE, interpreter
                    archive.addfile(info)
                elif rel.startswith("bin/") and not rel.startswith("bin/python"):
                    continue  # console scripts: their shebangs name this machine's venv
                else:
                    archive.add(path, rel, recursive=False)
                files += 1
            dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))
                           and not _skip(os.path.normpath(os.path.join(rel_dir, d)))]
        _add_bytes(archive, "pyvenv.cfg", _pyvenv_cfg(python_prefix))
    os.replace(tmp, target)
    log.info("packed the executors' Python environment %s: %d files from %s, %.0f MB, in "
             "%.1f s (python at %s on the nodes)", target.name, files, root,
             target.stat().st_size / 1e6, time.monotonic() - start, interpreter)
    return target


def upload(jvm, local: Path, hdfs_dir: str) -> str:
    """local into hdfs_dir through the driver's Hadoop client (any cluster the job's
    configuration names); a file of the same size already there is reused. Returns its URI."""
    hadoop = jvm.org.apache.hadoop
    hconf = hadoop.conf.Configuration()
    folder = hadoop.fs.Path(hdfs_dir)
    fs = folder.getFileSystem(hconf)
    folder = fs.makeQualified(folder)
    dst = hadoop.fs.Path(folder, local.name)
    size = local.stat().st_size
    if fs.exists(dst) and fs.getFileStatus(dst).getLen() == size:
        log.info("executors' Python environment already on HDFS: %s", dst.toString())
        return dst.toString()
    start = time.monotonic()
    fs.mkdirs(folder, hadoop.fs.permission.FsPermission("700"))
    tmp = hadoop.fs.Path(folder, f".{local.name}.{os.getpid()}.uploading")
    fs.copyFromLocalFile(False, True, hadoop.fs.Path(local.as_uri()), tmp)
    fs.setPermission(tmp, hadoop.fs.permission.FsPermission("600"))  # PRIVATE, see above
    if not fs.rename(tmp, dst):  # another job uploaded it meanwhile
        fs.delete(tmp, False)
    seconds = time.monotonic() - start
    log.info("uploaded the executors' Python environment to %s: %.0f MB in %.1f s",
             dst.toString(), size / 1e6, seconds)
    return dst.toString()


def _resourcemanager_answers(jvm) -> bool:
    """A TCP connection to the configured ResourceManager opens within 5 s."""
    address = jvm.org.apache.hadoop.yarn.conf.YarnConfiguration().getSocketAddr(
        "yarn.resourcemanager.address", "0.0.0.0:8032", 8032)
    try:
        socket.create_connection((address.getHostString(), address.getPort()), timeout=5).close()
    except OSError as exc:
        log.warning("no ResourceManager answers at %s:%d (%s): not shipping the executors' "
                    "Python", address.getHostString(), address.getPort(), exc)
        return False
    return True


def spark_settings(jvm, given) -> dict[str, str]:
    """The archive (spark.yarn.dist.archives) and the executors' Python for a YARN job,
    unless the job says otherwise (``given``: the SparkConf that spark-submit and
    spark-defaults.conf made)."""
    if given.get("spark.xray.pyenv.enabled", "true").lower() != "true":
        return {}
    for key in ("spark.yarn.dist.archives", "spark.archives"):
        if given.contains(key):
            log.info("%s is set (%s): the executors' Python comes from it", key, given.get(key))
            return {}
    if not _resourcemanager_answers(jvm):
        return {}  # Spark's own start then fails, fast and in one line: no upload for nothing
    prefix = given.get("spark.xray.pyenv.pythonPrefix", sys.base_prefix)
    uri = upload(jvm, build(prefix), given.get("spark.xray.pyenv.dir", DEFAULT_DIR))
    return {"spark.yarn.dist.archives": f"{uri}#{ALIAS}", "spark.pyspark.python": PYTHON,
            "spark.executorEnv.PYSPARK_PYTHON": PYTHON}
