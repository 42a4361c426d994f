"""Problems a user can fix end as one clear line, before anything starts; no cluster needed."""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pipeline import config
from pipeline.cluster import conf, docker, jars
from pipeline.cluster.errors import ClusterError
from tests.cli import ending_error


def test_port_in_use_is_one_clear_line(cli, make_isolated_env):
    with socket.socket() as taken:
        taken.bind((config.CLUSTER_BIND_HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = make_isolated_env(namenode_http=port)
        start = time.monotonic()
        done = cli("up", env=env)
    line = ending_error(done)
    assert f"port {port} (namenode_http" in line and "already in use" in line
    assert "XRAY_PORT_NAMENODE_HTTP" in line
    assert time.monotonic() - start < 30  # it failed before fetching or starting anything
    assert not list((Path(env["XRAY_STATE_DIR"]) / "run").glob("*.pid"))


def test_missing_java_is_one_clear_line(cli, make_isolated_env, tmp_path):
    env = make_isolated_env()
    env["XRAY_JAVA_HOME"] = str(tmp_path / "no-such-jdk")
    line = ending_error(cli("up", env=env))
    assert "no Java at" in line and "Java 17" in line and "XRAY_JAVA_HOME" in line


def test_wrong_java_version_is_one_clear_line(cli, make_isolated_env, tmp_path):
    fake = tmp_path / "jdk25"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "java").write_text(
        '#!/bin/sh\necho \'openjdk version "25.0.1" 2025-10-21\' >&2\n')
    (fake / "bin" / "java").chmod(0o755)
    env = make_isolated_env()
    env["XRAY_JAVA_HOME"] = str(fake)
    line = ending_error(cli("up", env=env))
    assert "is Java 25" in line and "need Java 17" in line


def test_jar_verification_rejects_a_changed_jar(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "a.jar").write_bytes(b"original")
    expected = {"a.jar": jars._sha256(lib / "a.jar")}
    jars._verify(lib, expected)
    (lib / "a.jar").write_bytes(b"tampered")
    with pytest.raises(ClusterError, match="sha256 mismatch for a.jar"):
        jars._verify(lib, expected)
    (lib / "b.jar").write_bytes(b"extra")
    with pytest.raises(ClusterError, match="unexpected"):
        jars._verify(lib, expected)


def test_lock_pins_every_server_jar():
    pinned = jars.read_lock()
    v = config.HADOOP_VERSION
    for name in (f"hadoop-hdfs-{v}.jar", f"hadoop-common-{v}.jar", f"hadoop-hdfs-{v}-tests.jar",
                 f"hadoop-yarn-server-resourcemanager-{v}.jar",
                 f"hadoop-yarn-server-nodemanager-{v}.jar"):
        assert name in pinned
    assert all(len(digest) == 64 for digest in pinned.values())


def test_rendered_configuration_carries_config_values(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "STATE_DIR", tmp_path)
    monkeypatch.setitem(config.CLUSTER_PORTS, "namenode_rpc", 19000)
    changed = conf.render()
    assert changed and conf.render() == []  # rendering twice changes nothing
    core = (tmp_path / "conf" / "hadoop" / "core-site.xml").read_text()
    assert "<name>xray.port.namenode_rpc</name><value>19000</value>" in core
    assert f"<name>xray.state.dir</name><value>{tmp_path}</value>" in core
    spark = conf.read_spark_defaults(tmp_path / "conf" / "spark" / "spark-defaults.conf")
    assert spark["spark.history.ui.port"] == str(config.CLUSTER_PORTS["history_http"])
    assert spark["spark.eventLog.dir"] == spark["spark.history.fs.logDirectory"]
    env_sh = (tmp_path / "conf" / "spark" / "spark-env.sh").read_text()
    assert f"export HADOOP_CONF_DIR={tmp_path}/conf/hadoop" in env_sh


def test_gpu_discovery_script_prints_spark_resource_json():
    script = conf.SPARK_CONF_SRC / "gpu-discovery.sh"
    env = {"PATH": os.environ["PATH"]}
    doc = json.loads(subprocess.run([script], capture_output=True, text=True, check=True,
                                    env=env | {"CUDA_VISIBLE_DEVICES": "0,3"}).stdout)
    assert doc == {"name": "gpu", "addresses": ["0", "3"]}
    doc = json.loads(subprocess.run([script], capture_output=True, text=True, check=True,
                                    env=env).stdout)
    assert doc["name"] == "gpu"
    if shutil.which("nvidia-smi"):
        gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        assert len(doc["addresses"]) == len(gpus.strip().splitlines())
    else:
        assert doc["addresses"] == []


def test_compose_file_is_valid():
    if not docker.compose_available():
        pytest.skip("no `docker compose` client on this machine: docker/compose.yaml is "
                    "not validated here")
    env = docker.compose_env()  # the variables `cluster up` gives it
    done = subprocess.run(["docker", "compose", "-f", str(docker.COMPOSE_FILE), "config",
                           "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    profiles = subprocess.run(["docker", "compose", "-f", str(docker.COMPOSE_FILE),
                               "--profile", "gpu", "config", "--services"],
                              capture_output=True, text=True, check=True, env=env).stdout.split()
    assert {"namenode", "datanode1", "datanode2", "resourcemanager", "nodemanager1",
            "nodemanager2", "nodemanager-gpu", "history"} <= set(profiles)


def test_host_routes_read_from_the_kernel_table_without_the_default(tmp_path):
    table = tmp_path / "route"
    table.write_text(  # /proc/net/route: little-endian hex; 0.0.0.0/0 is the default route
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "tun0\t00001DAC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n")
    assert docker.host_routes(table) == [(ipaddress.IPv4Network("192.0.2.0/24"), "eth0"),
                                         (ipaddress.IPv4Network("172.29.0.0/16"), "tun0")]


def test_pick_subnet_takes_a_free_one_and_refuses_a_taken_one(caplog):
    caplog.set_level(logging.INFO, logger=docker.log.name)
    net = ipaddress.IPv4Network
    first = docker.SUBNET_CANDIDATES[0]
    assert first == net("172.29.77.0/24") and len(set(docker.SUBNET_CANDIDATES)) == 4096
    assert docker.pick_subnet({}, {}, None, first) == first
    # what failed CI: a network Docker gave a /16 of its pool, over the fixed default
    networks = {net("172.29.0.0/16"): "docker network other"}
    routes = {net("172.30.0.0/24"): "the host's route via tun0"}
    assert docker.pick_subnet(networks, routes, None, first) == net("172.30.1.0/24")
    assert "172.29.77.0/24 overlaps docker network other (172.29.0.0/16)" in caplog.text
    assert docker.pick_subnet(networks, routes, None, net("172.20.5.0/24")) == net("172.20.5.0/24")
    assert docker.pick_subnet(networks, routes, net("10.9.0.0/24"), first) == net("10.9.0.0/24")
    with pytest.raises(ClusterError, match=r"XRAY_DOCKER_SUBNET=172\.29\.78\.0/24 overlaps "
                                           r"docker network other \(172\.29\.0\.0/16\)"):
        docker.pick_subnet(networks, routes, net("172.29.78.0/24"), first)
    # set by hand inside a route: taken, with a warning (it may be meant)
    assert docker.pick_subnet(networks, routes, net("172.30.0.0/25"), first) == net("172.30.0.0/25")
    assert "XRAY_DOCKER_SUBNET=172.30.0.0/25 overlaps the host's route via tun0" in caplog.text
    with pytest.raises(ClusterError, match="no free /24"):
        docker.pick_subnet({}, {net("172.16.0.0/12"): "vpn"}, None, first)
