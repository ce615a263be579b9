#!/usr/bin/env bash
# Make a Docker engine and the rlm-graph sandbox image ready on this machine. Idempotent.
#
#   1. installs docker.io with apt-get when dockerd is missing (as root);
#   2. starts `dockerd --bridge=none --iptables=false` in the background when no engine answers
#      (log: /tmp/dockerd.log); containers then run with --network none;
#   3. waits up to 60 s for the engine;
#   4. builds the sandbox image when it is missing (python -m rlm_graph.sandboxes.docker_image).
#
# Exit status: 0 ready; 2 no engine could be installed or started (the docker tests skip);
# 1 anything else (the docker tests fail).
# Environment: RLM_SANDBOX_IMAGE (default rlm-graph-sandbox:latest); PYTHON, an interpreter that
# can import rlm_graph and docker (default: the project's .venv, else python3).
set -uo pipefail

IMAGE="${RLM_SANDBOX_IMAGE:-rlm-graph-sandbox:latest}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
LOG=/tmp/dockerd.log

say() { echo "docker-setup: $*" >&2; }
fail() { local code=$1; shift; say "$*"; exit "$code"; }
engine_up() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
dockerd_running() { [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }

if ! engine_up; then
    is_root=0; [ "$(id -u)" -eq 0 ] && is_root=1
    if ! command -v dockerd >/dev/null 2>&1; then
        [ "$is_root" -eq 1 ] || fail 2 "no Docker engine answers and dockerd is not installed; run this script as root to install docker.io"
        say "installing docker.io (apt-get; about a minute)"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update && apt-get install -y --no-install-recommends docker.io; } >/tmp/docker-install.log 2>&1 \
            || fail 2 "apt-get install docker.io failed; see /tmp/docker-install.log: $(tail -n 3 /tmp/docker-install.log)"
    fi
    command -v docker >/dev/null 2>&1 || fail 2 "the docker CLI is missing after installing docker.io"
    if ! dockerd_running; then
        [ "$is_root" -eq 1 ] || fail 2 "no Docker engine answers and starting dockerd needs root"
        say "starting dockerd --bridge=none --iptables=false (log: $LOG)"
        setsid dockerd --bridge=none --iptables=false >>"$LOG" 2>&1 </dev/null &
    fi
    for _ in $(seq 120); do
        engine_up && break
        sleep 0.5
    done
    engine_up || fail 2 "the Docker engine did not answer within 60 s; last lines of $LOG: $(tail -n 5 "$LOG" 2>/dev/null)"
fi

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi
"$PYTHON" -c "import docker, rlm_graph.sandboxes.docker_image" 2>/dev/null \
    || fail 1 "$PYTHON cannot import docker and rlm_graph: activate the project's venv or set PYTHON"
say "building the sandbox image $IMAGE"
"$PYTHON" -m rlm_graph.sandboxes.docker_image --name "$IMAGE" >&2 || fail 1 "building the sandbox image $IMAGE failed"
exit 0
