#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too:
#  0. checks formatting (cargo fmt --check) and lints (cargo clippy -D warnings),
#  1. installs the MongoDB wire-protocol test server (PyPI nx-27017), the official OpenAI
#     SDK (PyPI openai) and selenium into .tools/venv, and Debian's chromium and
#     chromium-driver (apt-get) for the operator console's browser test,
#  2. starts it on a free loopback port with a throw-away data directory,
#  3. runs the Rust tests against it (each test uses its own database),
#  4. starts the real server (dev login, offline companion) and runs the mini-program's
#     JavaScript tests against it (Node's built-in runner),
#  5. stops both servers, whatever happened, and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

NX_VERSION="0.8.1"
OPENAI_VERSION="3.54.0"
VENV=".tools/venv"
if ! "$VENV/bin/pip" show nx-27017 2>/dev/null | grep -q "^Version: $NX_VERSION$"; then
  echo "==> installing nx-27017==$NX_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "nx-27017==$NX_VERSION"
fi
# The official OpenAI SDK drives the OpenAI-compatible API in tests/api/openai_api.rs.
if ! "$VENV/bin/pip" show openai 2>/dev/null | grep -q "^Version: $OPENAI_VERSION$"; then
  echo "==> installing openai==$OPENAI_VERSION into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION"
fi
# Selenium drives the operator console in Debian's headless Chromium (tests/api/console_browser.rs).
SELENIUM_VERSION="4.51.0"
if ! "$VENV/bin/pip" show selenium 2>/dev/null | grep -q "^Version: $SELENIUM_VERSION$"; then
  echo "==> installing selenium==$SELENIUM_VERSION into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "selenium==$SELENIUM_VERSION"
fi
export OPENAI_SDK_PYTHON="$PWD/$VENV/bin/python"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "==> installing chromium and chromium-driver (apt-get)"
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # A CJK font, so the console's screenshots show its Chinese labels.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver fonts-wqy-zenhei >/dev/null
fi

DATA_DIR="$(mktemp -d)"
MONGO_PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$VENV/bin/nx-27017" --data-dir "$DATA_DIR" --host 127.0.0.1 --port "$MONGO_PORT" \
  --log-file "$DATA_DIR/nx.log" --pid-file "$DATA_DIR/nx.pid" >"$DATA_DIR/stdout.log" 2>&1 &
MONGO_PID=$!
SERVER_PID=""
cleanup() {
  for pid in $SERVER_PID $MONGO_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$DATA_DIR"
}
trap cleanup EXIT

"$VENV/bin/python" - "$MONGO_PORT" <<'PY'
import sys, time, pymongo
port = int(sys.argv[1])
deadline = time.time() + 30
while True:
    try:
        pymongo.MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=500).admin.command("ping")
        break
    except Exception as e:
        if time.time() > deadline:
            sys.exit(f"MongoDB test server did not start: {e}")
        time.sleep(0.2)
PY
echo "==> MongoDB test server (nx-27017) on 127.0.0.1:$MONGO_PORT"

export TEST_MONGODB_URI="mongodb://127.0.0.1:$MONGO_PORT"
# The test server is slow (SQLite behind the wire protocol): keep concurrency modest.
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-3}"

free_port() {
  "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

echo "==> mini-program tests"
(cd miniprogram/tests && npm ci --no-audit --no-fund --loglevel=error)
E2E_PORT="$(free_port)"
E2E_JWT_SECRET="e2e-secret-$(date +%s)-0123456789abcdefghijklmnop"
SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/companion-backend"
# The embedded defaults: development login and the offline companion (empty = unset),
# run away from the checkout so a developer's own .env is not read. Every simulated phone
# comes from 127.0.0.1, so the per-IP limits are lifted (per-user limits stay).
start_e2e_server() { # port, database, extra settings…
  local port="$1" db="$2"
  shift 2
  (cd "$DATA_DIR" && exec env PORT="$port" APP_ENV=development APP_CONFIG_FILE=/nonexistent \
    MONGODB_URI="$TEST_MONGODB_URI" MONGODB_DB="$db" \
    WECHAT_APPID= WECHAT_SECRET= DEEPSEEK_API_KEY= JWT_SECRET="$E2E_JWT_SECRET" \
    CHAT_WAIT_TIMEOUT_MS=200 SHUTDOWN_READINESS_DELAY_MS=0 RUST_LOG=warn \
    RATE_LIMIT_LOGIN_PER_MINUTE=1000 RATE_LIMIT_IP_PER_MINUTE=100000 RATE_LIMIT_IP_PER_HOUR=1000000 "$@" \
    "$SERVER_BIN" >"$DATA_DIR/e2e-server-$port.log" 2>&1) &
  SERVER_PID="$SERVER_PID $!"
  for _ in $(seq 1 100); do
    if PORT="$port" APP_CONFIG_FILE=/nonexistent "$SERVER_BIN" healthcheck 2>/dev/null; then break; fi
    sleep 0.1
  done
}
start_e2e_server "$E2E_PORT" "e2e_$(date +%s)"
# A second server with a privacy policy version (signing in asks the user to agree to it)
# and a cooling-off period before an account is erased.
E2E_PRIVACY_PORT="$(free_port)"
start_e2e_server "$E2E_PRIVACY_PORT" "e2e_privacy_$(date +%s)" PRIVACY_POLICY_VERSION=2026-11 \
  ACCOUNT_DELETION_COOLING_DAYS=7
E2E_BASE_URL="http://127.0.0.1:$E2E_PORT" E2E_PRIVACY_BASE_URL="http://127.0.0.1:$E2E_PRIVACY_PORT" \
  E2E_JWT_SECRET="$E2E_JWT_SECRET" timeout 900 node --test miniprogram/tests/ \
  || { echo "--- e2e server logs"; tail -n 30 "$DATA_DIR"/e2e-server-*.log; exit 1; }
