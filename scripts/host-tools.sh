#!/usr/bin/env bash
# Install the host tools that root-filesystem runtimes need (debootstrap), where they are needed:
# on a glibc older than 2.39, as root, on Debian/Ubuntu. Elsewhere it only says what it found.
set -euo pipefail
glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
needs_rootfs=$(python3 -c "import sys; v=tuple(map(int,'${glibc:-0.0}'.split('.')[:2])); print(int(v < (2, 39)))")
if [ "$needs_rootfs" = 0 ]; then
  echo "host-tools: glibc ${glibc} runs the runtimes' wheels directly (virtualenv runtimes)"
  exit 0
fi
missing=()
for tool in debootstrap unshare chroot; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "host-tools: glibc ${glibc}: root-filesystem runtimes; debootstrap, unshare, chroot present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "host-tools: glibc ${glibc} needs root-filesystem runtimes, which need ${missing[*]} and root;" >&2
  echo "  install debootstrap (and util-linux, coreutils) as root, or use a host with glibc >= 2.39" >&2
  exit 1
fi
echo "host-tools: installing debootstrap"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
