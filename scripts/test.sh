#!/usr/bin/env bash
# The test command: set up what is missing, then run every test (unit, integration against
# the bundled mock upstream, and the official OpenAI SDK through the gateway).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --bins
cargo test --lib --bins --tests -- --test-threads=4
# Benches run once each in test mode (criterion takes no libtest flags).
cargo test --benches
# The Python and TypeScript SDKs against a real gateway (binaries built above).
PRISM_SDK_SKIP_BUILD=1 bash sdk/run-tests.sh
