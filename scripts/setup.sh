#!/usr/bin/env bash
# Set up a fresh Debian machine (Python >= 3.10) for alexnet: system packages, a virtual
# environment in .venv, the CPU build of PyTorch, and the package itself.
#   scripts/setup.sh         runtime only
#   scripts/setup.sh --dev   plus test, lint, ONNX and browser-check tools
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

# System packages: the default data set (Fashion-MNIST, IDX files under
# /usr/share/datasets/fashion-mnist) and tcmalloc, the allocator training runs faster with.
apt_packages=(dataset-fashion-mnist libtcmalloc-minimal4)
[ "$dev" = 1 ] && apt_packages+=(chromium)
missing=()
for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" != 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# The CPU build first: a bare `torch` requirement would otherwise pull a multi-GB CUDA build.
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" "torch==2.13.0"
if [ "$dev" = 1 ]; then
    "${pip[@]}" -e ".[dev]"
else
    "${pip[@]}" -e .
fi
