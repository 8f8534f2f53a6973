#!/usr/bin/env bash
# trident's main job on a fresh Debian 12 machine: install the dependencies, build, and run the example that
# walks through the detection primitives on an image (the trainer will take this place when it exists).
#   cmake/run-main.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cmake/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)" --target 00_detection_primitives
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # see README: LibTorch's OpenMP threads otherwise spin
"$build"/examples/00_detection_primitives --out out
