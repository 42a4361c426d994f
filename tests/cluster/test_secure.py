"""The secure (Kerberos) native cluster: `make cluster-up SECURE=1`.

Two parts. The rendered configuration, without a cluster: what secure mode adds, and that a
plain cluster's files carry none of it. Then a private secure cluster (own state dir, KDC and
free ports; never the shared plain one): without a ticket HDFS's shell, WebHDFS and a Spark
read are refused with the authentication error; with the user's keytab, ingest and a small
train and evaluate on YARN work (train authenticating with --principal/--keytab, evaluate with
a ticket cache, both through delegation tokens).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests

from pipeline import config
from pipeline.cluster import conf, jars, kdc
from pipeline.data.sample_data import write_tree
from pipeline.fs import webhdfs
from tests.cluster_fixtures import isolated_env
from tests.reliability.runner import job_command

REALM = config.KERBEROS_REALM
USER = kdc.user()
NO_TICKET = "FILE:/nonexistent/xray-no-ticket"


# --- the rendered configuration ---------------------------------------------------------------

def _properties(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    return {p.findtext("name").strip(): (p.findtext("value") or "").strip()
            for p in root.iter("property")}


def _expanded(props: dict[str, str], value: str) -> str:
    """Hadoop's ${name} substitution, for reading the rendered files as a daemon does."""
    return re.sub(r"\$\{([^}$ ]+)\}", lambda m: _expanded(props, props[m[1]]), value)


@pytest.fixture
def render(tmp_path, monkeypatch):
    """render(secure) -> (every Hadoop property, expanded; spark-defaults; spark-env.sh)."""
    monkeypatch.setattr(config, "STATE_DIR", tmp_path / "state")

    def run(secure: bool) -> tuple[dict[str, str], dict[str, str], str]:
        kdc.record(secure)
        conf.render()
        hadoop = {}
        for name in ("core-site.xml", "hdfs-site.xml", "yarn-site.xml"):
            hadoop.update(_properties(conf.hadoop_conf_dir() / name))
        expanded = {k: _expanded(hadoop, v) for k, v in hadoop.items()}
        spark_dir = conf.spark_conf_dir()
        return (expanded, conf.read_spark_defaults(spark_dir / "spark-defaults.conf"),
                (spark_dir / "spark-env.sh").read_text())
    return run


def test_secure_configuration_has_kerberos_everywhere(render, tmp_path):
    hadoop, spark, spark_env = render(True)
    keytab = str(tmp_path / "state" / "krb5" / "service.keytab")
    expected = {
        "hadoop.security.authentication": "kerberos",
        "hadoop.security.authorization": "true",
        "hadoop.http.authentication.type": "kerberos",
        "hadoop.http.authentication.simple.anonymous.allowed": "false",
        "dfs.block.access.token.enable": "true",
        "dfs.data.transfer.protection": "authentication",
        "ignore.secure.ports.for.testing": "true",
        "dfs.namenode.kerberos.principal": f"nn/localhost@{REALM}",
        "dfs.datanode.kerberos.principal": f"dn/localhost@{REALM}",
        "dfs.web.authentication.kerberos.principal": f"HTTP/localhost@{REALM}",
        "yarn.resourcemanager.principal": f"rm/localhost@{REALM}",
        "yarn.nodemanager.principal": f"nm/localhost@{REALM}",
        "dfs.namenode.keytab.file": keytab,
        "yarn.nodemanager.keytab": keytab,
        "hadoop.http.authentication.kerberos.keytab": keytab,
    }
    assert {key: hadoop.get(key) for key in expected} == expected
    # The plain settings a secure cluster keeps, and the one the overlay replaced in place.
    assert hadoop["fs.permissions.umask-mode"] == "027"
    assert hadoop["dfs.replication"] == "1"
    core = (tmp_path / "state" / "conf" / "hadoop" / "core-site.xml").read_text()
    assert core.count("<name>hadoop.security.authentication</name>") == 1
    assert f"s/.*/{USER}/" in hadoop["hadoop.security.auth_to_local"]

    assert spark["spark.history.kerberos.enabled"] == "true"
    assert spark["spark.history.kerberos.principal"] == f"spark/localhost@{REALM}"
    assert spark["spark.history.kerberos.keytab"] == keytab
    krb5 = f"-Djava.security.krb5.conf={tmp_path / 'state' / 'krb5' / 'krb5.conf'}"
    assert spark["spark.executor.extraJavaOptions"] == krb5
    assert krb5 in spark_env
    # a caller's own ticket (KRB5CCNAME from their kinit) wins over the cluster's cache
    assert 'export KRB5CCNAME="${KRB5CCNAME:-FILE:' in spark_env


