#!/usr/bin/env bash
# Set up imusic on a fresh machine: system packages, a virtual environment in .venv, the
# package with its test extras, at the versions pinned in constraints.txt (made by
# scripts/lock.sh). Safe to run again: it does nothing when all is in place.
#
# IMUSIC_NEWEST=1 sets up .venv-newest instead, with the newest versions that pyproject.toml's
# ranges allow and no pins (`make test-newest`), to find out early what a new release breaks.
set -euo pipefail
cd "$(dirname "$0")/.."

# System libraries: open3d needs libusb, libGL and libEGL; the viewer tests need Xvfb and Mesa;
# the session tests read files with Debian's h5dump (HDF5 1.10: what older tools can open); the
# glTF export test imports a .glb with Blender (its importer needs Debian's numpy).
APT_PACKAGES=(libusb-1.0-0 libgl1 libegl1 libgl1-mesa-dri xvfb xauth hdf5-tools blender python3-numpy chromium chromium-driver)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing system packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "[setup] missing system packages: ${missing[*]}"
    echo "[setup] run: sudo apt-get install -y ${missing[*]}   (then run this again)"
    exit 1
  fi
fi

PY=${PYTHON:-python3}
NEWEST=${IMUSIC_NEWEST:-0}
if [ "$NEWEST" = 1 ]; then VENV=.venv-newest; else VENV=.venv; fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
stamp=$VENV/.imusic-installed
want=$(cat pyproject.toml scripts/setup.sh constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pipargs=(-q)
  [ -d /opt/wheels ] && pipargs+=(--find-links /opt/wheels)
  if [ "$NEWEST" = 1 ]; then
    pipargs+=(--upgrade --upgrade-strategy eager)
  else
    pipargs+=(-c constraints.txt)
  fi
  # Torch first, pinned: an unpinned torch would pull gigabytes of CUDA wheels. 2.13.0 is the
  # CPU build this project is tested with; any torch 2.x already installed is kept.
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch 2.13.0 (CPU)"
    "$VENV/bin/pip" install "${pipargs[@]}" "torch==2.13.0" \
      || "$VENV/bin/pip" install "${pipargs[@]}" "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
  echo "[setup] installing imusic and its test extras into $VENV"
  "$VENV/bin/pip" install "${pipargs[@]}" -e ".[test]"
  echo "$want" > "$stamp"
fi
