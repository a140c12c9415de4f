// A user's own recurrent cell, written against mtp's installed headers only: a minimal
// gated RNN whose keep gate carries the perspective decay.
//
//   [p_g | p_c] = W_ih x + b                      pre: one GEMM over all T·B rows (T,B,2H)
//   g  = σ(p_g + decay[k])                        keep gate; decay[k] sets perspective k's
//   c  = tanh(p_c + W_hh h)                       time scale
//   h' = g ⊙ h + (1 − g) ⊙ c                      recur: one GEMM per step over B·K rows
//   post: identity
//
// Params: weight_ih (2H,I), bias (2H), weight_hh (H,H). State (B,K,H) = h.
#pragma once

#include <mtp/core/cell.hpp>
#include <mtp/core/gemm.hpp>
#include <mtp/core/ops/activations.hpp>
#include <mtp/core/ops/linear.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <vector>

namespace user {

using mtp::CView;
using mtp::index_t;
using mtp::View;

template <class S>
class MinimalGatedCell {
 public:
  using Scalar = S;
  struct Config {
    index_t input = 0, hidden = 0;
  };
  static constexpr std::string_view kName = "minimal-gated";
  static constexpr std::string_view kDescription = "minimal gated RNN (a user's own cell)";
  static Config model_config(index_t width) { return {width, width}; }
  // I and H from a parameter file's shapes (for `layer`): weight_ih is (2H, I).
  template <class ShapeOf>
  static Config infer_config(ShapeOf&& shape_of) {
    const std::vector<index_t> w = shape_of("weight_ih");
    MTP_CHECK(w.size() == 2 && w[0] % 2 == 0 && w[0] > 0 && w[1] > 0,
              "weight_ih has shape {}, expected (2H,I)", mtp::shape_str(w));
    return {w[1], w[0] / 2};
  }

  explicit MinimalGatedCell(const Config& c) : I_(c.input), H_(c.hidden) {}

  index_t input_width() const { return I_; }
  index_t pre_width() const { return 2 * H_; }
  index_t recur_width() const { return H_; }
  index_t state_width() const { return H_; }
  index_t decay_width() const { return H_; }
  index_t output_width() const { return H_; }

  void declare(mtp::ParamStore<S>& store, const std::string& prefix) {
    w_ih_ = store.add(prefix + "weight_ih", {2 * H_, I_}, mtp::ParamRole::base,
                      /*weight_decay=*/true);
    bias_ = store.add(prefix + "bias", {2 * H_});
    w_hh_ = store.add(prefix + "weight_hh", {H_, H_}, mtp::ParamRole::base,
                      /*weight_decay=*/true);
  }
  void bind(mtp::ParamStore<S>& store) { store.bind(w_ih_, bias_, w_hh_); }
  // U(±1/√H); base decay 1 (σ(1) ≈ 0.73: keep most of the state by default).
  void init(mtp::RngSequence& rng, View<S> base_decay, mtp::LayerPosition) {
    const double a = 1.0 / std::sqrt(double(H_));
    for (mtp::Param<S>* p : {&w_ih_, &bias_, &w_hh_})
      for (S& v : p->value) v = S(rng.uniform(-a, a));
    std::fill(base_decay.begin(), base_decay.end(), S(1));
  }

  // x (T,B,I) → P (T,B,2H). The state does not enter here.
  void pre_forward(const mtp::PreIn<S>& in, View<S> P) {
    mtp::linear_forward<S>(in.x, w_ih_.value, bias_.value.data, P);
  }
  // Saved from forward: x. dP (T,B,2H) → dx +=, dW_ih, db +=.
  void pre_backward(const mtp::PreIn<S>& in, const mtp::PreGrad<S>& g) {
    const index_t R = in.x.numel() / I_;
    mtp::matmul(g.dP.data, false, w_ih_.value.data, false, g.dx.data, R, I_, 2 * H_, true);
    mtp::matmul(g.dP.data, true, in.x.data, false, w_ih_.grad.data, 2 * H_, I_, R, true);
    mtp::sum_rows_accumulate(g.dP.data, R, 2 * H_, bias_.grad.data);
  }

