// Perspectives<Cell, Aggregator>: any cell, K temporal perspectives (docs/contract.md §3).
//
// Every perspective runs the same cell with the same weights but its own decay row
// decay[k] and its own state; the aggregator combines their outputs:
//
//   y_t = post( Agg_k( recur_k(pre(x)_t, s^k_{t−1}) ) )
//
// The wrapper owns the decay tensor (K,D) and the order of the parts; it knows
// nothing about the cell it wraps. Decay row k starts at the cell's base decay
// plus spread·(k − (K−1)/2), so the K views watch different time scales.
#pragma once

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include "mtp/core/cell.hpp"

namespace mtp {

// A cell may offer a fast path that replaces pre + recur for some configurations
// (the matrix cells at K = 1: oneDNN's fused RNN). fused_forward returns whether it
// ran; fused_backward then replaces recur_backward + pre_backward.
template <class C>
concept FusedCell = requires(C c, const RecurIn<typename C::Scalar>& in,
                             const RecurOut<typename C::Scalar>& out,
                             const RecurGrad<typename C::Scalar>& grad, bool training) {
  { c.fused_forward(in, out, training) } -> std::same_as<bool>;  // x, decay, s0 → Yk, sT
  c.fused_backward(grad);  // dYk, dsT → dx+, ddecay+, ds0+ (dP unused: no P)
};

// The selector noise's stream of a layer declared under `prefix` that was given none:
// FNV-1a of the prefix, above the index-keyed streams that Model uses.
inline std::uint64_t prefix_noise_stream(const std::string& prefix) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : prefix) h = (h ^ c) * 0x100000001B3ull;
  return rng_stream::kSelectorNoise + (1ull << 31) + (h >> 33);
}

template <Cell C, Aggregator Agg>
class Perspectives {
 public:
  using Scalar = typename C::Scalar;
  using S = Scalar;
  using CellType = C;
  using AggregatorType = Agg;
  static_assert(std::is_same_v<S, typename Agg::Scalar>, "cell and aggregator scalar differ");

  struct Config {
    typename C::Config cell{};
    int perspectives = 1;       // K
    double decay_spread = 1.0;  // s
    typename Agg::Options aggregator{};
    LayerPosition position{};
    // Diagonal cells (MixingCell) apply the aggregator's weights inside their scan, so
    // the (T,B,K,Dy) outputs are never materialised; false runs recur + aggregator
    // separately (the reference, and needed for perspective_outputs()).
    bool mixed_scan = true;
    // The random-number stream of the selector noise. Unset, it is derived from the
    // prefix the layer is declared under, so every layer of one store draws its own
    // noise; Model sets kSelectorNoise + layer index.
    std::optional<std::uint64_t> noise_stream{};
  };

  explicit Perspectives(const Config& cfg)
      : cfg_(cfg),
        cell_(cfg.cell),
        agg_(cfg.perspectives, cell_.input_width(), cfg.aggregator),
        K_(cfg.perspectives) {
    MTP_CHECK(K_ >= 1, "perspectives must be >= 1, got {}", K_);
  }

  index_t input_width() const { return cell_.input_width(); }
  index_t output_width() const { return cell_.output_width(); }
  index_t state_width() const { return cell_.state_width(); }
  int perspectives() const { return K_; }
  const Config& config() const { return cfg_; }
  C& cell() { return cell_; }
  Agg& aggregator() { return agg_; }
  const Agg& aggregator() const { return agg_; }
  // The decay rows (K,D), one per perspective.
  CView<S> decay() const { return decay_.value; }

