#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against real
# ZooKeeper servers that the tests start on loopback ports.
#
# Kerberos (SASL GSSAPI) is built and tested too where its system parts are
# installed (Debian: libkrb5-dev, libclang-dev, krb5-kdc, krb5-admin-server;
# .ci/run installs them): the tests then start a KDC of their own on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
features=()
if bash scripts/kerberos-available.sh; then
    features=(--features zkrepl-cli/gssapi)
else
    echo "test: Kerberos parts not installed (libkrb5-dev, libclang-dev, krb5-kdc, krb5-admin-server): the GSSAPI test is left out" >&2
fi
exec cargo test --workspace --all-targets "${features[@]}" "$@"
