#!/usr/bin/env bash
# Starts a one-node dev chain: installs what the build needs (or says what to install), builds
# the workspace as the test suite does (so both share one RocksDB build), then runs
# `chorusd dev` with this script's arguments (`--tmp` by default: state deleted on exit).
# Only the build's needs: the test suite's own tools (Prometheus, Chromium, npm packages) are
# .ci/test's to install.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/chorus-target}"
.ci/setup >&2
echo "dev: building (RocksDB's C++ takes about 11 minutes the first time)" >&2
# .ci/test's build, with the same command and features: a different feature selection would
# compile RocksDB again.
cargo nextest run --workspace --locked --no-run >&2
exec "$CARGO_TARGET_DIR/debug/chorusd" dev "$@"
