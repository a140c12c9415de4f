// The workloads the benchmarks time, shared by bench_layer (Google Benchmark) and
// compare (the side-by-side table): one wrapped layer's forward or training step, and a
// whole model's training step as mtp-exp runs it, with the GEMM flop count of each.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "mtp/aggregators/learned.hpp"
#include "mtp/cells/gru.hpp"
#include "mtp/cells/lstm.hpp"
#include "mtp/cells/rwkv.hpp"
#include "mtp/cells/ssm.hpp"
#include "mtp/core/model.hpp"
#include "mtp/core/optim.hpp"
#include "mtp/core/perspectives.hpp"
#include "mtp/experiments/dispatch.hpp"

namespace mtp::bench {

template <class>
inline constexpr bool kAlwaysFalse = false;

// GEMM flops per token of one forward pass of the mixer of width W (I = H = N = C = W)
// with K perspectives. Elementwise work (gates, the WKV scan, the aggregation) is not
// counted, nor is the selector's 2·K·I (under 3% at these shapes), so GFLOP/s is the
// rate of the GEMMs that any implementation of the cell has to do.
//   GRU, LSTM (G = 3, 4 gates): the input projection 2·G·H·I runs once, shared by the
//     perspectives; the recurrence 2·G·H·H runs once per perspective:
//     2·G·H·I + K·2·G·H·H.
//   RWKV-4 time mix: the k, v, r projections and the output projection, four C×C
//     GEMMs whatever K (the perspectives differ only in the diagonal scan): 8·C².
//   Linear SSM: in_proj (N×I) and out_proj (I×N), whatever K: 4·N·I.
// A training step costs 3× forward: backward runs two GEMMs (dX and dW) per forward one.
template <class Cell>
double mixer_forward_flops(index_t W, int K) {
  const double w = double(W);
  if constexpr (std::is_same_v<Cell, Gru<float>> || std::is_same_v<Cell, Lstm<float>>) {
    const double G = std::is_same_v<Cell, Gru<float>> ? 3 : 4;
    return 2 * G * w * w + K * 2 * G * w * w;
  } else if constexpr (std::is_same_v<Cell, RwkvTimeMix<float>>) {
    return 8 * w * w;
  } else if constexpr (std::is_same_v<Cell, LinearSsm<float>>) {
    return 4 * w * w;
  } else {
    static_assert(kAlwaysFalse<Cell>, "no flop formula for this cell");
  }
}

// GEMM flops per token of one forward pass of a block's FFN of width W:
//   4× MLP: fc (4W×W) and proj (W×4W): 16·W².
//   RWKV channel mix: key (4C×C), value (C×4C), receptance (C×C): 18·C².
template <class Ffn>
double ffn_forward_flops(index_t W) {
  const double w = double(W);
  if constexpr (std::is_same_v<Ffn, Mlp<float>>)
    return 16 * w * w;
  else if constexpr (std::is_same_v<Ffn, RwkvChannelMix<float>>)
    return 18 * w * w;
  else
    static_assert(kAlwaysFalse<Ffn>, "no flop formula for this FFN");
}

// One Perspectives<Cell, LearnedAggregator> layer of width W (I = H = N = C = W) on
// random x and dy (T,B,W). `fused` is the matrix cells' oneDNN fast path at K = 1.
template <class Cell>
struct LayerWorkload {
  using Mixer = Perspectives<Cell, LearnedAggregator<float>>;
  index_t T, B, W;
  int K;
  Mixer layer;
  ParamStore<float> store;
  Tensor<float> x, y, dy, dx;  // (T,B,W)

