#!/usr/bin/env bash
# A Docker engine, the compose v2 plugin and the debian:bookworm-slim base image, on a Debian
# machine that has none of them (CI, our sandboxes). Idempotent: each step is skipped when its
# result is already there, so a second run takes about a second.
#
#   sudo docker/engine.sh          # then: XRAY_CLUSTER=docker make cluster-up
#
# Why each step is done this way (verified on our machines, ../shared/notes/docker.md):
# - dockerd --iptables=false --bridge=none: the sandbox must not get NAT rules and has no
#   default docker0; compose's own networks still work, with DNS by service name, and ports
#   published on 127.0.0.1 reach the containers (userland proxy). --storage-driver=vfs:
#   overlayfs is not available here (vfs copies each layer in full: docker/Dockerfile keeps
#   its layers few).
# - compose v2 is not in Debian (its docker-compose is v1): built from the Go module proxy
#   (about 6 minutes on 2 cores, once).
# - Docker Hub cannot be reached, so the base image is made from Debian's own packages with
#   debootstrap; docker/Dockerfile says FROM debian:bookworm-slim and builds the same on a
#   machine that pulls the real one.
# On a machine that already has an engine and compose this does nothing but check, and pulls
# the base image when it is missing. Exit status 0 when all three are ready.
set -euo pipefail

DATA_ROOT=${XRAY_DOCKER_DATA_ROOT:-/var/lib/xray-docker}
EXEC_ROOT=${XRAY_DOCKER_EXEC_ROOT:-/run/xray-docker}
COMPOSE_VERSION=${XRAY_COMPOSE_VERSION:-v2.29.7}
BASE_IMAGE=debian:bookworm-slim
PLUGIN_DIR=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins

say() { echo "docker/engine.sh: $*" >&2; }
took() { say "$1 in $(( $(date +%s) - $2 )) s"; }

apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_engine() {
    docker info >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || { say "no Docker engine answers, and starting one needs root"; return 1; }
    local t0; t0=$(date +%s)
    command -v dockerd >/dev/null || apt_install docker.io
    mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
    say "starting dockerd (data root $DATA_ROOT, log $DATA_ROOT/dockerd.log)"
    setsid dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
        --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" -H unix:///var/run/docker.sock \
        >>"$DATA_ROOT/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 120); do
        docker info >/dev/null 2>&1 && { took "engine up" "$t0"; return 0; }
        sleep 0.5
    done
    say "dockerd did not answer within 60 s: $(tail -n 3 "$DATA_ROOT/dockerd.log" | tr '\n' ' ')"
    return 1
}

install_compose() {
    docker compose version >/dev/null 2>&1 && return 0
    command -v go >/dev/null || { say "no compose plugin, and no Go to build it"; return 1; }
    local t0; t0=$(date +%s)
    say "building docker compose $COMPOSE_VERSION from the Go module proxy (about 6 min)"
    GOFLAGS=-trimpath go install -ldflags "-s -w" "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION"
    mkdir -p "$PLUGIN_DIR"
    install -m 755 "$(go env GOPATH)/bin/cmd" "$PLUGIN_DIR/docker-compose"
    docker compose version >/dev/null && took "compose plugin built" "$t0"
}

base_image() {
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && return 0
    local t0; t0=$(date +%s)
    if timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
        took "pulled $BASE_IMAGE" "$t0"; return 0
    fi
    apt_install debootstrap
    local mirror rootfs
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
             || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/bookworm-rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' RETURN
    say "no $BASE_IMAGE to pull: debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    took "made $BASE_IMAGE from Debian's packages" "$t0"
}

start_engine
install_compose
base_image
say "ready: $(docker version --format 'engine {{.Server.Version}}'), $(docker compose version --short 2>/dev/null || echo compose), $BASE_IMAGE"
