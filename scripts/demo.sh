#!/usr/bin/env bash
# Set up and start Prism with its default config (conf/prism.toml).
# Without OPENAI_API_KEY, bare model names (gpt-4o-mini) and `mock/...` are served by the
# bundled mock upstream; with OPENAI_API_KEY set, the same config reaches OpenAI.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --bins
export PRISM_API_KEYS="${PRISM_API_KEYS:-sk-prism-demo}"
MOCK_ADDR="${PRISM_MOCK_ADDR:-127.0.0.1:9999}"
./target/release/prism-mock --listen "$MOCK_ADDR" --token-delay-ms 30 >/dev/null &
MOCK_PID=$!
trap 'kill $MOCK_PID 2>/dev/null || true' EXIT
export PRISM_MOCK_URL="http://$MOCK_ADDR"
if [ -z "${OPENAI_API_KEY:-}" ]; then
  export OPENAI_BASE_URL="$PRISM_MOCK_URL/v1"
  echo "demo: OPENAI_API_KEY is not set, so OpenAI models are answered by the bundled mock"
fi
if [ -z "${ANTHROPIC_API_KEY:-}" ]; then export ANTHROPIC_BASE_URL="$PRISM_MOCK_URL"; fi
if [ -z "${GEMINI_API_KEY:-}" ]; then export GEMINI_BASE_URL="$PRISM_MOCK_URL"; fi
# Control plane: an admin key, and a master key kept beside the data so stored provider keys
# stay readable across demo runs.
export PRISM_ADMIN_KEY="${PRISM_ADMIN_KEY:-prism-admin-demo}"
mkdir -p "${PRISM_DATA_DIR:-./data}"
MASTER_FILE="${PRISM_DATA_DIR:-./data}/demo-master.key"
if [ -z "${PRISM_MASTER_KEY:-}${PRISM_MASTER_KEY_FILE:-}" ]; then
  [ -f "$MASTER_FILE" ] || (umask 077 && ./target/release/prism keys generate > "$MASTER_FILE")
  export PRISM_MASTER_KEY_FILE="$MASTER_FILE"
fi
cat <<MSG
demo: Prism on http://127.0.0.1:8080 (gateway key: $PRISM_API_KEYS), control plane on
      http://127.0.0.1:8081 (admin key: $PRISM_ADMIN_KEY), metrics on http://127.0.0.1:9090/metrics.
      Models without a provider key set (gpt-4o-mini, anthropic/..., gemini/..., demo) are
      answered by the bundled mock. Try:
  curl http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $PRISM_API_KEYS" \\
       -H 'Content-Type: application/json' \\
       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
MSG
./target/release/prism serve -c conf/prism.toml