  void declare(ParamStore<S>& store, const std::string& prefix) {
    cell_.declare(store, prefix);
    decay_ = store.add(prefix + "decay", {K_, cell_.decay_width()}, ParamRole::perspective);
    const index_t before_aggregator = store.size();
    agg_.declare(store, prefix);
    aggregator_params_ = store.size() - before_aggregator;
    prefix_ = prefix;
    noise_stream_ = cfg_.noise_stream ? *cfg_.noise_stream : prefix_noise_stream(prefix);
  }
  void bind(ParamStore<S>& store) {
    MTP_CHECK(decay_.ref.index >= 0, "perspective layer bound before declare(store, prefix)");
    cell_.bind(store);
    store.bind(decay_);
    agg_.bind(store);
    store_ = &store;
  }
  // Writes every parameter of the layer (cell, decay rows, aggregator) and marks them set.
  void init(RngSequence& rng) {
    MTP_CHECK(store_ != nullptr,
              "perspective layer '{}' initialised before bind(store) (attach_params does "
              "declare, finalize and bind)",
              prefix_);
    const index_t D = cell_.decay_width();
    Tensor<S> base({D});
    cell_.init(rng, base.view(), cfg_.position);
    for (int k = 0; k < K_; ++k) {
      const double offset = cfg_.decay_spread * (k - (K_ - 1) / 2.0);
      for (index_t c = 0; c < D; ++c) decay_.value[k * D + c] = base[c] + S(offset);
    }
    agg_.init(rng);
    store_->mark_set(decay_);
  }

  // The stream the selector noise of this layer is drawn from (docs/contract.md §6).
  std::uint64_t noise_stream() const { return noise_stream_; }

  // x (T,B,I) → y (T,B,O). When `state` (B,K,Sw) is given, it is the initial state and
  // receives the final one (streaming, carried state); otherwise states start at zero.
  // Saves what backward needs.
  void forward(CView<S> x, View<S> y, const StepContext& ctx, View<S> state = {}) {
    MTP_CHECK(store_ != nullptr,
              "perspective layer '{}' used before bind(store) (attach_params does declare, "
              "finalize and bind)",
              prefix_);
    MTP_CHECK(store_->is_set(decay_.ref),
              "perspective layer '{}' used before its parameters were set: call init(rng) "
              "or load them (after writing the store's values() directly, mark_all_set)",
              prefix_);
    MTP_CHECK(x.shape.rank() == 3 && x.dim(2) == input_width(),
              "perspective layer input has shape {}, expected (T,B,{})", x.shape.str(),
              input_width());
    const index_t T = x.dim(0), B = x.dim(1);
    check_shape(y.shape, {T, B, output_width()}, "perspective layer output");
    if (!state.empty()) check_shape(state.shape, {B, K_, state_width()}, "perspective state");

    P_.resize({T, B, cell_.pre_width()});
    A_.resize({T, B, cell_.recur_width()});
    const std::uint64_t noise_stream = noise_stream_;
    forward_x_ = Fingerprint::of(x);
    fused_ = mixed_ = false;
    const RecurIn<S> recur{.x = x, .P = P_.view(), .decay = decay_.value, .s0 = state};
    if constexpr (MixingCell<C> && WeightingAggregator<Agg>) {
      if (cfg_.mixed_scan) {
        mixed_ = true;
        Yk_.resize({0});
        cell_.pre_forward({.x = x, .s0 = state}, P_);
        alpha_ = agg_.weights_forward(x, ctx, noise_stream);
        cell_.recur_mixed_forward(recur, alpha_, {.A = A_.view(), .sT = state});
        cell_.post_forward({.A = A_.view(), .P = P_.view(), .x = x}, y);
        return;
      }
    }
    Yk_.resize({T, B, K_, cell_.recur_width()});
    const RecurOut<S> out{.Yk = Yk_.view(), .sT = state};
    if constexpr (FusedCell<C>) fused_ = cell_.fused_forward(recur, out, ctx.training);
    if (!fused_) {
      cell_.pre_forward({.x = x, .s0 = state}, P_);
      cell_.recur_forward(recur, out);
    }
    agg_.forward({.Yk = Yk_.view(), .x = x}, A_.view(), ctx, noise_stream);
    cell_.post_forward({.A = A_.view(), .P = P_.view(), .x = x}, y);
  }

