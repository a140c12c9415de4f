// Throughput of one wrapped layer, Perspectives<Cell, LearnedAggregator>, for every
// cell: forward, and a training step (forward in training mode + backward), for K = 1..4
// perspectives at a small and the shape; and of a whole model's training step
// (RWKV-4 blocks, as mtp-exp trains them). Reports the rates "tokens" (T·B per
// iteration) and "GFLOP" (of the GEMMs, counted by the formulas below), per second.
//
//   build/bin/bench_layer --benchmark_filter=train_step
//   build/bin/bench_layer --benchmark_filter='layer/rwkv/.*/W:256'
//   build/bin/bench_layer --benchmark_filter=model/
//
// Names: layer/<cell>/{forward,train_step}/T/B/W/K and model/<cell>/train_step/T/B/W/L/V/K,
// then /real_time (times and rates are wall-clock).
#include <benchmark/benchmark.h>

#include <string>

#include "workloads.hpp"

namespace mtp::bench {
namespace {

void set_rates(benchmark::State& state, double tokens_per_iteration, double flops_per_token) {
  const double tokens = tokens_per_iteration * double(state.iterations());
  state.counters["tokens"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["GFLOP"] =
      benchmark::Counter(tokens * flops_per_token * 1e-9, benchmark::Counter::kIsRate);
}

// A forward pass, or with `train` a training step (forward in training mode + backward).
template <class Cell>
void Layer(benchmark::State& state, bool train) {
  LayerWorkload<Cell> w(state.range(0), state.range(1), state.range(2), int(state.range(3)));
  // Untimed first call: it allocates the activations and creates the GEMM primitives,
  // a cost paid once per shape that would otherwise be a single-iteration result.
  w.run(train);
  for (auto _ : state) {
    w.run(train);
    benchmark::ClobberMemory();
  }
  set_rates(state, double(w.T * w.B), w.flops_per_token(train));
}

void LayerShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "B", "W", "K"});
  for (int K = 1; K <= 4; ++K) b->Args({64, 32, 64, K});
  for (int K = 1; K <= 4; ++K) b->Args({256, 32, 256, K});
  b->Unit(benchmark::kMillisecond);
  // Wall time: the work runs on OpenMP and oneDNN threads, and rates divided by the
  // main thread's CPU time would overstate them by up to the thread count.
  b->UseRealTime();
}

template <class Cell>
void ModelTrainStep(benchmark::State& state) {
  ModelWorkload<Cell> w(state.range(0), state.range(1), state.range(2), int(state.range(3)),
                        state.range(4), int(state.range(5)));
  w.train_step();  // untimed: allocation and primitive creation, as in Layer
  for (auto _ : state) {
    w.train_step();
    benchmark::ClobberMemory();
  }
  set_rates(state, double(w.T * w.B), w.flops_per_token());
}

void ModelShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "B", "W", "L", "V", "K"});
  for (int K : {1, 3}) b->Args({256, 16, 256, 4, 256, K});
  b->Unit(benchmark::kMillisecond);
  b->UseRealTime();
}

// One set of benchmarks per cell, registered from the cell type; the name is the
// cell's, as on the mtp-exp command line.
template <class Cell>
void register_layer_benchmarks() {
  const std::string cell(Cell::kName);
  for (const bool train : {false, true}) {
    const std::string name = "layer/" + cell + (train ? "/train_step" : "/forward");
    benchmark::RegisterBenchmark(name.c_str(), Layer<Cell>, train)->Apply(LayerShapes);
  }
}

[[maybe_unused]] const bool registered = [] {
  register_layer_benchmarks<Gru<float>>();
  register_layer_benchmarks<Lstm<float>>();
  register_layer_benchmarks<RwkvTimeMix<float>>();
  register_layer_benchmarks<LinearSsm<float>>();
  benchmark::RegisterBenchmark("model/rwkv/train_step", ModelTrainStep<RwkvTimeMix<float>>)
      ->Apply(ModelShapes);
  return true;
}();

}  // namespace
}  // namespace mtp::bench

BENCHMARK_MAIN();
