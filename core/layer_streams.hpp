// LayerStreams<Cell, Aggregator>: K perspectives in every layer, each a K = 1 layer of
// the cell with its own row of the per-perspective parameters (docs/contract.md §7.2):
//
//   y^k = Layer_1(x; shared weights, rows k)                    (T,B,O) per perspective
//   y   = Agg_k(y^k, x)                                         (T,B,O)
//
// Perspectives<Cell, Agg> gives each perspective its own decay and shares everything
// else, so the K perspectives share pre (one GEMM over the input) and post. When they
// differ in parameters that pre reads — RWKV-4's token-shift mixes μ_k, μ_v, μ_r, which
// the paper's released code gives each perspective — pre and post are no longer shared:
// each perspective is a stream through a whole K = 1 layer (K layers' work and
// activations), and the aggregator combines their outputs. For a weighting aggregator (mean, fixed,
// learned) this equals combining before RWKV's output projection, since W_o is linear.
//
// Which parameters have rows is PerPerspective: shift (the token-shift mixes, one shared
// decay: the authors' choice) or both (mixes and decay); decay alone is Perspectives,
// which computes the same function at a fraction of the cost. A cell's FFN (RWKV's
// channel mix) sees the combined y and keeps one set of mixes.
//
// Names are the K = 1 layer's, a per-perspective tensor of shape s becoming (K, s): the
// time-mix rows (K,C), the decay (K,D) with `both` or RWKV-4's one (1,D) with `shift`,
// then the aggregator's tensors, as in Perspectives. The K sub-layers' parameters are
// views into the model's store (placed stores, ParamStore::finalize_placed), so the
// gradients of shared weights add up over the streams.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mtp/aggregators/mean.hpp"
#include "mtp/core/per_perspective.hpp"
#include "mtp/core/perspectives.hpp"

namespace mtp {

template <Cell C, Aggregator Agg>
class LayerStreams {
 public:
  using Scalar = typename C::Scalar;
  using S = Scalar;
  using CellType = C;
  using AggregatorType = Agg;
  using Stream = Perspectives<C, MeanAggregator<S>>;  // one stream: a K = 1 layer

  struct Config {
    typename C::Config cell{};
    int perspectives = 1;       // K
    double decay_spread = 1.0;  // decay row k = base + s·(k − (K−1)/2), with `both`
    typename Agg::Options aggregator{};
    LayerPosition position{};
    // The selector noise's random-number stream; Model sets kSelectorNoise + layer index.
    std::optional<std::uint64_t> noise_stream{};
    PerPerspective per_perspective = PerPerspective::shift;
  };

  explicit LayerStreams(const Config& cfg)
      : cfg_(cfg), K_(cfg.perspectives), agg_(cfg.perspectives, one_width(cfg), cfg.aggregator) {
    MTP_CHECK(K_ >= 1, "perspectives must be >= 1, got {}", K_);
    MTP_CHECK(cfg.per_perspective != PerPerspective::decay,
              "layer streams with a decay per perspective alone compute Perspectives' function "
              "at K times its cost: use Perspectives<Cell, Aggregator>");
    const Stream one(stream_config(cfg));
    I_ = one.input_width();
    O_ = one.output_width();
    Sw_ = one.state_width();
    one_floats_ = one.activation_floats_per_token();
  }
  LayerStreams(const LayerStreams&) = delete;
  LayerStreams& operator=(const LayerStreams&) = delete;

  index_t input_width() const { return I_; }
  index_t output_width() const { return O_; }
  index_t state_width() const { return Sw_; }
  int perspectives() const { return K_; }
  const Config& config() const { return cfg_; }
  Agg& aggregator() { return agg_; }

