// Throughput of one wrapped layer: forward, and a training step (forward + backward),
// for K = 1..4 perspectives at a small and a mid-size shape. Reports the rates
// "tokens" (T·B per iteration) and "GFLOP" (of the layer's GEMMs), per second.
//
//   build/bin/bench_layer --benchmark_filter=train_step
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
    attach_params(layer, store);
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

// A forward pass, or with `train` a training step (forward in training mode + backward).
void GruLayer(benchmark::State& state, bool train) {
  using Mixer = Perspectives<Gru<float>, LearnedAggregator<float>>;
  const index_t T = state.range(0), B = state.range(1), W = state.range(2);
  const int K = int(state.range(3));
  LayerBench<Mixer> b(T, B, W, K);
  for (auto _ : state) {
    b.layer.forward(b.x.view(), b.y.view(), StepContext{train, 0, 0});
    if (train) b.layer.backward(b.x.view(), b.dy.view(), b.dx.view());
    benchmark::ClobberMemory();
  }
  // Backward runs two GEMMs for each forward one.
  const double flops = (train ? 3 : 1) * gru_forward_flops(W, K);
  const double tokens = double(T * B) * double(state.iterations());
  state.counters["tokens"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
  state.counters["GFLOP"] = benchmark::Counter(tokens * flops * 1e-9, benchmark::Counter::kIsRate);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"T", "B", "W", "K"});
  for (int K = 1; K <= 4; ++K) b->Args({64, 32, 64, K});
  for (int K = 1; K <= 4; ++K) b->Args({256, 32, 256, K});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(GruLayer, forward, false)->Apply(Shapes);
BENCHMARK_CAPTURE(GruLayer, train_step, true)->Apply(Shapes);

}  // namespace
}  // namespace mtp

BENCHMARK_MAIN();
