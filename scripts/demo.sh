#!/usr/bin/env bash
# The main job: serve the embedded default model, wait until it is warm, predict the
# bundled sample clip with the `client` CLI, then stop the server (SIGTERM, drained).
set -euo pipefail
BIN=${BIN:-.venv/bin}
PORT=${SENSORIUM_PORT:-8001}
METRICS_PORT=${SENSORIUM_METRICS_PORT:-8002}
HTTP_PORT=${SENSORIUM_HTTP_PORT:-8000}
mkdir -p build
"$BIN/sensorium-server" --port "$PORT" --metrics-port "$METRICS_PORT" --http-port "$HTTP_PORT" >build/demo-server.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
echo "sensorium-server (pid $server) on port $PORT (gRPC), $HTTP_PORT (REST), metrics on $METRICS_PORT; log: build/demo-server.log"
if ! "$BIN/client" health --server "localhost:$PORT" --wait 120; then
    cat build/demo-server.log >&2
    exit 1
fi
"$BIN/client" models --server "localhost:$PORT"
"$BIN/client" predict --server "localhost:$PORT" \
    --video samples/clip.npy --behavior samples/behavior.npy \
    --pupil-center samples/pupil_center.npy --out build/sample-prediction.npy
"$BIN/client" stream --server "localhost:$PORT" --rate 30 \
    --video samples/clip.npy --behavior samples/behavior.npy --pupil-center samples/pupil_center.npy
