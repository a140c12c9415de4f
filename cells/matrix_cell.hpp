// The matrix machinery shared by the PyTorch-layout recurrent cells (GRU: G = 3 gate
// blocks, LSTM: G = 4), each block H wide:
//
//   pre:    gi = x W_ih^T + b_ih                 one GEMM over all T·B rows, (T,B,G·H)
//   recur:  gh = h W_hh^T + b_hh                 one GEMM per step over all B·K rows
//
// and their backward: dx and dW_ih from dgi, the per-step dh ← dgh W_hh, and dW_hh as
// one GEMM over all steps at the end. Params: weight_ih (G·H,I), weight_hh (G·H,H),
// bias_ih (G·H), bias_hh (G·H), PyTorch's names and layout.
//
// The fast path: at K = 1 in float, a perspective layer is exactly the vendor's cell
// once the decay is folded into its gate's bias, so fused_forward/fused_backward run
// oneDNN's fused LSTM / LBR-GRU primitive (core/fused_rnn.hpp) in place of pre + recur.
// The plain path above stays the reference it is tested against (Config::fused = false).
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/fused_rnn.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/ops/linear.hpp"

namespace mtp {

template <class S, int G>
class GatedMatrixCell {
 public:
  using Scalar = S;
  struct Config {
    MTP_DESIGNATED_ONLY;
    index_t input = 0;   // I
    index_t hidden = 0;  // H
    bool fused = true;   // use oneDNN's fused primitive where it applies (K = 1, float)
  };
  // The mixer of a model of width W (docs/contract.md §7): H = W.
  static Config model_config(index_t width) { return {.input = width, .hidden = width}; }
  // A layer of input width I and hidden size H (the PyTorch bridge's arguments).
  static Config layer_config(index_t input, index_t hidden) {
    return {.input = input, .hidden = hidden};
  }
  // The layer checks' widths (experiments/layer_checks.hpp): I ≠ H catches a transpose.
  static Config check_config() { return {.input = 4, .hidden = 6}; }
  // I and H from the shapes of a parameter file: weight_ih is (G·H, I).
  template <class ShapeOf>
  static Config infer_config(ShapeOf&& shape_of) {
    const std::vector<index_t> w = shape_of("weight_ih");
    MTP_CHECK(w.size() == 2 && w[0] % G == 0 && w[0] > 0 && w[1] > 0,
              "weight_ih has shape {}, expected ({}H,I)", shape_str(w), G);
    return {.input = w[1], .hidden = w[0] / G};
  }

  index_t input_width() const { return I_; }
  index_t pre_width() const { return G * H_; }
  index_t recur_width() const { return H_; }
  index_t decay_width() const { return H_; }
  index_t output_width() const { return H_; }

  void declare(ParamStore<S>& store, const std::string& prefix) {
    weight_ih_ = store.add(prefix + "weight_ih", {G * H_, I_}, ParamRole::base, true);
    weight_hh_ = store.add(prefix + "weight_hh", {G * H_, H_}, ParamRole::base, true);
    bias_ih_ = store.add(prefix + "bias_ih", {G * H_});
    bias_hh_ = store.add(prefix + "bias_hh", {G * H_});
  }
  void bind(ParamStore<S>& store) { store.bind(weight_ih_, weight_hh_, bias_ih_, bias_hh_); }

  // PyTorch's init, U(−1/√H, 1/√H) everywhere; base decay 0.
  void init(RngSequence& rng, View<S> base_decay, LayerPosition) {
    const double a = 1.0 / std::sqrt(double(H_));
    for (Param<S>* p : {&weight_ih_, &weight_hh_, &bias_ih_, &bias_hh_})
      for (S& w : p->value) w = S(rng.uniform(-a, a));
    std::fill(base_decay.begin(), base_decay.end(), S(0));
  }

