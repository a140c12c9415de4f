// AnyLayer<S>: one perspective layer of any registered cell and aggregator, chosen by
// name at run time, whose parameters live in the caller's memory. It is what the PyTorch
// bridge (python/) drives: the module owns the parameters as torch tensors, and each
// call points the layer at them (ParamStore::use_external), so nothing is copied. The
// virtual calls are per layer call, never inside the per-step loops.
//
// Shapes: x (T,B,I), y (T,B,O), state (B,K,Sw); the parameters one flat buffer in
// params()' layout (names and shapes as docs/contract.md names them).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mtp/core/param_store.hpp"
#include "mtp/core/perspectives.hpp"
#include "mtp/core/rng.hpp"
#include "mtp/experiments/dispatch.hpp"

namespace mtp::exp {

// A layer by names and sizes: the bridge's constructor arguments.
struct LayerSpec {
  std::string cell = "gru";
  std::string aggregator = "mean";
  index_t input = 0;   // I
  index_t hidden = 0;  // H (gru, lstm), N (ssm); a cell of one width (rwkv): = I
  int perspectives = 1;
  double decay_spread = 1.0;
  // The selector flags (docs/cli.md), for the aggregators whose Options take them.
  double noise = 0;
  std::string noise_mode = "fixed";
  int top_k = 0;
  std::vector<double> fixed_weights{};
};

template <class Scalar>
class AnyLayer {
 public:
  using S = Scalar;
  virtual ~AnyLayer() = default;

  // The parameters in the flat layout: name, shape, offset, role.
  virtual const std::vector<ParamInfo>& params() const = 0;
  virtual index_t param_count() const = 0;
  virtual index_t input_width() const = 0;
  virtual index_t output_width() const = 0;
  virtual index_t state_width() const = 0;
  virtual int perspectives() const = 0;

  // Writes the layer's initial parameters (the cell's init, the decay rows, the
  // selector) into `values` (param_count()), from `seed`.
  virtual void init(S* values, std::uint64_t seed) = 0;
  // x (T,B,I) → y (T,B,O) with the parameters at `values`; `state` (B,K,Sw) is the
  // initial state and receives the final one. Saves what backward needs.
  virtual void forward(const S* values, CView<S> x, View<S> y, const StepContext& ctx,
                       View<S> state) = 0;
  // The backward of the last forward (same values, same x): dy (T,B,O) → dx (T,B,I)
  // overwritten, parameter gradients accumulated into `grads` (param_count()); dsT
  // (B,K,Sw) or empty, ds0 (B,K,Sw) overwritten or empty (not wanted).
  virtual void backward(const S* values, S* grads, CView<S> x, CView<S> dy, View<S> dx,
                        CView<S> dsT, View<S> ds0) = 0;
  // Whether the last forward ran the cell's fused fast path (oneDNN's RNN).
  virtual bool used_fast_path() const = 0;
};

// A cell's config for input width I and hidden size H: its layer_config hook where it
// has one; a cell of one width (model_config) takes H = I only.
template <class Cell>
typename Cell::Config layer_cell_config(index_t input, index_t hidden) {
  if constexpr (requires { Cell::layer_config(input, hidden); }) {
    return Cell::layer_config(input, hidden);
  } else {
    if (hidden != input)
      usage_fail("cell '{}' has one width: hidden_size must equal input_size ({}), got {}",
                 Cell::kName, input, hidden);
    return Cell::model_config(input);
  }
}

template <class Mixer>
class LayerHolder final : public AnyLayer<typename Mixer::Scalar> {
 public:
  using S = typename Mixer::Scalar;

  explicit LayerHolder(const LayerSpec& spec) : layer_(config(spec)) {
    layer_.declare(store_, "");
    scratch_.assign(std::max<index_t>(1, store_.size()), S(0));
  }

  const std::vector<ParamInfo>& params() const override { return store_.infos(); }
  index_t param_count() const override { return store_.size(); }
  index_t input_width() const override { return layer_.input_width(); }
  index_t output_width() const override { return layer_.output_width(); }
  index_t state_width() const override { return layer_.state_width(); }
  int perspectives() const override { return layer_.perspectives(); }

  void init(S* values, std::uint64_t seed) override {
    point_at(values, nullptr);
    RngSequence rng(seed, rng_stream::kInit);
    layer_.init(rng);
  }
  void forward(const S* values, CView<S> x, View<S> y, const StepContext& ctx,
               View<S> state) override {
    point_at(const_cast<S*>(values), nullptr);  // forward only reads them
    layer_.forward(x, y, ctx, state);
  }
  void backward(const S* values, S* grads, CView<S> x, CView<S> dy, View<S> dx, CView<S> dsT,
                View<S> ds0) override {
    point_at(const_cast<S*>(values), grads);
    layer_.backward(x, dy, dx, {.dsT = dsT, .ds0 = ds0});
  }
  bool used_fast_path() const override { return layer_.used_fast_path(); }

 private:
  static typename Mixer::Config config(const LayerSpec& spec) {
    typename Mixer::Config c;
    c.cell = layer_cell_config<typename Mixer::CellType>(spec.input, spec.hidden);
    c.perspectives = spec.perspectives;
    c.decay_spread = spec.decay_spread;
    c.aggregator = aggregator_options<typename Mixer::AggregatorType>(
        {spec.noise, spec.fixed_weights, parse_noise_mode(spec.noise_mode), spec.top_k});
    return c;
  }
  // Binds the layer's views to the caller's memory; without gradients (forward, init)
  // they point at a scratch buffer, which no part writes outside backward.
  void point_at(S* values, S* grads) {
    store_.use_external(values, grads != nullptr ? grads : scratch_.data());
    layer_.bind(store_);
  }

  ParamStore<S> store_;
  Mixer layer_;
  std::vector<S> scratch_;  // (param_count()) the gradients' place outside backward
};

template <class Mixer>
std::unique_ptr<AnyLayer<typename Mixer::Scalar>> hold_layer(const LayerSpec& spec) {
  return std::make_unique<LayerHolder<Mixer>>(spec);
}

// The layer of a spec, from registry(): the names, sizes and selector settings checked
// with the command line's messages (usage errors). S is float or double.
template <class S>
std::unique_ptr<AnyLayer<S>> make_layer(const LayerSpec& spec);

}  // namespace mtp::exp