  // The gradients of the carried state, for backward: dsT (B,K,Sw), the loss's gradient
  // with respect to the final state the forward wrote, or empty (none: the usual case,
  // truncated backpropagation); ds0 (B,K,Sw), overwritten with the gradient of the
  // initial state, or empty (not wanted: then nothing is spent on it). They let a caller
  // chain layers over time (backpropagation through a stream cut into calls) or learn an
  // initial state.
  struct StateGrad {
    MTP_DESIGNATED_ONLY;
    CView<S> dsT{};
    View<S> ds0{};
  };

  // Saved from forward: P, Yk (unless mixed), A, and whatever the cell and aggregator saved.
  // dy (T,B,O) → dx (T,B,I), overwritten; parameter gradients accumulate; the state's
  // gradients as StateGrad says.
  void backward(CView<S> x, CView<S> dy, View<S> dx, const StateGrad& state = StateGrad{}) {
    MTP_CHECK(P_.numel() > 0, "perspective layer backward before any forward");
    check_shape(x.shape, {P_.shape()[0], P_.shape()[1], input_width()},
                "perspective layer x (backward takes the last forward's input)");
    MTP_CHECK(Fingerprint::of(x) == forward_x_,
              "perspective layer '{}': backward's x differs from the last forward's x "
              "(backward belongs to the last forward only; run forward again first)",
              prefix_);
    check_shape(dy.shape, {x.dim(0), x.dim(1), output_width()}, "perspective layer dy");
    check_shape(dx.shape, x.shape, "perspective layer dx");
    const Shape state_shape{x.dim(1), K_, state_width()};
    if (!state.dsT.empty()) check_shape(state.dsT.shape, state_shape, "perspective layer dsT");
    if (!state.ds0.empty()) {
      check_shape(state.ds0.shape, state_shape, "perspective layer ds0");
      std::fill(state.ds0.begin(), state.ds0.end(), S(0));
    }
    dA_.resize(A_.shape());
    // After the fast path nothing reads or writes dP (its cells' post is the identity):
    // post_backward gets an empty view, and the (T,B,Dp) buffer is not cleared.
    View<S> dP;
    if (!fused_) {
      dP_.resize(P_.shape());
      dP_.zero();
      dP = dP_.view();
    }
    std::fill(dx.begin(), dx.end(), S(0));
    const PostIn<S> post{.A = A_.view(), .P = P_.view(), .x = x};
    cell_.post_backward(post, {.dy = dy, .dA = dA_.view(), .dP = dP, .dx = dx});
    // s0 is not passed: the caller's state buffer holds sT by now (the parts kept s0).
    const RecurIn<S> recur{.x = x, .P = P_.view(), .decay = decay_.value, .s0 = {}};
    const PreIn<S> pre{.x = x, .s0 = {}};
    if constexpr (MixingCell<C> && WeightingAggregator<Agg>) {
      if (mixed_) {
        dalpha_.resize({x.dim(0), x.dim(1), K_});
        cell_.recur_mixed_backward(recur, alpha_,
                                   {.dA = dA_.view(),
                                    .dsT = state.dsT,
                                    .dP = dP,
                                    .ddecay = decay_.grad,
                                    .dalpha = dalpha_.view(),
                                    .ds0 = state.ds0,
                                    .dx = dx});
        agg_.weights_backward(x, {.dalpha = dalpha_.view(), .dx = dx});
        cell_.pre_backward(pre, {.dP = dP, .dx = dx, .ds0 = state.ds0});
        return;
      }
    }
    dYk_.resize(Yk_.shape());
    agg_.backward({.Yk = Yk_.view(), .x = x}, {.dA = dA_.view(), .dYk = dYk_.view(), .dx = dx});
    const RecurGrad<S> grad{.dYk = dYk_.view(),
                            .dsT = state.dsT,
                            .dP = dP,
                            .ddecay = decay_.grad,
                            .ds0 = state.ds0,
                            .dx = dx};
    if constexpr (FusedCell<C>) {
      if (fused_) {
        cell_.fused_backward(grad);
        return;
      }
    }
    cell_.recur_backward(recur, Yk_.view(), grad);
    cell_.pre_backward(pre, {.dP = dP, .dx = dx, .ds0 = state.ds0});
  }