def test_plain_configuration_has_none_of_it(render):
    secure, _, _ = render(True)
    plain, spark, spark_env = render(False)
    overlay = set()
    for path in (conf.HADOOP_CONF_SRC / conf.SECURE_DIR).glob("*.xml"):
        overlay |= set(_properties(path))
    assert plain["hadoop.security.authentication"] == "simple"
    added = overlay - {"hadoop.security.authentication", "hadoop.rpc.protection",
                       "yarn.nodemanager.container-executor.class"}
    assert added and not added & set(plain), added & set(plain)
    assert added <= set(secure)
    assert not any("kerberos" in key for key in spark)
    assert "KRB5" not in spark_env and "krb5" not in spark_env


# --- a private secure cluster ---------------------------------------------------------------

def _cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """python -m pipeline.cluster ARGS, as the Makefile runs it, for the private cluster."""
    full_env = dict(env, XRAY_CLUSTER_MODE="native",
                    PYTHONPATH=os.pathsep.join(filter(None, [str(config.REPO_ROOT),
                                                             env.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "pipeline.cluster", *args], cwd=config.REPO_ROOT,
                          env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def secure(tmp_path_factory) -> dict:
    """The private secure cluster: its environment (ports, state dir) and paths."""
    state = tmp_path_factory.mktemp("secure") / "state"
    env = isolated_env(state)
    env["XRAY_NODEMANAGER_MEMORY_MB"] = "4096"  # an AM and one small executor
    up = _cli("up", "--secure", env=env)
    try:
        assert up.returncode == 0, up.stderr[-4000:]
        krb5 = state / "krb5"
        yield {"env": env, "state": state, "krb5_conf": krb5 / "krb5.conf",
               "user_keytab": krb5 / f"{USER}.keytab", "up": up,
               "webhdfs": f"http://localhost:{env['XRAY_PORT_NAMENODE_HTTP']}",
               "hdfs": f"hdfs://localhost:{env['XRAY_PORT_NAMENODE_RPC']}"}
    finally:
        down = _cli("down", env=env)
        assert down.returncode == 0, down.stderr[-2000:]


def _client_env(secure: dict, ccache: str) -> dict[str, str]:
    """A client of the private cluster whose Kerberos ticket cache is ccache."""
    state = secure["state"]
    return dict(os.environ, **{k: v for k, v in secure["env"].items() if k.startswith("XRAY_")},
                HADOOP_CONF_DIR=str(state / "conf" / "hadoop"),
                YARN_CONF_DIR=str(state / "conf" / "hadoop"),
                SPARK_CONF_DIR=str(state / "conf" / "spark"),
                KRB5_CONFIG=str(secure["krb5_conf"]), KRB5CCNAME=ccache,
                PYTHONPATH=str(config.REPO_ROOT), PYSPARK_PYTHON=sys.executable,
                PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
                TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def ticket(secure, tmp_path_factory) -> str:
    """A ticket cache of the test's own, filled from the user's keytab with MIT's kinit."""
    cache = f"FILE:{tmp_path_factory.mktemp('ccache') / 'cc'}"
    done = subprocess.run(["kinit", "-kt", str(secure["user_keytab"]), f"{USER}@{REALM}"],
                          env=_client_env(secure, cache), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return cache


def _hadoop(secure: dict, ccache: str, main: str, *args: str) -> subprocess.CompletedProcess:
    """A Hadoop command-line class (FsShell, ...) on the cluster's jars and configuration."""
    command = [str(config.JAVA_HOME / "bin" / "java"), f"-Djava.security.krb5.conf="
               f"{secure['krb5_conf']}", "-cp", jars.classpath(secure["state"] / "conf" / "hadoop"),
               main, *args]
    return subprocess.run(command, env=_client_env(secure, ccache), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.cluster
def test_status_reports_the_kdc_and_every_daemon(secure):
    assert "started: kdc, namenode, datanode" in secure["up"].stderr
    done = _cli("status", env=secure["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"ok +kdc .*realm " + re.escape(REALM), done.stdout), done.stdout
    for name in ("namenode", "datanodes", "resourcemanager", "nodemanagers", "history"):
        assert re.search(rf"ok +{name}\b", done.stdout), done.stdout


@pytest.mark.cluster
def test_plain_up_refuses_the_running_secure_cluster(secure):
    done = _cli("up", env=secure["env"])
    assert done.returncode == 2
    assert "runs secure (Kerberos)" in done.stderr and "cluster-down" in done.stderr


@pytest.mark.cluster
def test_principals_map_to_users_as_hadoop_reads_the_rules(secure, ticket):
    done = _hadoop(secure, ticket, "org.apache.hadoop.security.HadoopKerberosName",
                   f"nn/localhost@{REALM}", f"HTTP/localhost@{REALM}", f"alice@{REALM}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Name: nn/localhost@{REALM} to {USER}" in done.stdout
    assert f"Name: HTTP/localhost@{REALM} to {USER}" in done.stdout
    assert f"Name: alice@{REALM} to alice" in done.stdout


@pytest.mark.cluster
def test_hdfs_shell_needs_a_ticket(secure, ticket):
    refused = _hadoop(secure, NO_TICKET, "org.apache.hadoop.fs.FsShell", "-ls", "/")
    assert refused.returncode != 0
    assert "Client cannot authenticate via:[TOKEN, KERBEROS]" in refused.stderr, \
        refused.stderr[-2000:]
    allowed = _hadoop(secure, ticket, "org.apache.hadoop.fs.FsShell", "-ls", "/")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert "/spark-logs" in allowed.stdout


@pytest.mark.cluster
def test_webhdfs_needs_a_ticket(secure, ticket, monkeypatch):
    anonymous = requests.get(f"{secure['webhdfs']}/webhdfs/v1/?op=LISTSTATUS&user.name={USER}",
                             timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Negotiate"
    monkeypatch.setenv("KRB5_CONFIG", str(secure["krb5_conf"]))
    dest = webhdfs.parse_destination("hdfs:///tmp", secure["webhdfs"])
    monkeypatch.setenv("KRB5CCNAME", NO_TICKET)
    with pytest.raises(webhdfs.HdfsRefused, match="needs Kerberos .* no valid ticket .*"
                                                  "No Kerberos credentials available"):
        webhdfs.connect(dest)
    monkeypatch.setenv("KRB5CCNAME", ticket)
    client = webhdfs.connect(dest)
    assert type(client).__name__ == "KerberosClient"
    assert client.status("/spark-logs")["permission"] == "1777"


SPARK_READ = """
import sys
from pyspark.sql import SparkSession
spark = SparkSession.builder.appName("xray-secure-read").getOrCreate()
print("rows", spark.read.text(sys.argv[1]).count())
"""


@pytest.mark.cluster
def test_spark_read_needs_a_ticket(secure, ticket, tmp_path):
    script = tmp_path / "read.py"
    script.write_text(SPARK_READ)
    spark_submit = str(Path(sys.executable).parent / "spark-submit")
    target = f"{secure['hdfs']}/spark/spark-jars.zip"

    def read(ccache: str) -> subprocess.CompletedProcess:
        return subprocess.run([spark_submit, "--master", "local[1]", str(script), target],
                              env=_client_env(secure, ccache), capture_output=True, text=True,
                              timeout=300)
    refused = read(NO_TICKET)
    assert refused.returncode != 0
    assert "Client cannot authenticate via:[TOKEN, KERBEROS]" in refused.stdout + refused.stderr
    allowed = read(ticket)
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert re.search(r"^rows \d+$", allowed.stdout, re.M)


def _submit(env: dict[str, str], job: str, *args: str, spark: tuple[str, ...] = ()) -> None:
    """spark-submit --master yarn [spark options] jobs/<job>.py args, one executor."""
    command = job_command(job, *args, master="yarn", spark=(
        "--conf", "spark.executor.instances=1", "--conf", "spark.executor.memory=512m",
        "--conf", "spark.executor.memoryOverhead=1536m", *spark))
    done = subprocess.run(command, env=env, cwd=config.REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:]


@pytest.mark.cluster
@pytest.mark.slow
def test_ingest_train_evaluate_with_the_keytab(secure, ticket, tmp_path, monkeypatch):
    tree = tmp_path / "chest_xray"
    films = write_tree(tree, scale=1, seed=11)
    env = _client_env(secure, ticket)
    data = f"{secure['hdfs']}/user/{USER}/xray"
    ingest = subprocess.run([sys.executable, str(config.REPO_ROOT / "jobs" / "ingest.py"),
                             str(tree), f"{data}/chest_xray", "--webhdfs-url", secure["webhdfs"]],
                            env=env, capture_output=True, text=True, timeout=600)
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    assert f"uploaded {films}, skipped 0" in ingest.stdout + ingest.stderr

    # train logs in from the keytab itself (no ticket cache); evaluate uses the ticket cache
    _submit(dict(env, KRB5CCNAME=NO_TICKET), "train", "--data", f"{data}/chest_xray",
            "--model-out", f"{data}/model", "--weights", "none",
            spark=("--principal", f"{USER}@{REALM}", "--keytab", str(secure["user_keytab"])))
    _submit(env, "evaluate", "--data", f"{data}/chest_xray", "--model", f"{data}/model",
            "--out", f"{data}/report")

    monkeypatch.setenv("KRB5_CONFIG", str(secure["krb5_conf"]))
    monkeypatch.setenv("KRB5CCNAME", ticket)
    client = webhdfs.make_client(secure["webhdfs"], kerberos=True)
    with client.read(f"/user/{USER}/xray/report/metrics.json") as reader:
        doc = json.load(reader)
    assert doc["spark"]["master"] == "yarn" and doc["metrics"]["counts"]["total"] > 0
    assert client.status(f"/user/{USER}/xray/report")["owner"] == USER
