#!/usr/bin/env bash
# trident's test suite: installs what is missing, builds everything (library checks, examples, benchmarks), runs
# the doctest suite and the consumer-project checks through CTest.
#   cmake/run-tests.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cmake/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)"