  // Floats per (t, b) the layer keeps between forward and backward, with backward's
  // scratch, for memory estimates: P, A and their gradients, Yk and dYk unless the
  // aggregation runs inside the scan, the aggregator's weights and their gradients (at
  // most 4K), and the cell's own: its activation_floats_per_token(K), or for a cell
  // without one a guess of K·(Dp + Dy).
  index_t activation_floats_per_token() const {
    const index_t Dp = cell_.pre_width(), Dy = cell_.recur_width(), K = K_;
    index_t n = 2 * Dp + 2 * Dy + 4 * K;
    bool mixed = false;
    if constexpr (MixingCell<C> && WeightingAggregator<Agg>) mixed = cfg_.mixed_scan;
    if (!mixed) n += 2 * K * Dy;
    if constexpr (requires { cell_.activation_floats_per_token(K_); })
      n += cell_.activation_floats_per_token(K_);
    else
      n += K * (Dp + Dy);
    return n;
  }

  // The parameters this layer has beyond the K = 1 layer with the mean (the plain cell
  // with its one decay row): K − 1 more decay rows and the aggregator's (after declare).
  index_t added_params() const {
    return index_t(K_ - 1) * cell_.decay_width() + aggregator_params_;
  }

  // Whether the last forward ran the cell's fast path (FusedCell) instead of pre + recur.
  bool used_fast_path() const { return fused_; }

  // Whether the last forward applied the aggregation inside the cell's scan.
  bool used_mixed_scan() const { return mixed_; }

  // The per-perspective outputs of the last forward, (T,B,K,Dy), for analysis; empty
  // after a mixed scan (Config::mixed_scan = false keeps them).
  CView<S> perspective_outputs() const { return Yk_.view(); }

 private:
  // Identifies an input by its contents (not its address), so that a backward for
  // anything but the last forward is caught even when the caller reuses one buffer for
  // another batch. Hashes at most 4096 evenly spaced elements: two batches differ almost
  // everywhere, and a full pass would cost a few percent of a small layer's step.
  struct Fingerprint {
    std::uint64_t hash = 0;
    bool operator==(const Fingerprint&) const = default;
    static Fingerprint of(CView<S> x) {
      const index_t n = x.numel(), stride = std::max<index_t>(1, n / 4096);
      std::uint64_t h = 0x9E3779B97F4A7C15ull ^ std::uint64_t(n);
      for (index_t i = 0; i < n; i += stride) {
        std::uint64_t bits = 0;
        std::memcpy(&bits, &x.data[i], sizeof(S));
        h = (h ^ bits) * 0x100000001B3ull;
      }
      return {h};
    }
  };

  Config cfg_;
  C cell_;
  Agg agg_;
  int K_;
  Param<S> decay_;
  ParamStore<S>* store_ = nullptr;  // set by bind
  std::string prefix_;
  std::uint64_t noise_stream_ = 0;
  index_t aggregator_params_ = 0;  // set by declare
  Fingerprint forward_x_;
  Tensor<S> P_, Yk_, A_;     // forward activations
  bool fused_ = false;       // the last forward ran the cell's fast path
  bool mixed_ = false;       // the last forward ran the mixed scan (no Yk)
  Tensor<S> dP_, dYk_, dA_;  // backward scratch
  CView<S> alpha_;           // (T,B,K) the aggregator's saved weights, mixed scan only
  Tensor<S> dalpha_;         // (T,B,K) ∂L/∂α, mixed scan only
};

}  // namespace mtp
