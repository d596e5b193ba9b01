#!/bin/sh
# Capture again the seccomp profiles Docker and podman send a runtime (bench/profiles/*.json)
# and rewrite bench/profiles/README.md with where they came from. As root, after
# tools/setup.sh; needs dockerd, docker, podman and conmon (see bench/README.md).
set -eu
cd "$(dirname "$0")/../.."
exec .venv/bin/python bench/profiles/capture.py "$@"
