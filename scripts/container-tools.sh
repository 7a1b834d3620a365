#!/usr/bin/env bash
# Install what the container tests need (podman, buildah, runc; debootstrap makes their base images),
# as root on Debian/Ubuntu. Elsewhere it only says what is missing: those tests then skip, saying why.
# podman's settings for this machine are tests/containers/containers.conf (tests/containers/podman.py).
set -euo pipefail
missing=()
for tool in podman buildah runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "container-tools: podman, buildah, runc, debootstrap present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "container-tools: ${missing[*]} missing (needs root and apt-get): the container tests will skip" >&2
  exit 0
fi
echo "container-tools: installing ${missing[*]}"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah runc debootstrap >/dev/null
