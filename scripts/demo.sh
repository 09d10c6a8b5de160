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
cat <<MSG
demo: Prism on http://127.0.0.1:8080 (key: $PRISM_API_KEYS). Try:
  curl http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $PRISM_API_KEYS" \\
       -H 'Content-Type: application/json' \\
       -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
MSG
./target/release/prism serve -c conf/prism.toml
