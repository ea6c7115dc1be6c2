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
# The detector and the embedder share this machine's CPUs: each sizes its onnxruntime
# threads to half of what this process may use (facerec_runtime.cpus).
export FACEREC_MODEL_WORKERS="${FACEREC_MODEL_WORKERS:-2}"
mkdir -p "$FACEREC_INDEXER_DATA_DIR/redis"

# The default tenant's admin key: made once, kept (mode 600) beside the data it guards, and
# handed to the gateway as its bootstrap key, so each start prints the same working key.
KEY_FILE="$FACEREC_INDEXER_DATA_DIR/admin-key"
if [ -z "${FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY:-}" ]; then
    if [ ! -s "$KEY_FILE" ]; then
        (umask 077 && "$ROOT/.venv/bin/python" -c \
            "from facerec_gateway.keys import new_key; print(new_key())" >"$KEY_FILE")
    fi
    FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY="$(cat "$KEY_FILE")"
    export FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY
fi

cat <<EOF
facerec: starting; the API will answer at http://127.0.0.1:$FACEREC_GATEWAY_PORT (docs: /docs, readiness: /readyz)
facerec: API key for tenant "${FACEREC_GATEWAY_BOOTSTRAP_TENANT:-default}" (scopes read, write, admin):
    export FACEREC_API_KEY=$FACEREC_GATEWAY_BOOTSTRAP_ADMIN_KEY
EOF
cd "$ROOT"
exec "$ROOT/.venv/bin/honcho" --no-prefix -f Procfile start 2>&1
