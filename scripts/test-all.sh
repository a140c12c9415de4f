#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run), from the repository root:
#   bash scripts/test-all.sh
# 1. installs the dependencies (Debian packages only; with the test extras);
# 2. the release build and every ctest (build/); with the CUDA backend wherever nvcc is
#    found (MTP_CUDA defaults on), so the kernels always compile; their GPU tests skip
#    without a GPU (bench/gpu_check.sh runs them on one);
# 3. the same suite built with clang, AddressSanitizer + UndefinedBehaviorSanitizer and
#    libFuzzer's instrumentation (build-sanitize/): any report fails the test that
#    triggered it; then each fuzz target runs for MTP_FUZZ_SECONDS (default 20) from its
#    committed corpus. A crash fails the stage and leaves the input in
#    build-sanitize/crashes/ (commit it under tests/fuzz/corpus/<target>/ once fixed:
#    the replay tests then keep it as a regression). One sanitized build serves both.
# MTP_TEST_STAGES (default "release sanitize") selects the stages after install.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=${MTP_TEST_STAGES:-release sanitize}
jobs=$(nproc)
bash scripts/install-deps.sh --test

for stage in $stages; do
  start=$SECONDS
  case $stage in
    release)
      # MTP_CUDA back to its default (on where nvcc is found), whatever the main job's
      # command (README) left in the cache.
      # The test units at -O1 (MTP_TESTS_O1): shorter to compile; the optimised code runs in
      # the libraries, mtp-exp and the Python bridge.
      cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMTP_NATIVE=ON -UMTP_CUDA \
        -DMTP_UNITY_BUILD=ON -DMTP_TESTS_O1=ON
      cmake --build build -j"$jobs"
      ctest --test-dir build --output-on-failure -j"$jobs"
      ;;
    sanitize)
      # -O1 with line tables: reports name every frame's function, file and line, at a
      # bearable speed (full -g costs a sixth more compile time and adds only variables,
      # which no report prints). The benchmarks are not tests.
      # No CUDA here: nvcc's host pass and ASan do not mix; the kernel bodies still run
      # sanitized, in host loops (test_cuda_bodies). No PyTorch bridge: an ASan runtime
      # cannot be loaded into a Python that was not started with it; the layers it drives
      # are the ones the sanitized suite runs.
      cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
        -DMTP_FUZZ=ON -DMTP_NATIVE=ON -DMTP_BUILD_BENCH=OFF -DMTP_CUDA=OFF -DMTP_TORCH=OFF -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
        -DMTP_UNITY_BUILD=ON
      cmake --build build-sanitize -j"$jobs"
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --test-dir build-sanitize --output-on-failure -j"$jobs"
      mkdir -p build-sanitize/crashes
      # Every target tests/fuzz builds (MTP_FUZZ_TARGETS there): one per source, $jobs at
      # a time (a fuzzer uses one core), each log printed when its target ends.
      pids=() failed=0
      for source in tests/fuzz/fuzz_*.cpp; do
        target="$(basename "$source" .cpp)"
        # A scratch copy of the corpus grows; the committed one stays as it is.
        rm -rf "build-sanitize/corpus-$target"
        cp -r "tests/fuzz/corpus/$target" "build-sanitize/corpus-$target"
        "build-sanitize/bin/$target" -max_total_time="${MTP_FUZZ_SECONDS:-20}" -max_len=16384 \
          -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
          -artifact_prefix="build-sanitize/crashes/$target-" "build-sanitize/corpus-$target" \
          > "build-sanitize/$target.log" 2>&1 &
        pids+=("$!:$target")
        if (( ${#pids[@]} >= jobs )); then
          entry=${pids[0]}; pids=("${pids[@]:1}")
          wait "${entry%%:*}" || { failed=1; echo "test-all.sh: ${entry#*:} failed"; }
          cat "build-sanitize/${entry#*:}.log"
        fi
      done
      for entry in "${pids[@]}"; do
        wait "${entry%%:*}" || { failed=1; echo "test-all.sh: ${entry#*:} failed"; }
        cat "build-sanitize/${entry#*:}.log"
      done
      (( failed == 0 ))
      ;;
    *) echo "test-all.sh: unknown stage '$stage'" >&2; exit 2 ;;
  esac
  echo "test-all.sh: stage $stage passed in $((SECONDS - start)) s"
done
