#!/usr/bin/env bash
# A local stand-in for python:3.11-slim-bookworm, made from Debian's packages with debootstrap
# (bookworm's python3 is 3.11), for machines that cannot pull from a container registry.
#   deploy/containers/base-image.sh [IMAGE]      (default localhost/python:3.11-slim-bookworm)
# The rootfs tarball is cached in ~/.cache/tally/containers, keyed by a hash of this script, the
# Debian mirror and the machine's CA bundle; the image is imported again only when missing or
# made from other inputs (label tally.base.key).
set -euo pipefail
IMAGE="${1:-localhost/python:3.11-slim-bookworm}"
PODMAN="${PODMAN:-podman}"
CACHE="${TALLY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tally}/containers"
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
CA=/etc/ssl/certs/ca-certificates.crt
MIRROR="${DEBIAN_MIRROR:-}"
if [ -z "$MIRROR" ]; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
KEY=$( { cat "$0"; echo "$SUITE $INCLUDE $MIRROR"; cat "$CA"; } | sha256sum | cut -c1-16)
TAR="$CACHE/rootfs-$SUITE-$KEY.tar"

if [ "$($PODMAN image inspect --format '{{index .Labels "tally.base.key"}}' "$IMAGE" 2>/dev/null)" = "$KEY" ]; then
  echo "base image $IMAGE is current ($KEY)"
  exit 0
fi
if [ ! -s "$TAR" ]; then
  mkdir -p "$CACHE"
  ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$ROOTFS"' EXIT
  echo "debootstrap $SUITE ($INCLUDE) from $MIRROR"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -30 "$CACHE/debootstrap.log"; exit 1; }
  cp "$CA" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
  # Like the official slim images: no apt lists, no docs.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/usr/share/doc/* \
    "$ROOTFS"/usr/share/man/*
  tar -C "$ROOTFS" --numeric-owner -cf "$TAR.partial" .
  mv "$TAR.partial" "$TAR"
  find "$CACHE" -maxdepth 1 -name "rootfs-$SUITE-*.tar" ! -name "$(basename "$TAR")" -delete
fi
$PODMAN import -q \
  --change "ENV PIP_CERT=$CA" --change "ENV NODE_EXTRA_CA_CERTS=$CA" \
  --change "ENV LANG=C.UTF-8" --change 'CMD ["python3"]' \
  --change "LABEL tally.base.key=$KEY" \
  "$TAR" "$IMAGE" >/dev/null
echo "imported $IMAGE from $TAR"