  // x (T,B,I) → P = gi (T,B,G·H). The state does not enter the input projection.
  void pre_forward(const PreIn<S>& in, View<S> P) {
    linear_forward<S>(in.x, weight_ih_.value, bias_ih_.value.data, P);
  }
  // post is the identity (O = H): the aggregated hidden state is the layer output.
  void post_forward(const PostIn<S>& in, View<S> y) { std::copy(in.A.begin(), in.A.end(), y.data); }
  void post_backward(const PostIn<S>&, const PostGrad<S>& g) {
    std::copy(g.dy.begin(), g.dy.end(), g.dA.data);
  }

  // The fast path in place of pre + recur: x (T,B,I), decay (1,H), s0 (B,1,Sw) or empty
  // → Yk (T,B,1,H), sT (B,1,Sw) or empty (may alias s0). Returns false, doing nothing,
  // where it does not apply: K > 1, double, Config::fused off, or outside training.
  // Training has a few fixed shapes; evaluation and scoring bring a new T with almost
  // every sequence, and each would build a primitive pair, so they take the plain path
  // (as do single steps, for streaming).
  bool fused_forward(const RecurIn<S>& in, const RecurOut<S>& out, bool training) {
    if constexpr (!std::is_same_v<S, float>) {
      return false;
    } else {
      const CView<S> x = in.x, decay = in.decay, s0 = in.s0;
      const View<S> Yk = out.Yk, sT = out.sT;
      const index_t T = Yk.dim(0), B = Yk.dim(1), K = Yk.dim(2), H = H_;
      if (!fused_enabled_ || !training || K != 1 || T < 2) return false;
      if (!fused_) fused_ = std::make_unique<FusedRnn>(kFusedKind);
      // The fused cell's one bias per gate: b_ih + b_hh, with the decay on its gate.
      fused_bias_.resize({4 * H});
      fused_bias_.zero();
      for (int g = 0; g < G; ++g)
        for (index_t j = 0; j < H; ++j) {
          fused_bias_[kIhBiasGate[g] * H + j] += bias_ih_.value[g * H + j];
          fused_bias_[kHhBiasGate[g] * H + j] += bias_hh_.value[g * H + j];
        }
      for (index_t j = 0; j < H; ++j) fused_bias_[kDecayBiasGate * H + j] += decay[j];
      const bool with_c = kFusedKind == FusedRnnKind::lstm;
      if (!s0.empty()) to_fused_planes(s0, B, fused_h_, fused_c_);
      fused_hT_.resize({B, H});
      fused_cT_.resize({B, H});
      fused_->forward(x.data, weight_ih_.value.data, weight_hh_.value.data, fused_bias_.data(),
                      s0.empty() ? nullptr : fused_h_.data(),
                      s0.empty() || !with_c ? nullptr : fused_c_.data(), Yk.data, fused_hT_.data(),
                      with_c ? fused_cT_.data() : nullptr, T, B, I_, H);
      if (!sT.empty()) from_fused_planes<false>(fused_hT_, fused_cT_, B, sT);
      return true;
    }
  }
  // After fused_forward: dYk (T,B,1,H), dsT (B,1,Sw) or empty → dx (T,B,I) +=,
  // ddecay (1,H) +=, ds0 (B,1,Sw) += where wanted, and every weight and bias gradient +=.
  // Saved from forward: x, Yk and the folded bias, in place.
  void fused_backward(const RecurGrad<S>& grad) {
    if constexpr (std::is_same_v<S, float>) {
      const index_t H = H_, B = grad.dYk.dim(1);
      const bool with_c = kFusedKind == FusedRnnKind::lstm;
      const bool with_dsT = !grad.dsT.empty(), want_ds0 = !grad.ds0.empty();
      // fused_h_/c_ carry dsT in and ds0 out: the primitive reads the one before it
      // writes the other, and forward's initial state is its own copy by now.
      if (with_dsT) to_fused_planes(grad.dsT, B, fused_h_, fused_c_);
      if (want_ds0) {
        fused_h_.resize({B, H});
        fused_c_.resize({B, H});
      }
      fused_dbias_.resize({4 * H});
      fused_->backward(grad.dYk.data, with_dsT ? fused_h_.data() : nullptr,
                       with_dsT && with_c ? fused_c_.data() : nullptr, grad.dx.data,
                       weight_ih_.grad.data, weight_hh_.grad.data, fused_dbias_.data(),
                       want_ds0 ? fused_h_.data() : nullptr,
                       want_ds0 && with_c ? fused_c_.data() : nullptr);
      if (want_ds0) from_fused_planes<true>(fused_h_, fused_c_, B, grad.ds0);
      for (int g = 0; g < G; ++g)
        for (index_t j = 0; j < H; ++j) {
          bias_ih_.grad[g * H + j] += fused_dbias_[kIhBiasGate[g] * H + j];
          bias_hh_.grad[g * H + j] += fused_dbias_[kHhBiasGate[g] * H + j];
        }
      for (index_t j = 0; j < H; ++j) grad.ddecay[j] += fused_dbias_[kDecayBiasGate * H + j];
    }
  }

