#!/bin/sh
# Check the image recipe without a Docker engine: build the wheel as the Dockerfile
# does, install it with the Dockerfile's own script into a fresh virtual environment,
# start the server the way the image's entrypoint does, and require a SERVING health
# check and a prediction of the sample clip. Then SIGTERM must drain and exit 0.
set -eu
python=${PYTHON:-python3}
work=${1:-build/image-check}
rm -rf "$work"
mkdir -p "$work"
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" .
deploy/docker/install.sh cpu "$(ls "$work"/wheels/sensorium_serve-*.whl)" "$work/venv" constraints/ci.txt
venv="$work/venv/bin"
# From another folder, no repository given: the model installed with the package.
(cd "$work" && exec env -u SENSORIUM_MODEL_REPOSITORY SENSORIUM_PORT=0 \
    SENSORIUM_METRICS_PORT=0 SENSORIUM_HTTP_PORT=0 "$(pwd)/venv/bin/sensorium-server" \
    2>"$(pwd)/server.log") &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 120); do
    port=$(sed -n 's/.*gRPC on port \([0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
    if [ -n "$port" ] && "$venv/sensorium-healthcheck" "localhost:$port" >/dev/null 2>&1; then
        break
    fi
    sleep 1
done
"$venv/sensorium-healthcheck" "localhost:$port"
rest=$(sed -n 's/.*REST on \([0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
"$venv/python" -c "import urllib.request; r = urllib.request.urlopen('http://localhost:$rest/v2/health/ready', timeout=10); assert r.status == 200; print('REST', r.read().decode())"
"$venv/client" predict --server "localhost:$port" --video samples/clip.npy \
    --behavior samples/behavior.npy --pupil-center samples/pupil_center.npy
kill -TERM "$server"
wait "$server"
trap - EXIT
echo "image recipe check passed: installed, healthy, predicted, drained"
