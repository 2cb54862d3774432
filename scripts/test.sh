#!/usr/bin/env bash
# The whole test suite: formatting, lints, build, Rust unit + integration tests (both IO
# drivers), and interop tests with the official Python SDKs. Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "tools"
# python3-venv for the SDK interop tests; redis-server for the fleet-mode quota tests (the
# tests start their own servers on ephemeral ports; the package's system service is not used).
need=()
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${need[*]} (install them; this script knows only apt-get)" >&2
    exit 1
  fi
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --bins --locked

step "cargo test"
cargo test --workspace --locked

step "python interop (official SDKs)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
SLUICE_BIN="$TARGET_DIR/debug/sluice" LOADGEN_BIN="$TARGET_DIR/debug/sluice-loadgen" \
  .venv/bin/python -m pytest -q tests/interop
