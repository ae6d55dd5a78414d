#!/usr/bin/env bash
# The docker-compose "ray" profile as plain processes on this machine: a Ray head, the sample
# corpus ingested through it (rag ingest --ray), the API as Ray Serve replicas behind one
# address (rag serve --replicas), one question asked. SQLite by default; set RAG_DATABASE_URL
# for PostgreSQL (what replicas on several machines need, with RAG_DATA_DIR on a shared disk).
#
#   scripts/run_cluster.sh          start (or restart)
#   scripts/run_cluster.sh stop     stop the replicas and the Ray head
#
# Environment: RAG_DATA_DIR (./var), API_PORT (8100), HOST (127.0.0.1), API_REPLICAS (2),
# RAY_CPUS (all cores), RAG_ADMIN_KEY (generated once, as scripts/run_stack.sh does), RAG_*.
# Another machine joins with: ray start --address=<this host>:6379
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
[ -x "$BIN/ray" ] || { echo "Ray is not installed: .venv/bin/pip install -e '.[cluster]'" >&2; exit 1; }
export RAG_DATA_DIR="${RAG_DATA_DIR:-$PWD/var}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
HOST="${HOST:-127.0.0.1}"; API_PORT="${API_PORT:-8100}"; REPLICAS="${API_REPLICAS:-2}"
LOGS="$RAG_DATA_DIR/logs"; mkdir -p "$LOGS" "$RAG_DATA_DIR/run"

if [ "${1:-}" = "stop" ]; then "$BIN/ray" stop; exit 0; fi
"$BIN/ray" stop >/dev/null 2>&1 || true  # a second start replaces the first

if [ -z "${RAG_ADMIN_KEY:-}" ]; then
  [ -s "$RAG_DATA_DIR/admin_key" ] || (umask 077; "$BIN/python" -c "import secrets; print('rag_admin_' + secrets.token_urlsafe(24))" > "$RAG_DATA_DIR/admin_key")
  RAG_ADMIN_KEY="$(cat "$RAG_DATA_DIR/admin_key")"
fi
export RAG_ADMIN_KEY

echo "== starting a Ray head on this machine"
"$BIN/ray" start --head --port=6379 ${RAY_CPUS:+--num-cpus=$RAY_CPUS} --disable-usage-stats > "$LOGS/ray.log"

echo "== ingesting the sample corpus through the cluster"
"$BIN/rag" ingest rag/data/sample --collection default --ray auto

echo "== deploying $REPLICAS API replicas on http://$HOST:$API_PORT"
nohup "$BIN/rag" serve --replicas "$REPLICAS" --ray auto --host "$HOST" --port "$API_PORT" > "$LOGS/replicas.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  kill -0 "$pid" 2>/dev/null || { echo "rag serve --replicas stopped; last lines of $LOGS/replicas.log:" >&2; tail -n 30 "$LOGS/replicas.log" >&2; exit 1; }
  "$BIN/python" -c "import urllib.request; urllib.request.urlopen('http://$HOST:$API_PORT/healthz', timeout=2)" 2>/dev/null && break
  sleep 1
done

"$BIN/python" - "$HOST" "$API_PORT" <<'PY'
import json, os, sys, urllib.request

host, port = sys.argv[1], sys.argv[2]
seen = {json.load(urllib.request.urlopen(f"http://{host}:{port}/healthz"))["instance"] for _ in range(20)}
print(f"== {len(seen)} replica(s) answered /healthz: {', '.join(sorted(seen))}")
req = urllib.request.Request(f"http://{host}:{port}/v1/ask", method="POST",
                             data=json.dumps({"question": "Who designed the Harbor Point Lighthouse?"}).encode(),
                             headers={"Content-Type": "application/json",
                                      "Authorization": "Bearer " + os.environ["RAG_ADMIN_KEY"]})
a = json.load(urllib.request.urlopen(req, timeout=600))
print(a["answer"])
for c in a["citations"]:
    print(f"  [{c['marker']}] {c['source']}")
PY
echo "== running: API http://$HOST:$API_PORT (admin key in $RAG_DATA_DIR/admin_key); stop: scripts/run_cluster.sh stop"
