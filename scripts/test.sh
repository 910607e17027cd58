#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against real
# ZooKeeper servers that the tests start on loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo test --workspace --all-targets "$@"
