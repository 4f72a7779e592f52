#!/usr/bin/env bash
# Set up imusic on a fresh machine: system packages, a virtual environment in .venv, the
# package with its test extras. Safe to run again: it does nothing when all is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# System libraries: open3d needs libusb, libGL and libEGL; the viewer tests need Xvfb and Mesa.
APT_PACKAGES=(libusb-1.0-0 libgl1 libegl1 libgl1-mesa-dri xvfb xauth hdf5-tools)
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
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.imusic-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pipargs=(-q)
  [ -d /opt/wheels ] && pipargs+=(--find-links /opt/wheels)
  # Torch first, pinned: an unpinned torch would pull gigabytes of CUDA wheels. 2.13.0 is the
  # CPU build this project is tested with; any torch 2.x already installed is kept.
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch 2.13.0 (CPU)"
    .venv/bin/pip install "${pipargs[@]}" "torch==2.13.0" \
      || .venv/bin/pip install "${pipargs[@]}" "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
  echo "[setup] installing imusic and its test extras into .venv"
  .venv/bin/pip install "${pipargs[@]}" -e ".[test]"
  echo "$want" > "$stamp"
fi
