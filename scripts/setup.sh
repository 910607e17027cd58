#!/usr/bin/env bash
# Installs what zkrepl's demo and tests need: a ZooKeeper server (the Debian
# package; its jars are used, no service is started) and Java. Idempotent.
set -euo pipefail
if [ -f /usr/share/java/zookeeper.jar ] || [ -n "${ZK_HOME:-}" ]; then
    exit 0
fi
echo "setup: installing ZooKeeper (Debian package 'zookeeper')" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq zookeeper >/dev/null
# The package may start a system service on the default port; zkrepl's local
# servers use their own free ports, so it does not matter, but stop it if it runs.
$SUDO service zookeeper stop >/dev/null 2>&1 || true
