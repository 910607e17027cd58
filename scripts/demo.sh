#!/usr/bin/env bash
# The main job on an embedded default: installs ZooKeeper if missing, builds
# zkrepl, starts two local ZooKeeper servers, generates a 100k-node
# Pegasus-shaped tree on the first, copies and verifies it on the second,
# prints the summary and throughput, and stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
exec target/release/zkrepl demo "$@"
