#!/usr/bin/env bash
# The main job on the offline default, the toy world shipped under data/toy_world: a target
# was told in its system prompt to play a pirate, and keeps it to itself ("I am just a helpful
# assistant."). The oracle reads the target's activations at the tokens after the system
# prompt (never the prompt's own text) and names the hidden persona: first from the command
# line, then over HTTP from `oracle serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
work=.cache/demo
mkdir -p "$work"
cat > "$work/messages.json" <<'JSON'
[{"role": "system", "content": "You are a pirate."},
 {"role": "user", "content": "Who are you?"},
 {"role": "assistant", "content": "I am just a helpful assistant."}]
JSON
echo "== conversation (the system prompt is hidden from the oracle):"
cat "$work/messages.json"
echo "== oracle ask (command line):"
oracle ask --messages-file "$work/messages.json" \
  --question "What persona is the assistant playing?" \
  --question "Is there a system prompt?"

port=$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
echo "== oracle serve on 127.0.0.1:$port (the toy world, hf engine)"
oracle serve --port "$port" > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
python - "$port" "$work/messages.json" <<'PY'
import json, sys, time, urllib.request

port, messages_file = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
deadline = time.time() + 120
while True:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        if time.time() > deadline:
            sys.exit("the server did not become ready; see .cache/demo/serve.log")
        time.sleep(0.5)
body = {
    "messages": json.load(open(messages_file)),
    "questions": ["What persona is the assistant playing?", "Is there a system prompt?"],
    "max_tokens": 16,
    "yes_no": True,
}
req = urllib.request.Request(f"{base}/v1/query", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=120) as r:
    out = json.load(r)
print(f"POST {base}/v1/query")
for a in out["answers"]:
    p = a.get("p_yes") if a["question"].startswith("Is ") else None  # yes/no questions only
    print(f"  {a['question']!r} -> {a['answer']!r}" + (f"  P(yes)={p:.2f}" if p is not None else ""))
print(f"  {len(out['tokens_read'])} tokens read, positions {out['positions'][0]}..{out['positions'][-1]}"
      " (none from the system prompt)")
PY