  // The K = 1 layer's parameters, those with a row per stream stacked to (K, ·); then the
  // aggregator's.
  void declare(ParamStore<S>& store, const std::string& prefix) {
    ParamStore<S> one;  // a stream's declarations, never allocated
    Stream(stream_config(cfg_)).declare(one, prefix);
    entries_.clear();
    bool any_shift = false;
    for (const ParamInfo& p : one.infos()) {
      const bool per_stream = is_per_perspective(cfg_.per_perspective, p);
      any_shift = any_shift || is_shift_param(p.name);
      // Rows per stream are the perspectives'; a decay all streams share is the base's (as
      // RWKV-4's own time_decay).
      const ParamRole role = per_stream ? ParamRole::perspective : ParamRole::base;
      entries_.push_back({store.add(p.name, per_stream ? stacked_shape(p.shape, K_) : p.shape, role,
                                    p.weight_decay),
                          per_stream});
    }
    MTP_CHECK(any_shift,
              "per-perspective token shift: the {} cell has no token-shift mixes (RWKV has); "
              "a decay per perspective alone is Perspectives",
              C::kName);
    const index_t before_aggregator = store.size();
    agg_.declare(store, prefix);
    added_ = store.size() - before_aggregator;
    for (const Entry& e : entries_)
      if (e.per_stream) added_ += store.info(e.param.ref).shape.numel() / K_ * (K_ - 1);
    prefix_ = prefix;
    noise_stream_ = cfg_.noise_stream ? *cfg_.noise_stream : prefix_noise_stream(prefix);
  }

  // Binds the rows and the aggregator, and builds the K streams over them: stream k's
  // parameters are row k of a stacked tensor or the shared tensor itself.
  void bind(ParamStore<S>& store) {
    MTP_CHECK(!entries_.empty(), "layer streams bound before declare(store, prefix)");
    for (Entry& e : entries_) store.bind(e.param);
    agg_.bind(store);
    store_ = &store;
    streams_.clear();
    for (int k = 0; k < K_; ++k) {
      StreamSlot& v = streams_.emplace_back();
      v.store = std::make_unique<ParamStore<S>>();
      v.layer = std::make_unique<Stream>(stream_config(cfg_));
      v.layer->declare(*v.store, prefix_);
      std::vector<std::pair<S*, S*>> places;
      for (size_t i = 0; i < entries_.size(); ++i) {
        const Entry& e = entries_[i];
        MTP_CHECK(v.store->infos().at(i).name == store.info(e.param.ref).name,
                  "layer stream parameter {} out of order", v.store->infos().at(i).name);
        const index_t row = e.per_stream ? index_t(k) * v.store->infos()[i].shape.numel() : 0;
        places.emplace_back(e.param.value.data + row, e.param.grad.data + row);
      }
      v.store->finalize_placed(std::move(places));
      v.layer->bind(*v.store);
    }
  }

  // Stream 0 is initialised as a K = 1 layer; the other streams' rows copy its rows (the
  // mixes start equal), the decay rows spread; then the aggregator.
  void init(RngSequence& rng) {
    MTP_CHECK(store_ != nullptr, "layer streams '{}' initialised before bind(store)", prefix_);
    streams_[0].layer->init(rng);
    for (Entry& e : entries_) {
      if (e.per_stream)
        spread_rows(e.param.value, K_, !is_shift_param(store_->info(e.param.ref).name),
                    cfg_.decay_spread);
      store_->mark_set(e.param);
    }
    agg_.init(rng);
  }

  std::uint64_t noise_stream() const { return noise_stream_; }

  // x (T,B,I) → y (T,B,O); `state` (B,K,Sw), when given, is the initial state of every
  // stream (row k is stream k's) and receives the final one. Saves the streams' outputs Yk
  // (T,B,K,O) and whatever the streams and the aggregator saved.
  void forward(CView<S> x, View<S> y, const StepContext& ctx, View<S> state = {}) {
    MTP_CHECK(store_ != nullptr && store_->is_set(entries_[0].param.ref),
              "layer streams '{}' used before their parameters were bound and set", prefix_);
    MTP_CHECK(x.shape.rank() == 3 && x.dim(2) == input_width(),
              "layer streams input has shape {}, expected (T,B,{})", x.shape.str(), input_width());
    const index_t T = x.dim(0), B = x.dim(1), O = output_width(), Sw = state_width();
    check_shape(y.shape, {T, B, O}, "layer streams output");
    if (!state.empty()) check_shape(state.shape, {B, K_, Sw}, "layer streams state");
    Yk_.resize({T, B, K_, O});
    yv_.resize({T, B, O});
    sv_.resize({B, 1, Sw});
    for (int k = 0; k < K_; ++k) {
      if (!state.empty())
        for (index_t b = 0; b < B; ++b)
          std::copy_n(state.data + (b * K_ + k) * Sw, Sw, sv_.data() + b * Sw);
      streams_[k].layer->forward(x, yv_.view(), ctx, state.empty() ? View<S>{} : sv_.view());
      scatter_stream(yv_.view(), k, Yk_.view());
      if (!state.empty())
        for (index_t b = 0; b < B; ++b)
          std::copy_n(sv_.data() + b * Sw, Sw, state.data + (b * K_ + k) * Sw);
    }
    agg_.forward({.Yk = Yk_.view(), .x = x}, y, ctx, noise_stream_);
  }

