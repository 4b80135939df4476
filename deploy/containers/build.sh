#!/usr/bin/env bash
# Build every image `make containers` needs, with podman, without a container registry:
#   1. the base image stand-in for python:3.11-slim-bookworm (base-image.sh, cached);
#   2. the Tally image from the project's Dockerfile, unchanged (--format docker keeps HEALTHCHECK);
#   3. the Kafka stand-in for apache/kafka from the Maven jars `tally kafka up` uses;
#   4. the Prometheus stand-in for prom/prometheus from Debian's package.
# Layers are cached by podman; the rootfs and the Kafka jars by ~/.cache/tally.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/containers/containers.conf}"
PY="${PYTHON:-.venv/bin/python}"
BASE_IMAGE="${TALLY_BASE_IMAGE:-localhost/python:3.11-slim-bookworm}"
TALLY_IMAGE="${TALLY_IMAGE:-localhost/tally:local}"
KAFKA_IMAGE="${TALLY_KAFKA_IMAGE:-localhost/tally-kafka:3.9.1}"
PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-localhost/tally-prometheus:debian}"
CACHE="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}/containers"
build() { podman build -q --format docker --network host "$@"; }
step() { printf '%s [%s] %s\n' "$(date -u +%H:%M:%S)" "$SECONDS s" "$*"; }

step "base image $BASE_IMAGE"
deploy/containers/base-image.sh "$BASE_IMAGE"

step "tally image $TALLY_IMAGE"
build --build-arg PYTHON_IMAGE="$BASE_IMAGE" -t "$TALLY_IMAGE" . >/dev/null

step "kafka image $KAFKA_IMAGE"
LIB=$("$PY" -c 'from pipeline.infra.local_kafka import LocalKafka; k = LocalKafka(); k.fetch(); print(k.lib)')
CTX="$CACHE/kafka-context"
rm -rf "$CTX" && mkdir -p "$CTX"
cp -r deploy/containers/kafka/. "$CTX/"
cp -r "$LIB" "$CTX/lib" && rm -f "$CTX/lib/.complete"
build --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$KAFKA_IMAGE" -f "$CTX/Containerfile" "$CTX" >/dev/null

step "prometheus image $PROMETHEUS_IMAGE"
build --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$PROMETHEUS_IMAGE" \
  -f deploy/containers/prometheus/Containerfile deploy/containers/prometheus >/dev/null

step "done"
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
  | grep -E "^($BASE_IMAGE|$TALLY_IMAGE|$KAFKA_IMAGE|$PROMETHEUS_IMAGE) " || true
