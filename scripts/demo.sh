#!/usr/bin/env bash
# The main job on an embedded default: installs ZooKeeper if missing, builds
# zkrepl, starts three local ZooKeeper servers, generates a 100k-node
# Pegasus-shaped tree on the first, copies and verifies it on the second,
# prints the summary and throughput, migrates a simulated Pegasus cluster
# over it to the third server and on with --live, prints both blind
# windows, and stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
exec target/release/zkrepl demo "$@"
