#!/usr/bin/env bash
# The docker-compose topology as plain processes (no Docker engine needed): ingest the sample
# corpus, start the API and the Streamlit UI in the background, ask a sample question through
# the API and print the answer and the URLs. SQLite by default; set RAG_DATABASE_URL for
# PostgreSQL (e.g. postgresql+psycopg://rag:rag@127.0.0.1:5432/rag).
#
#   scripts/run_stack.sh            start (or restart) the stack
#   scripts/run_stack.sh stop       stop the processes this script started
#
# Environment: RAG_DATA_DIR (./var), API_PORT (8000), UI_PORT (8501), HOST (127.0.0.1),
# RAG_ADMIN_KEY (generated once and kept in $RAG_DATA_DIR/admin_key), RAG_BACKEND (real;
# "fake" runs without models), and every other RAG_* setting.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
[ -x "$BIN/rag" ] || BIN="$(dirname "$(command -v rag || echo /nonexistent/rag)")"
[ -x "$BIN/rag" ] || { echo "rag is not installed: run 'make setup' (or scripts/setup.sh) first" >&2; exit 1; }
PY="$BIN/python"; [ -x "$PY" ] || PY=python3

export RAG_DATA_DIR="${RAG_DATA_DIR:-$PWD/var}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
HOST="${HOST:-127.0.0.1}"; API_PORT="${API_PORT:-8000}"; UI_PORT="${UI_PORT:-8501}"
RUN="$RAG_DATA_DIR/run"; LOGS="$RAG_DATA_DIR/logs"
mkdir -p "$RUN" "$LOGS"

stop() {
  for name in ui api; do
    f="$RUN/$name.pid"
    if [ -f "$f" ]; then
      pid="$(cat "$f")"
      if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" && echo "stopped $name (pid $pid)"
      fi
      rm -f "$f"
    fi
  done
}

if [ "${1:-}" = "stop" ]; then stop; exit 0; fi
stop  # a second start replaces the first rather than failing on busy ports

port_busy() { "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('$HOST', $1)) == 0 else 1)"; }
for p in "$API_PORT" "$UI_PORT"; do
  if port_busy "$p"; then echo "port $p on $HOST is in use by another program; set API_PORT/UI_PORT" >&2; exit 1; fi
done

if [ -z "${RAG_ADMIN_KEY:-}" ]; then
  [ -s "$RAG_DATA_DIR/admin_key" ] || (umask 077; "$PY" -c "import secrets; print('rag_admin_' + secrets.token_urlsafe(24))" > "$RAG_DATA_DIR/admin_key")
  RAG_ADMIN_KEY="$(cat "$RAG_DATA_DIR/admin_key")"
fi
export RAG_ADMIN_KEY

wait_http() {  # url, pid, log, seconds
  for _ in $(seq 1 "$4"); do
    if ! kill -0 "$2" 2>/dev/null; then echo "failed to start; last lines of $3:" >&2; tail -n 30 "$3" >&2; exit 1; fi
    if "$PY" -c "import sys, urllib.request; urllib.request.urlopen('$1', timeout=2)" 2>/dev/null; then return 0; fi
    sleep 1
  done
  echo "$1 did not answer within $4 s; see $3" >&2; exit 1
}

echo "== ingesting the sample corpus (rag/data/sample) into collection 'default'"
"$BIN/rag" ingest rag/data/sample --collection default

echo "== starting the API on http://$HOST:$API_PORT (models load once at start-up)"
nohup "$BIN/rag" serve --host "$HOST" --port "$API_PORT" > "$LOGS/api.log" 2>&1 &
echo $! > "$RUN/api.pid"
wait_http "http://$HOST:$API_PORT/healthz" "$(cat "$RUN/api.pid")" "$LOGS/api.log" 600

echo "== starting the UI on http://$HOST:$UI_PORT"
RAG_API_KEY="$RAG_ADMIN_KEY" nohup "$BIN/rag" ui --host "$HOST" --port "$UI_PORT" \
  --api "http://$HOST:$API_PORT" > "$LOGS/ui.log" 2>&1 &
echo $! > "$RUN/ui.pid"
wait_http "http://$HOST:$UI_PORT/_stcore/health" "$(cat "$RUN/ui.pid")" "$LOGS/ui.log" 120

QUESTION="${QUESTION:-Who designed the Harbor Point Lighthouse?}"
echo "== asking through the API: $QUESTION"
status=0
"$PY" - "$HOST" "$API_PORT" "$QUESTION" <<'EOF' || status=$?
import json, os, sys, urllib.error, urllib.request

host, port, question = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(f"http://{host}:{port}/v1/ask", method="POST",
                             data=json.dumps({"question": question, "collection": "default"}).encode(),
                             headers={"Content-Type": "application/json",
                                      "Authorization": "Bearer " + os.environ["RAG_ADMIN_KEY"]})
try:
    a = json.load(urllib.request.urlopen(req, timeout=600))
except urllib.error.HTTPError as e:
    print(f"the API answered {e.code}: {e.read().decode(errors='replace')[:500]}", file=sys.stderr)
    sys.exit(1)
print(a["answer"])
if a["abstained"]:
    print("  why: " + a["trace"].get("abstain_reason", "the documents do not hold the answer"))
for c in a["citations"]:
    print(f"  [{c['marker']}] {c['source']}: \"{' '.join(c['quote'].split())}\"")
words = {"retrieve_s": "search", "generate_s": "answer", "verify_s": "check", "total_s": "total"}
print("  time: " + ", ".join(f"{w} {a['timings'][k]:.1f} s" for k, w in words.items() if k in a["timings"]))
EOF

cat <<EOF

== running
  UI:        http://$HOST:$UI_PORT
  API:       http://$HOST:$API_PORT   (OpenAPI docs: http://$HOST:$API_PORT/docs, metrics: /metrics)
  admin key: $RAG_ADMIN_KEY   (send as 'Authorization: Bearer <key>')
  logs:      $LOGS/api.log, $LOGS/ui.log
  stop:      scripts/run_stack.sh stop
EOF
[ "$status" -eq 0 ] || echo "the sample question failed (see $LOGS/api.log); the stack is still running" >&2
exit "$status"
