#!/usr/bin/env bash
# Cairn's whole test suite, as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh
#
# Runs formatting and lint checks, every unit and integration test, and
# type-checks the benchmarks and the fuzz targets so they cannot rot.
# Needs only a Rust toolchain; it installs nothing else today.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
if [ -f fuzz/Cargo.toml ]; then
    echo "== fuzz targets (type-check only; see fuzz/README.md to run them)"
    cargo check --manifest-path fuzz/Cargo.toml --bins
fi
echo "== all tests passed"
