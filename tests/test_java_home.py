"""Which Java the cluster runs on (config.find_java_home) and how check_java says what to fix.
No cluster: fake JDK homes under tmp_path, a fake `java` that prints a version."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.cluster import native
from pipeline.cluster.errors import ClusterError


def fake_jdk(home: Path, major: int | None) -> Path:
    """A JDK home whose bin/java prints `major`'s version banner (as java -version does, on
    stderr) and whose release file says so; major None: no release file."""
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{major}.0.2\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    if major is not None:
        (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{major}.0.2"\n')
    return home


@pytest.fixture
def jvm(tmp_path) -> Path:
    """An empty /usr/lib/jvm stand-in."""
    (tmp_path / "jvm").mkdir()
    return tmp_path / "jvm"


def test_xray_java_home_wins_over_java_home(jvm):
    fake_jdk(jvm / "java-17-openjdk-amd64", 17)
    env = {"XRAY_JAVA_HOME": "/opt/x17", "JAVA_HOME": "/opt/j21"}
    assert config.find_java_home(env, jvm, path="") == (Path("/opt/x17"), "XRAY_JAVA_HOME")


def test_java_home_is_honoured_before_searching(jvm):
    fake_jdk(jvm / "java-17-openjdk-amd64", 17)
    assert config.find_java_home({"JAVA_HOME": "/opt/j17"}, jvm, path="") == (
        Path("/opt/j17"), "JAVA_HOME")
    # set but empty counts as unset
    home, origin = config.find_java_home({"XRAY_JAVA_HOME": "", "JAVA_HOME": ""}, jvm, path="")
    assert (home, origin) == (jvm / "java-17-openjdk-amd64", f"found under {jvm}")


def test_a_java_17_under_the_jvm_dir_is_found_on_any_architecture(jvm):
    fake_jdk(jvm / "java-21-openjdk-arm64", 21)
    (jvm / "java-17-openjdk-broken").mkdir()  # no bin/java: skipped
    fake_jdk(jvm / "java-17-openjdk-arm64", 17)
    assert config.find_java_home({}, jvm, path="") == (
        jvm / "java-17-openjdk-arm64", f"found under {jvm}")


def test_the_java_on_path_is_used_when_its_release_says_17(jvm, tmp_path):
    home = fake_jdk(tmp_path / "sdkman" / "17.0.2-tem", 17)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(home / "bin" / "java")  # as /usr/bin/java -> alternatives
    assert config.find_java_home({}, jvm, path=str(bin_dir)) == (home, "the java on PATH")


@pytest.mark.parametrize("major", [21, None])
def test_a_java_on_path_that_is_not_17_falls_back_to_the_default(jvm, tmp_path, major):
    home = fake_jdk(tmp_path / "jdk", major)
    assert config.find_java_home({}, jvm, path=str(home / "bin")) == (
        jvm / "java-17-openjdk-amd64", "the default")


def test_the_module_setting_follows_the_resolution():
    assert (config.JAVA_HOME, config.JAVA_HOME_FROM) == config.find_java_home()


@pytest.mark.parametrize("origin", ["JAVA_HOME", "XRAY_JAVA_HOME"])
def test_wrong_version_names_the_variable_it_came_from(monkeypatch, tmp_path, origin):
    home = fake_jdk(tmp_path / "jdk21", 21)
    monkeypatch.setattr(config, "JAVA_HOME", home)
    monkeypatch.setattr(config, "JAVA_HOME_FROM", origin)
    with pytest.raises(ClusterError) as error:
        native.check_java()
    message = str(error.value)
    assert message.startswith(f"{origin}={home} is Java 21;")
    assert "need Java 17" in message and "set XRAY_JAVA_HOME" in message


def test_missing_java_names_the_default_and_both_variables(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "JAVA_HOME", tmp_path / "nothing")
    monkeypatch.setattr(config, "JAVA_HOME_FROM", "the default")
    with pytest.raises(ClusterError) as error:
        native.check_java()
    message = str(error.value)
    assert message.startswith(f"no Java at {tmp_path / 'nothing' / 'bin' / 'java'} (")
    assert "neither XRAY_JAVA_HOME nor JAVA_HOME is set" in message


def test_java_17_passes(monkeypatch, tmp_path):
    monkeypatch.setattr(config, "JAVA_HOME", fake_jdk(tmp_path / "jdk17", 17))
    monkeypatch.setattr(config, "JAVA_HOME_FROM", "JAVA_HOME")
    assert native.check_java() == 'openjdk version "17.0.2" 2024-01-16'
