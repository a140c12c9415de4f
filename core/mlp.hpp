// The 4× MLP of a block (docs/contract.md §7): y = W_proj GELU(W_fc x + b_fc) + b_proj.
// Params: fc.weight (4W,W), fc.bias (4W), proj.weight (W,4W), proj.bias (W).
#pragma once

#include <cmath>
#include <string>
#include <string_view>

#include "mtp/core/cell.hpp"
#include "mtp/core/ops/activations.hpp"
#include "mtp/core/ops/linear.hpp"

namespace mtp {

template <class S>
class Mlp {
 public:
  using Scalar = S;
  static constexpr std::string_view kDescription = "MLP";

  Mlp(index_t width, LayerPosition pos) : W_(width), pos_(pos) {}

  void declare(ParamStore<S>& store, const std::string& prefix) {
    fc_w_ = store.add(prefix + "fc.weight", {4 * W_, W_}, ParamRole::base, true);
    fc_b_ = store.add(prefix + "fc.bias", {4 * W_});
    proj_w_ = store.add(prefix + "proj.weight", {W_, 4 * W_}, ParamRole::base, true);
    proj_b_ = store.add(prefix + "proj.bias", {W_});
  }
  void bind(ParamStore<S>& store) { store.bind(fc_w_, fc_b_, proj_w_, proj_b_); }

  // nn.Linear's U(±1/√fan_in); the residual projection further scaled by 1/√(2L)
  // (GPT-2) and its bias zero.
  void init(RngSequence& rng) {
    const double a = 1.0 / std::sqrt(double(W_));
    for (S& v : fc_w_.value) v = S(rng.uniform(-a, a));
    for (S& v : fc_b_.value) v = S(rng.uniform(-a, a));
    const double p = 1.0 / std::sqrt(4.0 * double(W_)) / std::sqrt(2.0 * pos_.count);
    for (S& v : proj_w_.value) v = S(rng.uniform(-p, p));
    for (S& v : proj_b_.value) v = S(0);
  }

  // The MLP is pointwise in time: it carries no state between chunks.
  index_t state_width() const { return 0; }
  // Floats per (t, b) kept for backward, with backward's scratch: hidden, GELU(hidden)
  // and their gradients (4W each). For memory estimates.
  index_t activation_floats_per_token() const { return 16 * W_; }

  // x (T,B,W) → y (T,B,W). Saves the hidden pre-activation and its GELU (T,B,4W).
  void forward(CView<S> x, View<S> y, View<S> /*state*/ = {}) {
    const Shape wide{x.dim(0), x.dim(1), 4 * W_};
    hidden_.resize(wide);
    act_.resize(wide);
    linear_forward<S>(x, fc_w_.value, fc_b_.value.data, hidden_.view());
    gelu_forward<S>(hidden_, act_.view());
    linear_forward<S>(act_, proj_w_.value, proj_b_.value.data, y);
  }

  // Saved from forward: x, hidden, GELU(hidden). dy (T,B,W) → dx overwritten; parameter
  // gradients accumulate.
  void backward(CView<S> x, CView<S> dy, View<S> dx) {
    dact_.resize(act_.shape());
    dhidden_.resize(act_.shape());
    linear_backward<S>(dy, act_, proj_w_.value, dact_.view(), proj_w_.grad, proj_b_.grad.data);
    gelu_backward<S>(dact_, hidden_, dhidden_.view());
    linear_backward<S>(dhidden_, x, fc_w_.value, dx, fc_w_.grad, fc_b_.grad.data);
  }

 private:
  index_t W_;
  LayerPosition pos_;
  Param<S> fc_w_, fc_b_, proj_w_, proj_b_;
  Tensor<S> hidden_, act_;    // (T,B,4W)
  Tensor<S> dact_, dhidden_;  // scratch
};

}  // namespace mtp
