#!/usr/bin/env bash
# Runs on the GPU machine, from the bundle that bench/gpu_bundle.sh made (it is copied
# there as .gpu-bundle/run.sh): unpacks the binaries, finds CUDA's libraries, runs the
# CUDA tests (host-driven bodies, device layer and kernels, `mtp-exp layer --backend
# cuda` against `--backend cpu`) and bench_cuda, and prints a summary. Logs go to $OUT
# when it is set (the device tool brings them back). Exit 0 when every test passed, none
# was skipped, and the benchmarks ran.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
logs=${OUT:-$work/logs}
mkdir -p "$logs"
start=$SECONDS
tar -C "$work" -xJf "$here/payload.tar.xz"

# CUDA's runtime and cuBLAS: the loader's cache, the toolkit, or a Python wheel.
cuda_dir() {
  local lib=$1 path
  path=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF; exit}')
  [ -z "$path" ] && path=$(ls /usr/local/cuda/lib64/"$lib" /usr/local/cuda/lib/"$lib" \
    /usr/local/cuda/targets/x86_64-linux/lib/"$lib" 2>/dev/null | head -1)
  [ -z "$path" ] && path=$(find / -xdev -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)
  [ -n "$path" ] && dirname "$path"
}
dirs="$work/lib"
for lib in $(cat "$here/cuda-libs.txt"); do
  d=$(cuda_dir "$lib") || true
  if [ -z "$d" ]; then echo "gpu run: $lib not found on this machine"; exit 1; fi
  dirs="$dirs:$d"
done
# cuDNN is optional: bench_cuda loads it at run time for its peer, and says so without.
d=$(cuda_dir libcudnn.so.9) || true
[ -n "$d" ] && dirs="$dirs:$d"
export LD_LIBRARY_PATH="$dirs:${LD_LIBRARY_PATH:-}"
export MTP_EXP="$work/bin/mtp-exp"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 |
  tee "$logs/device.txt"
rc=0
for t in test_cuda_bodies test_cuda_layer test_cuda_cli; do
  echo "== $t ($((SECONDS - start)) s)"
  # The no-GPU error test skips where a GPU is visible; the parity tests cover it there.
  timeout 300 "$work/bin/$t" --gtest_brief=1 "--gtest_filter=-CudaCli.BackendCudaWithoutGpu*" \
    >"$logs/$t.log" 2>&1 || rc=1
  tail -3 "$logs/$t.log"
done
skipped=$(grep -hE '^\[  SKIPPED \] [0-9]+ test' "$logs"/test_cuda_*.log | awk '{n += $4} END {print n + 0}')
echo "== bench_cuda ($((SECONDS - start)) s)"
timeout 240 "$work/bin/bench_cuda" >"$logs/bench_cuda.log" 2>&1 || rc=1

echo
echo "================ GPU run summary ($((SECONDS - start)) s) ================"
for t in test_cuda_bodies test_cuda_layer test_cuda_cli; do
  echo "$t: $(grep -E '^\[  (PASSED|FAILED)' "$logs/$t.log" | tr '\n' ' ')"
done
if [ "$skipped" -gt 0 ]; then
  echo "WARNING: $skipped tests skipped: no CUDA device was usable. If nvidia-smi lists a GPU"
  echo "above, its driver may be older than the CUDA runtime the bundle needs ($(tr '\n' ' ' <"$here/cuda-libs.txt"))."
  rc=1
fi
sed -n '/^summary/,$p' "$logs/bench_cuda.log"
echo "logs: $logs"
rm -rf "$work/bin" "$work/lib"
exit $rc