  // Saved from forward: Yk and the streams' own. dy (T,B,O) → dx (T,B,I) overwritten;
  // parameter gradients accumulate (the shared weights' over the K streams).
  void backward(CView<S> x, CView<S> dy, View<S> dx) {
    MTP_CHECK(Yk_.numel() > 0, "layer streams backward before any forward");
    check_shape(dy.shape, {x.dim(0), x.dim(1), output_width()}, "layer streams dy");
    check_shape(dx.shape, x.shape, "layer streams dx");
    std::fill(dx.begin(), dx.end(), S(0));
    dYk_.resize(Yk_.shape());
    agg_.backward({.Yk = Yk_.view(), .x = x}, {.dA = dy, .dYk = dYk_.view(), .dx = dx});
    dyv_.resize(yv_.shape());
    dxv_.resize(x.shape);
    for (int k = 0; k < K_; ++k) {
      gather_stream(dYk_.view(), k, dyv_.view());
      streams_[k].layer->backward(x, dyv_.view(), dxv_.view());
      for (index_t i = 0; i < dx.numel(); ++i) dx[i] += dxv_[i];
    }
  }

  // Floats per (t, b) kept for backward, with backward's scratch, for memory estimates:
  // K streams' own, Yk and dYk (2K·O), one stream's output and its gradient, dx's scratch,
  // the aggregator's weights (at most 4K).
  index_t activation_floats_per_token() const {
    const index_t O = output_width();
    return K_ * one_floats_ + 2 * K_ * O + 2 * O + I_ + 4 * K_;
  }

  // The parameters this layer has beyond the K = 1 layer: K − 1 more rows of every
  // per-perspective tensor, and the aggregator's (after declare).
  index_t added_params() const { return added_; }

  // Stream k, the K = 1 layer over row k (for analysis and tests).
  Stream& stream(int k) { return *streams_.at(size_t(k)).layer; }

 private:
  struct Entry {
    Param<S> param;
    bool per_stream;
  };
  struct StreamSlot {
    std::unique_ptr<ParamStore<S>> store;  // placed: row k and the shared tensors
    std::unique_ptr<Stream> layer;
  };

  static typename Stream::Config stream_config(const Config& cfg) {
    typename Stream::Config c;
    c.cell = cfg.cell;
    c.perspectives = 1;
    c.position = cfg.position;
    return c;
  }
  static index_t one_width(const Config& cfg) { return Stream(stream_config(cfg)).input_width(); }

  // Yk[:, :, k, :] ← yk (T,B,O), and back.
  static void scatter_stream(CView<S> yk, int k, View<S> Yk) {
    const index_t rows = yk.dim(0) * yk.dim(1), O = yk.dim(2), K = Yk.dim(2);
    for (index_t r = 0; r < rows; ++r) std::copy_n(yk.data + r * O, O, Yk.data + (r * K + k) * O);
  }
  static void gather_stream(CView<S> Yk, int k, View<S> yk) {
    const index_t rows = yk.dim(0) * yk.dim(1), O = yk.dim(2), K = Yk.dim(2);
    for (index_t r = 0; r < rows; ++r) std::copy_n(Yk.data + (r * K + k) * O, O, yk.data + r * O);
  }

  Config cfg_;
  int K_;
  Agg agg_;
  index_t I_ = 0, O_ = 0, Sw_ = 0, one_floats_ = 0;  // one stream's widths, floats per token
  std::vector<Entry> entries_;                       // in a stream's declaration order
  std::vector<StreamSlot> streams_;
  ParamStore<S>* store_ = nullptr;
  std::string prefix_;
  std::uint64_t noise_stream_ = 0;
  index_t added_ = 0;
  Tensor<S> Yk_, yv_, sv_;  // (T,B,K,O) streams' outputs; (T,B,O), (B,1,Sw) one stream's
  Tensor<S> dYk_, dyv_, dxv_;
};

}  // namespace mtp
