#!/usr/bin/env bash
# The CUDA tests and benchmarks built here, packed for a GPU machine that has CUDA but
# not this project's Debian packages (the device tool's image has no oneDNN, Boost, fmt
# or GoogleTest, and no network to install them):
#
#   bash bench/gpu_bundle.sh     # here: builds build-gpu/ (CUDA, sm_90, portable host
#                                # code) and writes .gpu-bundle/ (git-ignored, < 64 MiB)
#   bash .gpu-bundle/run.sh      # there (device tool: carry [".gpu-bundle"]): runs the
#                                # CUDA tests and bench_cuda, prints a summary, and copies
#                                # the logs to $OUT when it is set
#
# The bundle holds the stripped binaries and the shared libraries the image lacks
# (oneDNN, fmt, Boost program_options, OpenCL loader, libgomp), compressed. cuBLAS and
# the CUDA runtime come from the GPU machine. bench/gpu_check.sh is the alternative for
# a GPU machine with the Debian packages installed: it builds there.
set -euo pipefail
cd "$(dirname "$0")/.."
arch=${MTP_CUDA_ARCH:-90}
targets=(test_cuda_bodies test_cuda_layer test_cuda_cli mtp-exp bench_cuda)

cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMTP_CUDA=ON -DMTP_NATIVE=OFF \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
cmake --build build-gpu -j"$(nproc)" --target "${targets[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
for t in "${targets[@]}"; do
  cp "build-gpu/bin/$t" "$stage/bin/"
  strip --strip-unneeded "$stage/bin/$t"
done
# Every shared library the binaries load from the system's own directories, except the
# C and C++ runtimes (the GPU machine's are as new or newer) and CUDA's (from its driver
# and toolkit).
ldd "${targets[@]/#/build-gpu/bin/}" | awk '$2 == "=>" && $3 ~ /^\/(usr\/)?lib/ {print $3}' |
  sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | libstdc++.so* | libgcc_s.so*) ;;
    libcuda* | libcublas* | libcudart*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done

rm -rf .gpu-bundle
mkdir -p .gpu-bundle
tar -C "$stage" -cJf .gpu-bundle/payload.tar.xz bin lib
# The CUDA libraries the binaries were linked against (their sonames carry the CUDA major
# version), for run.sh to find on the GPU machine.
readelf -d build-gpu/bin/test_cuda_layer | grep -o 'lib\(cudart\|cublas\|cublasLt\)\.so[.0-9]*' |
  sort -u >.gpu-bundle/cuda-libs.txt
cp bench/gpu_bundle_run.sh .gpu-bundle/run.sh
echo "gpu_bundle: .gpu-bundle/ is $(du -sh .gpu-bundle | cut -f1) ($(ls "$stage/lib" | tr '\n' ' '))"
