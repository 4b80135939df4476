#!/usr/bin/env bash
# Make sure a container engine can be had: podman, runc and debootstrap from Debian's packages
# (plus the CNI dnsname plugin, so compose services find each other by name).
# Exit 0 when podman runs a container, else 1 with the reason.
set -euo pipefail
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -x /usr/lib/cni/dnsname ] || need+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "no container engine: need ${need[*]} (Debian packages; run as root with apt-get)" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
    >/dev/null || { echo "apt-get could not install ${need[*]}" >&2; exit 1; }
fi
podman info >/dev/null 2>&1 || { echo "podman does not answer: $(podman info 2>&1 | tail -3)" >&2; exit 1; }
