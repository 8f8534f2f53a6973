#!/usr/bin/env bash
# Installs every Debian 12 package trident needs to build, test, benchmark and run its examples.
#   cmake/install-deps.sh            # library, tests, examples, benchmarks
#   cmake/install-deps.sh --fixtures # also python3-torch/torchvision (only to regenerate test fixtures
#                                      # and run the PyTorch reference benchmarks; never needed by the library)
#   cmake/install-deps.sh --pip-libtorch  # also python3-venv where python3 cannot make a venv (for
#                                      # cmake/pip-libtorch.sh, the CI leg against pip's LibTorch 2.x)
#   cmake/install-deps.sh --fuzzers  # also Clang 14 and its libFuzzer runtime (fuzz/run.sh, the CI leg fuzz)
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libtorch-dev            # LibTorch 1.13 (CPU)
  libgloo-dev             # c10d ProcessGroupGloo headers (distributed training)
  libopenblas0-pthread    # optimised BLAS; Debian's default reference BLAS is ~25x slower
  libboost-dev            # Boost.Hana
  libfmt-dev
  doctest-dev
  libopencv-dev
  libmatio-dev
  libcli11-dev
  nlohmann-json3-dev
  libfaiss-dev            # trident::faiss: approximate search of large gallery indexes (optional)
  libbenchmark-dev
)
for arg in "$@"; do
  case "$arg" in
    --fixtures) packages+=(python3-torch python3-torchvision) ;;
    --pip-libtorch) python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv) ;;
    --fuzzers) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install-deps.sh: unknown option '$arg' (known: --fixtures, --pip-libtorch, --fuzzers)" >&2; exit 2 ;;
  esac
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Make OpenBLAS the system BLAS/LAPACK (LibTorch on Debian links libblas.so.3).
triplet=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for alt in "libblas.so.3-${triplet}" "liblapack.so.3-${triplet}"; do
  cand=$(update-alternatives --list "$alt" 2>/dev/null | grep openblas-pthread | head -n1 || true)
  if [ -n "$cand" ]; then $sudo update-alternatives --set "$alt" "$cand" >/dev/null; fi
done
echo "install-deps.sh: all packages present (${#packages[@]}); BLAS: $(update-alternatives --query "libblas.so.3-${triplet}" 2>/dev/null | awk '/^Value:/{print $2}')"