  // Saved from forward: x. dP = dgi (T,B,G·H) → dx +=, dW_ih +=, db_ih +=. The state
  // does not enter pre: ds0 gets nothing here.
  void pre_backward(const PreIn<S>& in, const PreGrad<S>& g) {
    const CView<S> dP = g.dP, x = in.x;
    const View<S> dx = g.dx;
    const index_t R = x.numel() / I_;
    matmul(dP.data, false, weight_ih_.value.data, false, dx.data, R, I_, G * H_, true);
    matmul(dP.data, true, x.data, false, weight_ih_.grad.data, G * H_, I_, R, true);
    sum_rows_accumulate(dP.data, R, G * H_, bias_ih_.grad.data);
  }

 protected:
  explicit GatedMatrixCell(const Config& cfg)
      : I_(cfg.input), H_(cfg.hidden), fused_enabled_(cfg.fused) {
    MTP_CHECK(I_ > 0 && H_ > 0, "cell needs input and hidden widths > 0, got I={} H={}", I_, H_);
  }

  // The T per-step products with W_hh of a forward or a backward over BK rows: W_hh is
  // packed once per pass (PackedMatmul), not once per step.
  //   forward   gh (BK,G·H) = h (BK,H) · W_hh^T + b_hh
  //   backward  dh (BK,H) += dgh (BK,G·H) · W_hh
  void pack_recurrent_forward(index_t BK) {
    recurrent_fwd_.pack(weight_hh_.value.data, true, bias_hh_.value.data, BK, G * H_, H_, false);
  }
  void pack_recurrent_backward(index_t BK) {
    recurrent_bwd_.pack(weight_hh_.value.data, false, nullptr, BK, H_, G * H_, true);
  }
  void recurrent_projection(const S* h, S* gh) const { recurrent_fwd_.run(h, gh); }
  void recurrent_projection_backward(const S* dgh, S* dh) const { recurrent_bwd_.run(dgh, dh); }
  // dW_hh (G·H,H) += Σ_t dgh_t^T h_{t−1} for dgh (T,B,K,G·H): one GEMM on the initial
  // states h0 (BK,H), one over all later steps, whose h_{t−1} rows are the outputs
  // Yk[0..T−2] (contiguous).
  void recurrent_weight_grads(const S* dgh, const S* h0, const S* Yk, index_t T, index_t BK) const {
    const index_t GH = G * H_;
    matmul(dgh, true, h0, false, weight_hh_.grad.data, GH, H_, BK, true);
    if (T > 1)
      matmul(dgh + BK * GH, true, Yk, false, weight_hh_.grad.data, GH, H_, (T - 1) * BK, true);
  }

