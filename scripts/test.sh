#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against real
# ZooKeeper servers that the tests start on loopback ports.
#
# Kerberos (SASL GSSAPI) is built and tested too where its system parts are
# installed (Debian: libkrb5-dev, libclang-dev, krb5-kdc, krb5-admin-server;
# .ci/run installs them): its test then starts a KDC of its own on loopback.
# The rest of the suite runs on the default build, the one without it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --all-targets "$@"
if bash scripts/kerberos-available.sh; then
    cargo test -p zkrepl-cli --features gssapi --test kerberos "$@"
else
    echo "test: Kerberos parts not installed (libkrb5-dev, libclang-dev, krb5-kdc, krb5-admin-server): the GSSAPI test is left out" >&2
fi
