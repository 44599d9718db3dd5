#!/bin/sh
# Build the image with podman (buildah inside) and smoke-test what was built.
#   deploy/docker/image.sh build   # make image
#   deploy/docker/image.sh smoke   # make image-smoke
#
# No registry is needed: the base is a Debian bookworm root made by mmdebstrap and
# imported as $BASE_IMAGE (python3, venv, pip, CA certificates), passed to the
# Dockerfile's PYTHON_IMAGE and RUNTIME_IMAGE. pip inside the build reads this
# machine's pip configuration (index, certificates, local wheels), mounted read-only
# for the build only: nothing of it is in the image.
#
# The smoke test runs the image's own filesystem (a container from the image,
# mounted by podman) in a chroot, because `podman run` cannot set rlimits in every
# sandbox: the image's ENTRYPOINT with its ENV, as its USER, then its HEALTHCHECK,
# then `client predict` from outside against it, then SIGTERM (a clean drain).
set -eu
cd "$(dirname "$0")/../.."
IMAGE=${IMAGE:-localhost/sensorium-serve:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/sensorium-python-base:bookworm}
PYTHON=${PYTHON:-.venv/bin/python}
WORK=build/image

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "image.sh: $1 not found; install it: apt-get install podman buildah mmdebstrap" >&2
        exit 2
    }
}

base() {
    if podman image exists "$BASE_IMAGE"; then
        return
    fi
    need mmdebstrap
    mkdir -p "$WORK"
    echo "base: mmdebstrap bookworm -> $BASE_IMAGE"
    mmdebstrap --quiet --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        bookworm "$WORK/base.tar"
    podman import --change 'CMD ["python3"]' "$WORK/base.tar" "$BASE_IMAGE" >/dev/null
    rm -f "$WORK/base.tar"
}

build() {
    need podman
    base
    mounts=""
    for path in /etc/pip.conf /etc/xdg/pip /opt/wheels /opt/pypi /opt/pypi-more \
        /etc/ssl/certs/ca-certificates.crt; do
        if [ -e "$path" ]; then
            mounts="$mounts --volume $path:$path:ro"
        fi
    done
    started=$(date +%s)
    # shellcheck disable=SC2086 # the mounts are separate words
    podman build --isolation chroot --network host --format docker $mounts \
        --build-arg PYTHON_IMAGE="$BASE_IMAGE" --build-arg RUNTIME_IMAGE="$BASE_IMAGE" \
        --build-arg VERSION="$(git describe --always --dirty 2>/dev/null || echo dev)" \
        --tag "$IMAGE" .
    size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
    echo "built $IMAGE in $(($(date +%s) - started)) s: $((size / 1000000)) MB"
}

config() {  # one field of the image's config, as JSON
    podman image inspect --format "{{json .Config.$1}}" "$IMAGE"
}

smoke() {
    need podman
    container=$(podman create --no-healthcheck "$IMAGE")  # no systemd timer: we run it here
    root=$(podman mount "$container")
    pid=""
    cleanup() {
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill -9 "$pid" 2>/dev/null || true
        fi
        for point in etc/hosts dev sys proc; do
            umount "$root/$point" 2>/dev/null || true
        done
        podman umount "$container" >/dev/null 2>&1 || true
        podman rm "$container" >/dev/null 2>&1 || true
    }
    trap cleanup EXIT
    mount -t proc proc "$root/proc"
    mount --rbind /sys "$root/sys"
    mount --rbind /dev "$root/dev"
    touch "$root/etc/hosts"
    mount --bind /etc/hosts "$root/etc/hosts"
    port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
    # The image's ENV, ENTRYPOINT, USER and HEALTHCHECK, read from its config.
    env_file=$(mktemp)
    config Env | "$PYTHON" -c 'import json, sys; print("\n".join(json.load(sys.stdin)))' >"$env_file"
    echo "SENSORIUM_PORT=$port" >>"$env_file"
    echo "SENSORIUM_METRICS_PORT=-1" >>"$env_file"
    rest=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
    echo "SENSORIUM_HTTP_PORT=$rest" >>"$env_file"
    entrypoint=$(config Entrypoint | "$PYTHON" -c 'import json, shlex, sys; print(shlex.join(json.load(sys.stdin)))')
    healthcheck=$(config Healthcheck | "$PYTHON" -c '
import json, shlex, sys
test = json.load(sys.stdin)["Test"]
print(shlex.join(test[1:]) if test[0] == "CMD" else test[1])')
    user=$(config User | tr -d '"')
    log="$WORK/smoke-server.log"
    mkdir -p "$WORK"
    rm -f "$log"  # a previous run's log must not pass for this one's
    echo "smoke: $entrypoint as user $user on port $port (chroot $root)"
    # shellcheck disable=SC2086 # the entrypoint is split as the image's exec form
    env -i $(cat "$env_file") chroot --userspec="$user:$user" "$root" $entrypoint >"$log" 2>&1 &
    pid=$!
    tries=0
    until grep -q "serving 1 model versions" "$log" 2>/dev/null; do
        tries=$((tries + 1))
        if [ "$tries" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            echo "smoke: the server did not start" >&2
            exit 1
        fi
        sleep 0.2
    done
    # shellcheck disable=SC2046,SC2086 # the environment and the command are word lists
    env -i $(cat "$env_file") chroot --userspec="$user:$user" "$root" $healthcheck
    echo "smoke: HEALTHCHECK ($healthcheck) passed"
    "$PYTHON" -c "import urllib.request; r = urllib.request.urlopen('http://localhost:$rest/v2/health/ready', timeout=10); assert r.status == 200; print('smoke: REST /v2/health/ready', r.status)"
    out="$WORK/smoke-responses.npy"
    "$(dirname "$PYTHON")/client" predict --server "localhost:$port" --video samples/clip.npy \
        --out "$out"
    "$PYTHON" -c "import numpy as np; r = np.load('$out'); assert r.shape == (254, 8000) and (r > 0).all(), r.shape; print('smoke: client predict', r.shape, 'from the image')"
    kill -TERM "$pid"
    code=0
    wait "$pid" || code=$?
    pid=""
    grep -q "Traceback" "$log" && { cat "$log" >&2; echo "smoke: traceback in the log" >&2; exit 1; }
    echo "smoke: SIGTERM -> exit $code; image $IMAGE passed"
    rm -f "$env_file"
    [ "$code" -eq 0 ]
}

case "${1:-}" in
    build) build ;;
    smoke) smoke ;;
    *) echo "usage: image.sh build|smoke" >&2; exit 2 ;;
esac
