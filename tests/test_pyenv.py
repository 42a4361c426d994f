"""The packed executors' environment (pipeline.cluster.pyenv), on a small virtual environment
made for the test: what goes in, what stays out, where its Python points, when it is rebuilt.
The real one travels to YARN in the cluster and compose tests."""
from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from pipeline import config
from pipeline.cluster import conf, pyenv

PROBE = config.REPO_ROOT / "tests" / "compose" / "python_probe.py"
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def _dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.fixture
def fake_venv(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "venv"
    venv.EnvBuilder(symlinks=True, with_pip=False).create(root)
    site = root / SITE
    for rel in ("tensorflow/__init__.py", "tensorflow/include/big.h", "pyspark/__init__.py",
                "pyspark/jars/spark-core.jar", "pip/__init__.py", "keras/__init__.py"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x = 1\n")
    (site / "__editable__.xray_pipeline-0.1.0.pth").write_text("import finder\n")
    _dist(site, "tensorflow", "2.21.0")
    (root / "bin" / "some-tool").write_text("#!/somewhere/python\n")
    monkeypatch.setattr(pyenv, "venv", lambda: root)
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    return root


def test_archive_ships_libraries_and_points_python_at_the_nodes_interpreter(fake_venv):
    archive = pyenv.build("/usr")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        links = {m.name: m.linkname for m in tar.getmembers() if m.issym()}
        cfg = tar.extractfile("pyvenv.cfg").read().decode()
    assert {f"{SITE}/tensorflow/__init__.py", f"{SITE}/keras/__init__.py",
            f"{SITE}/pyspark/__init__.py"} <= names
    left_out = [n for n in names if "/include/" in n or "/jars/" in n or "__editable__" in n
                or n.startswith((f"{SITE}/pip/", "bin/some-tool"))]
    assert left_out == []
    interpreter = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    assert links["bin/python"] == links["bin/python3"] == interpreter
    assert "home = /usr/bin\n" in cfg


def test_archive_is_built_once_and_again_when_the_installed_packages_change(fake_venv):
    first = pyenv.build("/usr")
    stamp = first.stat().st_mtime_ns
    assert pyenv.build("/usr") == first and first.stat().st_mtime_ns == stamp
    assert pyenv.build("/opt/python") != first  # other nodes' interpreter, another archive
    _dist(fake_venv / SITE, "numpy", "2.3.0")
    assert pyenv.build("/usr") != first
    assert not [p for p in config.CACHE_DIR.iterdir() if p.name.startswith(".")]  # no temp


def test_a_python_outside_a_virtual_environment_is_refused(monkeypatch):
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    with pytest.raises(pyenv.ClusterError, match="not run in a virtual environment"):
        pyenv.venv()


def test_settings_respect_the_jobs_own_choice():
    class Conf(dict):
        def get(self, key, default=None):
            return super().get(key, default)

        def contains(self, key):
            return key in self

    assert pyenv.spark_settings(None, Conf({"spark.xray.pyenv.enabled": "false"})) == {}
    on = {"spark.xray.pyenv.enabled": "true"}
    assert pyenv.spark_settings(None, Conf({**on, "spark.archives": "hdfs:///x.tar#env"})) == {}
    assert pyenv.spark_settings(None, Conf({**on, "spark.yarn.dist.archives": "a.tgz#e"})) == {}


def test_package_zip_holds_the_pipeline_package_at_its_root(tmp_path):
    """What executors put on their path imports as ``pipeline`` with nothing installed: an
    interpreter without site-packages (-S) and without PYTHONPATH or the cwd (-I)."""
    archive = pyenv.package_zip(tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import pipeline.cluster.errors as e; "
            "print(e.__file__)")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(archive)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(archive / "pipeline" / "cluster" / "errors.py")
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert "pipeline/runtime/session.py" in names
    assert not [n for n in names if "__pycache__" in n or not n.startswith("pipeline/")]


def test_the_native_cluster_ships_nothing_unless_asked(tmp_path, monkeypatch):
    """On by default (a user's own cluster, Docker); the native cluster's executors are this
    machine's venv, so its rendered configuration turns it off."""
    monkeypatch.setattr(config, "STATE_DIR", tmp_path / "state")
    conf.render()
    rendered = conf.read_spark_defaults(conf.spark_conf_dir() / "spark-defaults.conf")
    assert rendered["spark.xray.pyenv.enabled"] == "false"


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.ship  # about 11 min on a busy machine: with the compose tests, not in `make test`
@pytest.mark.budget(900)
def test_native_executors_run_the_shipped_environment(spark_env):
    """The Docker cluster's path on the native cluster, asked for explicitly: the executors'
    interpreter is the archive's (linked to this machine's Python), TensorFlow comes from
    YARN's localized copy and ``pipeline`` from the zip the driver added, not from the venv's
    editable install."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", "yarn",
         "--conf", "spark.xray.pyenv.enabled=true", str(PROBE)],
        cwd=config.REPO_ROOT, env=spark_env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print("\n".join(line for line in done.stderr.splitlines() if "Python environment" in line))
    found = [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
             if line.startswith("probe ")]
    assert found, done.stdout[-2000:]
    for probe in found:
        assert probe["executable"].endswith("/environment/bin/python"), probe
        assert "/filecache/" in probe["tensorflow_real"], probe
        assert probe["base"] == sys.base_prefix, probe
        assert "pipeline.zip" in probe["pipeline"], probe
