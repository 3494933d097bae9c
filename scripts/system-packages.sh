#!/bin/sh
# Make sure the system programs the tests start are installed: redis-server, chromium,
# PostgreSQL, nginx (the compose file's proxy configuration is run for real), podman with
# debootstrap (the image is built and run for real), and npm (for axe-core, which checks
# every page's accessibility). As root on Debian or Ubuntu they
# are installed with apt-get; otherwise this stops with the exact command to run.
set -eu

missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
# A master watched by sentinels is started for real (the broker's failover).
command -v redis-sentinel >/dev/null 2>&1 || missing="$missing redis-sentinel"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || missing="$missing chromium fonts-dejavu-core"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || missing="$missing postgresql"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
# The image is built with podman, on a stand-in base from debootstrap when no registry answers.
command -v podman >/dev/null 2>&1 || missing="$missing podman buildah fuse-overlayfs slirp4netns uidmap"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages the tests need:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  exit 0
fi

echo "The tests need these system packages:$missing" >&2
if command -v apt-get >/dev/null 2>&1; then
  echo "Install them with: sudo apt-get update && sudo apt-get install -y$missing" >&2
else
  echo "Install them with your system's package manager, then run the tests again." >&2
fi
exit 1
