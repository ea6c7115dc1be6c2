#!/usr/bin/env bash
# Set up and run every check: lint, types, and the test suite against a real Redis,
# real Celery workers, the real models and the real Qdrant engines.
source "$(dirname "$0")/lib.sh"
ensure_uv
ensure_redis
ensure_chromium
ensure_checkov
sync_env
cd "$ROOT"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
