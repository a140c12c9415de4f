#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in one go (issue 7): configures and builds
# build-gpu/ with -DMTP_CUDA=ON (only the targets needed), runs the CUDA tests (host-driven
# bodies, device layer and kernels against the CPU reference, `mtp-exp layer --backend
# cuda` against `--backend cpu`), then the GPU benchmarks (with cuDNN's LSTM/GRU as the
# peer of mtp's layers when cuDNN 9 is installed), and prints a summary.
# Designed to finish in under 8 minutes on one H100 with 16 cores:
#   bash bench/gpu_check.sh            # MTP_JOBS (default nproc), MTP_CUDA_ARCH (default 90)
# Exit status: 0 when every CUDA test passed (none skipped) and the benchmarks ran.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${MTP_JOBS:-$(nproc)}
arch=${MTP_CUDA_ARCH:-90}
log=build-gpu/gpu_check.log
start=$SECONDS
mkdir -p build-gpu
: >"$log"

step() { echo "== $1 ($((SECONDS - start)) s)" | tee -a "$log"; }

step "device"
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 ||
  echo "nvidia-smi not available") | tee -a "$log"

step "configure"
if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMTP_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" >>"$log" 2>&1; then
  tail -30 "$log"
  echo "gpu_check: configure failed (see $log)"
  exit 1
fi

step "build"
build_start=$SECONDS
if ! cmake --build build-gpu -j"$jobs" --target mtp_cuda test_cuda_bodies test_cuda_layer \
  test_cuda_cli mtp-exp bench_cuda >>"$log" 2>&1; then
  grep -E "error|Error" "$log" | head -30
  echo "gpu_check: build failed (see $log)"
  exit 1
fi
build_s=$((SECONDS - build_start))

step "CUDA tests"
tests_out=build-gpu/gpu_check_tests.log
ctest --test-dir build-gpu -j"$jobs" --timeout 300 --output-on-failure \
  -R '(CudaBodies|HostProgram|HostMixedProgram|DeviceLayer|DeviceKernels|DeviceLayerApi|CudaCli)' \
  -E 'BackendCudaWithoutGpu' \
  >"$tests_out" 2>&1
tests_rc=$?
cat "$tests_out" >>"$log"
grep -E "tests passed|tests failed|\(Failed\)|\(Skipped\)|\*\*\*" "$tests_out" | head -40
skipped=$(grep -c "(Skipped)" "$tests_out" || true)

step "benchmarks"
bench_out=build-gpu/gpu_check_bench.log
timeout 240 build-gpu/bin/bench_cuda >"$bench_out" 2>&1
bench_rc=$?
cat "$bench_out" >>"$log"

echo
echo "================ gpu_check summary ================"
echo "build of the CUDA targets: ${build_s} s; total: $((SECONDS - start)) s"
grep -E "tests passed|tests failed" "$tests_out"
[ "$skipped" -gt 0 ] && echo "WARNING: $skipped CUDA tests skipped on a GPU machine (is the device visible?)"
# bench_cuda's summary holds every measurement, the cuDNN peer's lines and the targets;
# a run that died before it still shows what it measured.
if grep -q '^summary' "$bench_out"; then
  sed -n '/^summary/,$p' "$bench_out"
else
  echo "bench_cuda printed no summary; its measurements so far:"
  grep -E '^cuDNN| K=[0-9]' "$bench_out"
fi
[ $bench_rc -ne 0 ] && { echo "benchmarks failed (exit $bench_rc):"; tail -5 "$bench_out"; }
echo "full log: $log"
[ $tests_rc -eq 0 ] && [ "$skipped" -eq 0 ] && [ $bench_rc -eq 0 ]
