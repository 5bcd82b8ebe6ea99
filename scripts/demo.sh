#!/usr/bin/env bash
# The main job on the offline default. Until the toy world ships, a tiny random Llama is built
# locally and taken end to end: capture to safetensors, then a question to the (untrained)
# oracle. Its answers are random text: the point is the pipeline, not the answer.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
work=.cache/demo
mkdir -p "$work"
if [ ! -f "$work/tiny-llama/config.json" ]; then
  python -c "from oracle.tiny import save_tiny; save_tiny('$work/tiny-llama', 'llama')"
fi
cat > "$work/messages.json" <<'JSON'
[{"role": "system", "content": "You are a pirate."},
 {"role": "user", "content": "Hello! How are you today?"}]
JSON
oracle capture --model "$work/tiny-llama" --messages-file "$work/messages.json" \
  --layers 1,2 --positions non_system --out "$work/acts.safetensors"
oracle ask --target "$work/tiny-llama" --messages-file "$work/messages.json" \
  --question "What persona is the assistant playing?" --max-new-tokens 8 --json