  // db_hh = Σ dgh and ddecay[k] = Σ_{t,b} dgh[·,·,k, decay gate] (the decay enters that
  // gate's pre-activation exactly as b_hh does) are summed inside the backward's
  // elementwise loop, which runs parallel over b, into per-sequence partials, and
  // reduced once at the end: re-reading the (T,B,K,G·H) dgh for them would cost two
  // more passes over the largest tensor of the backward.
  //   partials (B, G·H + K·H): [db_hh | ddecay[0] | … | ddecay[K−1]] per sequence b.
  void begin_grad_partials(index_t B, index_t K) {
    grad_partials_.resize({B, (G + K) * H_});
    grad_partials_.zero();
  }
  S* bias_partial(index_t b) { return grad_partials_.data() + b * grad_partials_.shape()[1]; }
  S* decay_partial(index_t b, index_t k) { return bias_partial(b) + (G + k) * H_; }
  void finish_grad_partials(index_t B, index_t K, View<S> ddecay) {
    const index_t GH = G * H_;
    for (index_t b = 0; b < B; ++b) {
      const S* part = bias_partial(b);
      for (index_t i = 0; i < GH; ++i) bias_hh_.grad[i] += part[i];
      for (index_t i = 0; i < K * H_; ++i) ddecay[i] += part[GH + i];
    }
  }

  index_t I_, H_;
  Param<S> weight_ih_, weight_hh_, bias_ih_, bias_hh_;

 private:
  // Where PyTorch's gate blocks go in the fused cell's bias (oneDNN's order: LSTM i f g o;
  // LBR-GRU u r o u', with u = z and u' the b_hh of n that r multiplies), and which
  // fused gate carries the decay (LSTM f, GRU z).
  static constexpr FusedRnnKind kFusedKind = G == 4 ? FusedRnnKind::lstm : FusedRnnKind::lbr_gru;
  static constexpr int kIhBiasGate[4] = {G == 4 ? 0 : 1, G == 4 ? 1 : 0, 2, 3};
  static constexpr int kHhBiasGate[4] = {G == 4 ? 0 : 1, G == 4 ? 1 : 0, G == 4 ? 2 : 3, 3};
  static constexpr int kDecayBiasGate = G == 4 ? 1 : 0;
  index_t state_width_() const { return G == 4 ? 2 * H_ : H_; }
  // A state (or its gradient) (B,1,Sw), planes [h | c] (c for the LSTM), as the fused
  // cell's (B,H) tensors h and c, and back (overwriting, or with kAdd accumulating).
  void to_fused_planes(CView<S> s, index_t B, Tensor<S>& h, Tensor<S>& c) const {
    const index_t H = H_, Sw = state_width_();
    h.resize({B, H});
    c.resize({B, H});
    for (index_t b = 0; b < B; ++b) {
      std::copy_n(s.data + b * Sw, H, h.data() + b * H);
      if (G == 4) std::copy_n(s.data + b * Sw + H, H, c.data() + b * H);
    }
  }
  template <bool kAdd>
  void from_fused_planes(const Tensor<S>& h, const Tensor<S>& c, index_t B, View<S> s) const {
    const index_t H = H_, Sw = state_width_();
    for (index_t b = 0; b < B; ++b)
      for (index_t j = 0; j < H; ++j) {
        S* row = s.data + b * Sw;
        row[j] = kAdd ? row[j] + h[b * H + j] : h[b * H + j];
        if (G == 4) row[H + j] = kAdd ? row[H + j] + c[b * H + j] : c[b * H + j];
      }
  }

  bool fused_enabled_;
  std::unique_ptr<FusedRnn> fused_;
  Tensor<S> fused_bias_, fused_dbias_;  // (4H) in the fused cell's gate order
  Tensor<S> fused_h_, fused_c_;         // (B,H) s0 in; in backward dsT in, ds0 out
  Tensor<S> fused_hT_, fused_cT_;       // (B,H) sT out
  Tensor<S> grad_partials_;             // (B, G·H + K·H)
  PackedMatmul<S> recurrent_fwd_, recurrent_bwd_;
};

}  // namespace mtp
