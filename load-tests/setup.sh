#!/usr/bin/env bash
# Install and build what load-tests/run.sh needs: nginx and wrk (Debian packages), oha (crates.io),
# Prism and its mock (release), and the bare Pingora baseline (release, same crate versions as
# Prism's Cargo.lock). Each step is skipped when its result is already there.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")

need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v perf >/dev/null || need_apt+=(linux-perf)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi
# The Debian package enables and may start a system nginx on port 80; the load test never uses
# it (it runs its own with `-p PREFIX`), so leave the system one as it is.

if ! command -v oha >/dev/null && [ ! -x "$HOME/.cargo/bin/oha" ]; then
    cargo install --locked oha
fi

if [ ! -x "$ROOT/target/release/prism" ] || [ ! -x "$ROOT/target/release/prism-mock" ]; then
    (cd "$ROOT" && cargo build --release --bins)
fi

if [ ! -x "$HERE/bare-pingora/target/release/bare-pingora" ]; then
    # Same versions as Prism: start from the main lock file (cargo drops what is unused).
    [ -f "$HERE/bare-pingora/Cargo.lock" ] || cp "$ROOT/Cargo.lock" "$HERE/bare-pingora/Cargo.lock"
    (cd "$HERE/bare-pingora" && { cargo build --release --offline 2>/dev/null || cargo build --release; })
fi
echo "load-tests: ready (load-tests/run.sh)"