  // P (T,B,2H), decay (K,H), s0 (B,K,H) or empty → Yk = h (T,B,K,H), sT or empty.
  // Saves h0 and the gates (g, c) for backward.
  void recur_forward(const mtp::RecurIn<S>& in, const mtp::RecurOut<S>& out) {
    const CView<S> P = in.P, decay = in.decay, s0 = in.s0;
    const View<S> Yk = out.Yk, sT = out.sT;
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    h0_.resize({BK, H});
    if (s0.empty())
      h0_.zero();
    else
      std::copy(s0.begin(), s0.end(), h0_.data());
    gc_.resize({T, BK, 2 * H});
    uh_.resize({BK, H});
    for (index_t t = 0; t < T; ++t) {
      const S* hp = t == 0 ? h0_.data() : Yk.data + (t - 1) * BK * H;
      mtp::matmul(hp, false, w_hh_.value.data, true, uh_.data(), BK, H, H);
      for (index_t row = 0; row < BK; ++row) {
        const index_t b = row / K, k = row % K;
        const S* p = P.data + (t * B + b) * 2 * H;
        S* gc = gc_.data() + (t * BK + row) * 2 * H;
        S* h = Yk.data + (t * BK + row) * H;
        for (index_t j = 0; j < H; ++j) {
          const S g = mtp::sigmoid(p[j] + decay[k * H + j]);
          const S c = mtp::tanh_fast(p[H + j] + uh_[row * H + j]);
          h[j] = g * hp[row * H + j] + (S(1) - g) * c;
          gc[j] = g;
          gc[H + j] = c;
        }
      }
    }
    if (!sT.empty()) std::copy_n(Yk.data + (T - 1) * BK * H, BK * H, sT.data);
  }

  // Saved from forward: h0, (g, c), Yk. dYk, dsT → dP +=, ddecay +=, dW_hh +=, ds0 +=.
  void recur_backward(const mtp::RecurIn<S>&, CView<S> Yk, const mtp::RecurGrad<S>& grad) {
    const CView<S> dYk = grad.dYk;
    const View<S> dP = grad.dP, ddecay = grad.ddecay;
    const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_, BK = B * K;
    carry_.resize({BK, H});  // ∂L/∂h_t from later steps: at t = T−1, the final state's
    if (grad.dsT.empty())
      carry_.zero();
    else
      std::copy(grad.dsT.begin(), grad.dsT.end(), carry_.data());
    dc_.resize({BK, H});
    for (index_t t = T - 1; t >= 0; --t) {
      const S* hp = t == 0 ? h0_.data() : Yk.data + (t - 1) * BK * H;
      for (index_t row = 0; row < BK; ++row) {
        const index_t b = row / K, k = row % K;
        const S* gc = gc_.data() + (t * BK + row) * 2 * H;
        S* dp = dP.data + (t * B + b) * 2 * H;
        for (index_t j = 0; j < H; ++j) {
          const S g = gc[j], c = gc[H + j];
          const S dh = dYk[(t * BK + row) * H + j] + carry_[row * H + j];
          const S dg = dh * (hp[row * H + j] - c) * g * (S(1) - g);
          const S dc = dh * (S(1) - g) * (S(1) - c * c);
          dp[j] += dg;
          dp[H + j] += dc;
          ddecay[k * H + j] += dg;
          dc_[row * H + j] = dc;
          carry_[row * H + j] = dh * g;
        }
      }
      // dh_{t−1} += dc W_hh (h_{−1} is s0: only when its gradient is wanted);
      // dW_hh += dc^T h_{t−1}
      if (t > 0 || !grad.ds0.empty())
        mtp::matmul(dc_.data(), false, w_hh_.value.data, false, carry_.data(), BK, H, H, true);
      mtp::matmul(dc_.data(), true, hp, false, w_hh_.grad.data, H, H, BK, true);
    }
    if (!grad.ds0.empty())
      for (index_t i = 0; i < grad.ds0.numel(); ++i) grad.ds0[i] += carry_[i];
  }

  void post_forward(const mtp::PostIn<S>& in, View<S> y) {
    std::copy(in.A.begin(), in.A.end(), y.data);
  }
  void post_backward(const mtp::PostIn<S>&, const mtp::PostGrad<S>& g) {
    std::copy(g.dy.begin(), g.dy.end(), g.dA.data);
  }

 private:
  index_t I_, H_;
  mtp::Param<S> w_ih_, bias_, w_hh_;
  mtp::Tensor<S> h0_, gc_, uh_, carry_, dc_;
};

}  // namespace user
