#!/bin/sh
# trident's bench_network next to the PyTorch reference (benchmarks/reference/), case by case in one invocation,
# with the same options, and a table of the ratios trident / reference. Debian's python3-torch and
# python3-torchvision are all the reference needs. Build first:
#   cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build --target bench_network
# then e.g.
#   benchmarks/compare.sh --threads 2 --repeat 5 --rounds 2 --markdown compare.md --json compare.json
# Every option is compare.py's (benchmarks/reference/compare.py --help); --bench PATH if the build is elsewhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
exec /usr/bin/python3 "$here/reference/compare.py" "$@"
