#!/bin/sh
# Install sensorium-serve's server from a built wheel into a fresh virtual environment.
# The Dockerfile runs this; CI runs it too (deploy/docker/check.sh) in a fresh venv.
#   install.sh cpu|gpu WHEEL [PREFIX] [CONSTRAINTS]
set -eu
variant=${1:?usage: install.sh cpu|gpu WHEEL [PREFIX] [CONSTRAINTS]}
wheel=${2:?path to the sensorium_serve wheel}
prefix=${3:-/opt/venv}
constraints=${4:-}
case "$variant" in
    cpu) extra=server ;;
    gpu) extra=gpu ;;
    *) echo "install.sh: variant must be cpu or gpu, not '$variant'" >&2; exit 2 ;;
esac
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    # A base without Python (the CUDA runtime image): Python from its distribution.
    apt-get update
    apt-get install -y --no-install-recommends python3 python3-venv
    rm -rf /var/lib/apt/lists/*
fi
python3 -m venv "$prefix"
"$prefix/bin/python" -m pip install --no-cache-dir --quiet --upgrade pip
if [ -n "$constraints" ]; then
    "$prefix/bin/python" -m pip install --no-cache-dir --quiet -c "$constraints" "${wheel}[${extra}]"
else
    "$prefix/bin/python" -m pip install --no-cache-dir --quiet "${wheel}[${extra}]"
fi
"$prefix/bin/python" -m pip check
"$prefix/bin/sensorium-server" --help >/dev/null
echo "installed sensorium-serve[$extra] into $prefix"
