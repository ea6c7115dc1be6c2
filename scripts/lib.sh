# Shared by scripts/start.sh and scripts/test.sh: install what the project needs on a fresh
# Debian machine with Python 3.11 (uv in a private tools venv, redis-server and, for the
# browser tests, chromium from Debian),
# then the locked Python environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION="0.13.9"
UV="$ROOT/.tools/bin/uv"
# checkov pins many packages of its own that clash with the workspace's lock, so it lives in
# a tool environment of its own (tests/test_deploy.py runs it from there).
CHECKOV_VERSION="3.3.30"
CHECKOV="$ROOT/.tools/checkov/bin/checkov"

ensure_uv() {
    if [ ! -x "$UV" ]; then
        echo "setup: installing uv $UV_VERSION into .tools/" >&2
        python3 -m venv "$ROOT/.tools"
        "$ROOT/.tools/bin/pip" install --quiet "uv==$UV_VERSION"
    fi
}

ensure_redis() {
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "setup: installing redis-server from Debian" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    fi
}

ensure_chromium() {
    # The web page's browser tests drive Debian's chromium (Playwright never downloads one),
    # with a font for its screenshots.
    if [ ! -x /usr/bin/chromium ]; then
        echo "setup: installing chromium from Debian" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    fi
}

ensure_checkov() {
    if [ ! -x "$CHECKOV" ] || [ "$("$CHECKOV" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
        echo "setup: installing checkov $CHECKOV_VERSION into .tools/checkov/" >&2
        "$UV" venv --quiet --allow-existing --python python3 "$ROOT/.tools/checkov"
        "$UV" pip install --quiet --python "$ROOT/.tools/checkov/bin/python" \
            "checkov==$CHECKOV_VERSION"
    fi
}

sync_env() {
    # --frozen: install exactly what uv.lock records; --inexact: keep what the other
    # script installed (start.sh needs honcho, test.sh the dev tools).
    (cd "$ROOT" && "$UV" sync --frozen --inexact --all-packages "$@")
}
