// Throughput of one wrapped layer: forward, and a training step (forward + backward),
// for K = 1..4 perspectives at a small and a mid-size shape. Reports tokens/s (T·B per
// iteration) and GFLOP/s of the layer's GEMMs.
//
//   build/bin/bench_layer --benchmark_filter=Gru
#include <benchmark/benchmark.h>

#include "mtp/aggregators/learned.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp {
namespace {

template <class Mixer>
struct LayerBench {
  index_t T, B, W;
  Mixer layer;
  ParamStore<float> store;
  Tensor<float> x, y, dy, dx;

  LayerBench(index_t T_, index_t B_, index_t W_, int K)
      : T(T_), B(B_), W(W_), layer(config(W_, K)) {
    layer.declare(store, "");
    store.finalize();
    layer.bind(store);
    RngSequence rng(0, 1);
    layer.init(rng);
    x = Tensor<float>({T, B, W});
    dy = Tensor<float>({T, B, W});
    y = Tensor<float>({T, B, W});
    dx = Tensor<float>({T, B, W});
    for (index_t i = 0; i < x.numel(); ++i) {
      x[i] = float(rng.normal());
      dy[i] = float(rng.normal());
    }
  }
  static typename Mixer::Config config(index_t W, int K) {
    typename Mixer::Config c;
    c.cell = Mixer::CellType::model_config(W);
    c.perspectives = K;
    return c;
  }
};

// GRU GEMM flops per token: input projection 2·3H·I, recurrence 2·3H·H per perspective.
double gru_forward_flops(index_t W, int K) {
  return 2.0 * 3 * W * W * (1 + K);
}

void GruForward(benchmark::State& state) {
  using Mixer = Perspectives<Gru<float>, LearnedAggregator<float>>;
  const index_t T = state.range(0), B = state.range(1), W = state.range(2);
  const int K = int(state.range(3));
  LayerBench<Mixer> b(T, B, W, K);
  for (auto _ : state) {
    b.layer.forward(b.x.view(), b.y.view(), StepContext{});
    benchmark::DoNotOptimize(b.y.data());
  }
  const double tokens = double(T * B) * double(state.iterations());
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["GFLOP/s"] =
      benchmark::Counter(tokens * gru_forward_flops(W, K) * 1e-9, benchmark::Counter::kIsRate);
}

void GruTrainStep(benchmark::State& state) {
  using Mixer = Perspectives<Gru<float>, LearnedAggregator<float>>;
  const index_t T = state.range(0), B = state.range(1), W = state.range(2);
  const int K = int(state.range(3));
  LayerBench<Mixer> b(T, B, W, K);
  for (auto _ : state) {
    b.layer.forward(b.x.view(), b.y.view(), StepContext{true, 0, 0});
    b.layer.backward(b.x.view(), b.dy.view(), b.dx.view());
    benchmark::DoNotOptimize(b.dx.data());
  }
  const double tokens = double(T * B) * double(state.iterations());
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  // Backward costs two GEMMs per forward GEMM.
  state.counters["GFLOP/s"] =
      benchmark::Counter(tokens * 3 * gru_forward_flops(W, K) * 1e-9, benchmark::Counter::kIsRate);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "B", "W", "K"});
  for (int K = 1; K <= 4; ++K) b->Args({64, 32, 64, K});
  for (int K = 1; K <= 4; ++K) b->Args({256, 32, 256, K});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK(GruForward)->Apply(Shapes);
BENCHMARK(GruTrainStep)->Apply(Shapes);

}  // namespace
}  // namespace mtp

BENCHMARK_MAIN();
