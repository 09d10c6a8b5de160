#!/usr/bin/env bash
# Install what a fresh Debian/Ubuntu machine lacks to build and test Prism: cmake (Pingora's
# zlib-ng build needs it) and the official `openai` Python SDK (the SDK tests use it).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if ! command -v cmake >/dev/null 2>&1; then
  echo "setup: installing cmake"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq cmake >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
if ! python3 -c "import openai" >/dev/null 2>&1; then
  echo "setup: installing the openai Python SDK"
  python3 -m pip install --quiet --disable-pip-version-check openai
fi
