#!/usr/bin/env bash
# pip's LibTorch for trident's second CI leg: installs torch from PyPI into a virtual environment (once; later
# calls reuse it) and prints the CMake prefix to configure trident with. Nothing of Python is used at build or
# run time: the wheel is only a way to get LibTorch 2.x (CUDA 13.0 build, CXX11 ABI) with its CMake package.
#   cmake/pip-libtorch.sh                        # prints <venv>/lib/python3.X/site-packages/torch/share/cmake
#   cmake -S . -B build-pip -DCMAKE_PREFIX_PATH="$(cmake/pip-libtorch.sh)"
# Environment (all optional):
#   TRIDENT_TORCH_VERSION    torch version to install (default 2.11.0)
#   TRIDENT_TORCH_VENV       where the venv lives (default ${XDG_CACHE_HOME:-~/.cache}/trident/venv-torch-<version>,
#                            outside the checkout, so that a clean build directory does not download 4 GB again)
#   TRIDENT_TORCH_INDEX_URL  pip --index-url, e.g. https://download.pytorch.org/whl/cpu for the CPU-only wheel
#                            (then use a venv of its own: TRIDENT_TORCH_VENV)
#   TRIDENT_PYTHON           the Python that makes the venv (default python3; needs 3.10 or newer)
# Progress goes to stderr, the prefix alone to stdout.
set -euo pipefail

version=${TRIDENT_TORCH_VERSION:-2.11.0}
venv=${TRIDENT_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/trident/venv-torch-${version}}
python=${TRIDENT_PYTHON:-python3}
say() { echo "pip-libtorch.sh: $*" >&2; }

torch_prefix() {  # the venv's torch/share/cmake, found without importing torch
  local purelib
  purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$purelib/torch/share/cmake"
}

installed() {  # torch's installed version in the venv ("" when none), read without importing torch
  "$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true
}

have=$(installed)
if [ "${have%%+*}" = "$version" ] && [ -f "$(torch_prefix)/Torch/TorchConfig.cmake" ]; then
  say "reusing torch $have in $venv"
  torch_prefix
  exit 0
fi

if ! "$python" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  say "'$python' cannot make a virtual environment (needs Python >= 3.10 with venv and ensurepip);"
  say "on Debian 12: sudo apt-get install python3-venv, or set TRIDENT_PYTHON to another Python"
  exit 1
fi

# pip replaces another torch version and completes a half-finished earlier installation; nothing is deleted.
say "installing torch==$version into $venv (with its CUDA wheels about 4 GB; minutes)"
mkdir -p "$(dirname "$venv")"
if ! "$venv/bin/python" -c '' 2>/dev/null; then "$python" -m venv "$venv"; fi
pip_args=(--disable-pip-version-check --no-input --progress-bar off --no-cache-dir)
if [ -n "${TRIDENT_TORCH_INDEX_URL:-}" ]; then pip_args+=(--index-url "$TRIDENT_TORCH_INDEX_URL"); fi
start=$(date +%s)
"$venv/bin/python" -m pip install "${pip_args[@]}" "torch==$version" >&2
prefix=$(torch_prefix)
have=$(installed)
if [ "${have%%+*}" != "$version" ] || [ ! -f "$prefix/Torch/TorchConfig.cmake" ]; then
  say "pip finished, but the venv holds torch '${have}' and ${prefix}/Torch/TorchConfig.cmake is $(
    [ -f "$prefix/Torch/TorchConfig.cmake" ] && echo present || echo missing)"
  exit 1
fi
say "torch $have installed in $(( $(date +%s) - start )) s, $(du -sh "$venv" 2>/dev/null | cut -f1) on disk"
echo "$prefix"
