#!/usr/bin/env bash
# Run both SDK test suites against a real gateway (the debug build and its mock upstream).
# Installs what they need from the package registries only: the Python SDK into a virtualenv
# (sdk/python/.venv) and the TypeScript SDK's locked dependencies (npm ci). The last line
# is `N passed, N failed`, summed over both suites; the exit status is 0 only when nothing
# failed. PRISM_SDK_SKIP_BUILD=1 skips `cargo build --bins` (binaries already built).
set -uo pipefail
SDK="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$SDK")"
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
passed=0
failed=0

count() { # count FILE REGEX -> the number captured by REGEX on the last matching line, or 0
  local n
  n="$(grep -Eo "$2" "$1" | tail -n 1 | grep -Eo '[0-9]+' | head -n 1)"
  echo "${n:-0}"
}

# A suite that could not run (or ran no test) counts as one failure.
settle() { # settle NAME EXIT PASSED FAILED
  local name=$1 rc=$2 p=$3 f=$4
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "sdk: the $name suite exited with status $rc" >&2
    f=1
  fi
  if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
    echo "sdk: the $name suite ran no test" >&2
    f=1
  fi
  echo "sdk: $name: $p passed, $f failed"
  passed=$((passed + p))
  failed=$((failed + f))
}

if [ "${PRISM_SDK_SKIP_BUILD:-0}" != "1" ]; then
  (cd "$ROOT" && cargo build --bins) || { echo "sdk: cargo build --bins failed" >&2; echo "0 passed, 1 failed"; exit 1; }
fi
export PRISM_BIN_DIR="${PRISM_BIN_DIR:-$ROOT/target/debug}"

# --- Python ------------------------------------------------------------------------------
py_setup() {
  local venv="$SDK/python/.venv" stamp
  stamp="$(sha256sum "$SDK/python/pyproject.toml" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || return 1
  fi
  if [ "$(cat "$venv/.prism-sdk-stamp" 2>/dev/null)" != "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$SDK/python[test]" || return 1
    echo "$stamp" >"$venv/.prism-sdk-stamp"
  fi
}
echo "sdk: Python SDK tests"
if py_setup; then
  (cd "$SDK/python" && .venv/bin/python -m pytest -p no:cacheprovider -v) 2>&1 | tee "$LOGS/python.log"
  rc=${PIPESTATUS[0]}
  # pytest's closing line: `==== 1 failed, 10 passed, 1 error in 2.08s ====`
  grep -E '^=+ .* in [0-9.]+s' "$LOGS/python.log" | tail -n 1 >"$LOGS/python.summary"
  settle python "$rc" "$(count "$LOGS/python.summary" '[0-9]+ passed')" \
    "$(( $(count "$LOGS/python.summary" '[0-9]+ failed') + $(count "$LOGS/python.summary" '[0-9]+ errors?') ))"
else
  echo "sdk: could not install the Python SDK and its test dependencies" >&2
  settle python 1 0 1
fi

# --- TypeScript --------------------------------------------------------------------------
echo "sdk: TypeScript SDK tests"
if (cd "$SDK/typescript" && npm ci --no-audit --no-fund --loglevel=error); then
  (cd "$SDK/typescript" && npm test --silent) 2>&1 | tee "$LOGS/typescript.log"
  rc=${PIPESTATUS[0]}
  settle typescript "$rc" "$(count "$LOGS/typescript.log" '^(# |ℹ )pass [0-9]+')" \
    "$(count "$LOGS/typescript.log" '^(# |ℹ )fail [0-9]+')"
else
  echo "sdk: npm ci failed in sdk/typescript" >&2
  settle typescript 1 0 1
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
