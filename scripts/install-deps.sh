#!/usr/bin/env bash
# Installs everything mtp needs from Debian 12's own archive. Idempotent; run as
# root or as a user with sudo.
#   bash scripts/install-deps.sh          build + run dependencies
#   bash scripts/install-deps.sh --torch  also the PyTorch bridge's (python/: the Python
#                                         package mtp, built when they are found)
#   bash scripts/install-deps.sh --test   also what the test suite uses: the bridge's
#                                         packages and pytest, clang for the fuzz targets,
#                                         Slurm and munge for the sweep's array test
set -euo pipefail

packages=(
  build-essential cmake pkg-config libgomp1
  libdnnl-dev ocl-icd-opencl-dev libeigen3-dev libboost-program-options-dev libfmt-dev
  libgtest-dev libbenchmark-dev nlohmann-json3-dev libicu-dev gnuplot-nox
)
torch_packages=(python3 python3-numpy python3-torch libtorch-dev pybind11-dev)
case "${1:-}" in
  "" | --torch | --test) ;;
  *) echo "install-deps.sh: unknown option '$1' (expected --torch or --test)" >&2; exit 2 ;;
esac
if [[ "${1:-}" == "--torch" ]]; then
  packages+=("${torch_packages[@]}")
fi
if [[ "${1:-}" == "--test" ]]; then
  # python3-torch: the PyTorch bridge and the independent float64 references; pytest:
  # the bridge's tests; libopenblas0-pthread: a fair BLAS for the plain-PyTorch peer in
  # the bridge's benchmark; clang with its sanitizer and
  # fuzzer runtimes and its OpenMP: the sanitized suite and the fuzz targets
  # (scripts/test-all.sh).
  # slurmctld, slurmd, munge, slurm-client: a private single-node Slurm that runs an
  # emitted sweep array (tests/slurm); the test starts and stops its own daemons.
  packages+=("${torch_packages[@]}" python3-pytest libopenblas0-pthread
             clang libclang-rt-14-dev libomp-14-dev
             slurmctld slurmd munge slurm-client)
fi

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then sudo_cmd=(sudo); else
    echo "install-deps.sh: run as root or install sudo" >&2; exit 1
  fi
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