  LayerWorkload(index_t T_, index_t B_, index_t W_, int K_, bool fused = true)
      : T(T_), B(B_), W(W_), K(K_), layer(config(W_, K_, fused)) {
    attach_params(layer, store);
    RngSequence rng(0, 1);
    layer.init(rng);
    for (Tensor<float>* t : {&x, &y, &dy, &dx}) *t = Tensor<float>({T, B, W});
    for (index_t i = 0; i < x.numel(); ++i) {
      x[i] = float(rng.normal());
      dy[i] = float(rng.normal());
    }
  }
  static typename Mixer::Config config(index_t W, int K, bool fused) {
    typename Mixer::Config c;
    c.cell = Cell::model_config(W);
    if constexpr (requires { c.cell.fused; }) c.cell.fused = fused;
    c.perspectives = K;
    return c;
  }
  // A forward pass, or with `train` a training step (forward in training mode + backward).
  void run(bool train) {
    layer.forward(x.view(), y.view(), StepContext{.training = train, .seed = 0, .step = 0});
    if (train) layer.backward(x.view(), dy.view(), dx.view());
  }
  double flops_per_token(bool train) const {
    return (train ? 3 : 1) * mixer_forward_flops<Cell>(W, K);
  }
};

// One training step of the model mtp-exp builds around the cell (ModelFor: RWKV-4's
// block with channel mix for rwkv, the 4× MLP for the others), done as the trainer does
// it: zero the gradients, forward with loss, backward, global-norm clipping, AdamW.
// Tokens (T,B) and targets (T,B) are uniform over the vocabulary; the cost does not
// depend on their values.
//
// GEMM flops per token, forward: L·(mixer + FFN) + the head 2·V·W (the embedding is a
// gather, the LayerNorms and the loss elementwise); a step is 3× that. The optimiser
// and clipping are O(parameters), a few ms per step.
template <class Cell>
struct ModelWorkload {
  using Mixer = Perspectives<Cell, LearnedAggregator<float>>;
  using M = exp::ModelFor<Mixer>;
  using Ffn = typename exp::ModelFamily<Cell>::Ffn;
  index_t T, B, W, V;
  int L, K;
  M model;
  AdamW<float> opt;
  std::vector<std::int32_t> tokens, targets;
  std::uint64_t step = 0;

  ModelWorkload(index_t T_, index_t B_, index_t W_, int L_, index_t V_, int K_)
      : T(T_),
        B(B_),
        W(W_),
        V(V_),
        L(L_),
        K(K_),
        model(model_config(W_, L_, V_), mixer(W_, K_)),
        opt(init_and_params(model), AdamWConfig{}),
        tokens(T * B),
        targets(T * B) {
    const CounterRng rng(0, 1);
    for (index_t i = 0; i < T * B; ++i) {
      tokens[i] = std::int32_t(rng.uniform(2 * std::uint64_t(i)) * double(V));
      targets[i] = std::int32_t(rng.uniform(2 * std::uint64_t(i) + 1) * double(V));
    }
  }
  static ModelConfig model_config(index_t W, int L, index_t V) {
    ModelConfig mc{.vocab = V, .width = W, .layers = L, .ffn = true};
    exp::ModelFamily<Cell>::configure(mc);
    return mc;
  }
  static typename Mixer::Config mixer(index_t W, int K) {
    typename Mixer::Config c;
    c.cell = Cell::model_config(W);
    c.perspectives = K;
    return c;
  }
  static ParamStore<float>& init_and_params(M& m) {
    m.init(0);
    return m.params();
  }
  void train_step() {
    ParamStore<float>& params = model.params();
    params.zero_grad();
    const CrossEntropyStats st =
        model.forward(tokens.data(), targets.data(), T, B,
                      StepContext{.training = true, .seed = 0, .step = step++});
    model.backward();
    last_loss = st.loss_sum;
    clip_grad_global_norm(params, grad_global_norm(params), 1.0);
    opt.step(params, 1e-3, {});
  }
  double flops_per_token() const {
    const double forward =
        L * (mixer_forward_flops<Cell>(W, K) + ffn_forward_flops<Ffn>(W)) + 2.0 * double(V * W);
    return 3 * forward;
  }
  double last_loss = 0;
};

}  // namespace mtp::bench
