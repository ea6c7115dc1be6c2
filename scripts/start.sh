#!/usr/bin/env bash
# Set up and start the whole stack on this machine: Redis, the detector, embedder and
# indexer workers, the gateway on port 8000, the embedded Qdrant engine under ./data.
source "$(dirname "$0")/lib.sh"
ensure_uv
ensure_redis
sync_env --no-dev --group stack

export FACEREC_REDIS_PORT="${FACEREC_REDIS_PORT:-6379}"
export FACEREC_REDIS_URL="${FACEREC_REDIS_URL:-redis://127.0.0.1:$FACEREC_REDIS_PORT/0}"
export FACEREC_GATEWAY_PORT="${FACEREC_GATEWAY_PORT:-8000}"
export FACEREC_INDEXER_DATA_DIR="${FACEREC_INDEXER_DATA_DIR:-$ROOT/data}"
mkdir -p "$FACEREC_INDEXER_DATA_DIR/redis"

echo "facerec: starting; the API will answer at http://127.0.0.1:$FACEREC_GATEWAY_PORT (docs: /docs, readiness: /readyz)"
cd "$ROOT"
exec "$ROOT/.venv/bin/honcho" --no-prefix -f Procfile start 2>&1
