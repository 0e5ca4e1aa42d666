#!/usr/bin/env bash
# Installs what t4g builds against, once per machine, and prints the Python whose torch to use.
#   - Debian packages (apt-get, when run as root and something is missing);
#   - a virtual environment with the pinned torch==2.11.0 wheel in a cache folder outside the
#     checkout ($T4G_CACHE, default ~/.cache/t4g), shared by every clone and by CI.
# Idempotent and safe to run concurrently (a lock serialises the installs).
# Set T4G_PYTHON to a python3 that already has torch 2.11 (GPU machines) to skip the venv.
set -euo pipefail

TORCH_VERSION=2.11.0
CACHE=${T4G_CACHE:-$HOME/.cache/t4g}
VENV=$CACHE/venv-torch-$TORCH_VERSION
PACKAGES="build-essential cmake ninja-build ccache python3 python3-venv pkg-config
  libhdf5-dev zlib1g-dev libyaml-cpp-dev libgtest-dev nlohmann-json3-dev libcli11-dev libsentencepiece-dev
  libopencv-dev libopencv-contrib-dev"

log() { echo "bootstrap: $*" >&2; }
mkdir -p "$CACHE"
exec 9>"$CACHE/bootstrap.lock"
flock 9

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
fi
if [ -n "$missing" ] && [ "${T4G_SKIP_APT:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends $missing >&2
  else
    log "missing Debian packages:$missing"
    log "run: sudo apt-get install$missing"
    exit 1
  fi
fi

if [ -n "${T4G_PYTHON:-}" ]; then
  "$T4G_PYTHON" -c "import torch" || { log "T4G_PYTHON=$T4G_PYTHON cannot import torch"; exit 1; }
  echo "$T4G_PYTHON"
  exit 0
fi

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  log "creating $VENV with torch==$TORCH_VERSION (a few GB, once per machine)"
  rm -rf "$VENV.tmp"
  # Debian's own python3 when present, so the venv does not depend on a user's pyenv.
  py=/usr/bin/python3; [ -x "$py" ] || py=python3
  "$py" -m venv "$VENV.tmp"
  "$VENV.tmp/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" >&2
  # A venv is not relocatable in general, but its scripts only embed the path in shebangs,
  # and we only ever run bin/python; the rename makes a half-made venv impossible to pick up.
  rm -rf "$VENV"
  mv "$VENV.tmp" "$VENV"
  sed -i "s|$VENV.tmp|$VENV|g" "$VENV/bin/activate" "$VENV/pyvenv.cfg" 2>/dev/null || true
fi
echo "$VENV/bin/python"
