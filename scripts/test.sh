#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too:
#  1. installs the MongoDB wire-protocol test server (PyPI nx-27017) into .tools/venv,
#  2. starts it on a free loopback port with a throw-away data directory,
#  3. runs the Rust tests against it (each test uses its own database),
#  4. runs the mini-program's JavaScript tests (Node's built-in runner), if present,
#  5. stops the server, whatever happened, and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

NX_VERSION="0.8.1"
VENV=".tools/venv"
if ! "$VENV/bin/pip" show nx-27017 2>/dev/null | grep -q "^Version: $NX_VERSION$"; then
  echo "==> installing nx-27017==$NX_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "nx-27017==$NX_VERSION"
fi

DATA_DIR="$(mktemp -d)"
MONGO_PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$VENV/bin/nx-27017" --data-dir "$DATA_DIR" --host 127.0.0.1 --port "$MONGO_PORT" \
  --log-file "$DATA_DIR/nx.log" --pid-file "$DATA_DIR/nx.pid" >"$DATA_DIR/stdout.log" 2>&1 &
MONGO_PID=$!
cleanup() {
  kill "$MONGO_PID" 2>/dev/null || true
  wait "$MONGO_PID" 2>/dev/null || true
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
cargo test --locked --all-targets -- --test-threads="${TEST_THREADS:-4}"

if [ -d miniprogram/tests ]; then
  echo "==> mini-program tests"
  node --test miniprogram/tests/
fi
