// The matrix machinery shared by the PyTorch-layout recurrent cells (GRU: G = 3 gate
// blocks, LSTM: G = 4), each block H wide:
//
//   pre:    gi = x W_ih^T + b_ih                 one GEMM over all T·B rows, (T,B,G·H)
//   recur:  gh = h W_hh^T + b_hh                 one GEMM per step over all B·K rows
//
// and their backward: dx and dW_ih from dgi, the per-step dh ← dgh W_hh, and dW_hh as
// one GEMM over all steps at the end. Params: weight_ih (G·H,I), weight_hh (G·H,H),
// bias_ih (G·H), bias_hh (G·H), PyTorch's names and layout.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "mtp/core/cell.hpp"
#include "mtp/core/gemm.hpp"
#include "mtp/core/ops/linear.hpp"

namespace mtp {

template <class S, int G>
class GatedMatrixCell {
 public:
  using Scalar = S;
  struct Config {
    index_t input = 0;   // I
    index_t hidden = 0;  // H
  };
  // The mixer of a model of width W (DESIGN §2): H = W.
  static Config model_config(index_t width) { return {width, width}; }
  // I and H from the shapes of a parameter file: weight_ih is (G·H, I).
  template <class ShapeOf>
  static Config infer_config(ShapeOf&& shape_of) {
    const std::vector<index_t> w = shape_of("weight_ih");
    MTP_CHECK(w.size() == 2 && w[0] % G == 0 && w[0] > 0 && w[1] > 0,
              "weight_ih has shape {}, expected ({}H,I)", shape_str(w), G);
    return {w[1], w[0] / G};
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
  void pre_forward(CView<S> x, CView<S>, View<S> P) {
    linear_forward<S>(x, weight_ih_.value, bias_ih_.value.data, P);
  }
  // post is the identity (O = H): the aggregated hidden state is the layer output.
  void post_forward(CView<S> A, CView<S>, CView<S>, View<S> y) {
    std::copy(A.begin(), A.end(), y.data);
  }
  void post_backward(CView<S> dy, CView<S>, CView<S>, CView<S>, View<S> dA, View<S>, View<S>) {
    std::copy(dy.begin(), dy.end(), dA.data);
  }

  // Saved from forward: x. dP = dgi (T,B,G·H) → dx +=, dW_ih +=, db_ih +=.
  void pre_backward(CView<S> dP, CView<S> x, View<S> dx) {
    const index_t R = x.numel() / I_;
    matmul(dP.data, false, weight_ih_.value.data, false, dx.data, R, I_, G * H_, true);
    matmul(dP.data, true, x.data, false, weight_ih_.grad.data, G * H_, I_, R, true);
    sum_rows_accumulate(dP.data, R, G * H_, bias_ih_.grad.data);
  }

 protected:
  explicit GatedMatrixCell(const Config& cfg) : I_(cfg.input), H_(cfg.hidden) {
    MTP_CHECK(I_ > 0 && H_ > 0, "cell needs input and hidden widths > 0, got I={} H={}", I_, H_);
  }

  // gh (BK,G·H) = h (BK,H) · W_hh^T + b_hh.
  void recurrent_projection(const S* h, S* gh, index_t BK) const {
    matmul(h, false, weight_hh_.value.data, true, gh, BK, G * H_, H_, false, bias_hh_.value.data);
  }
  // dh (BK,H) += dgh (BK,G·H) · W_hh.
  void recurrent_projection_backward(const S* dgh, S* dh, index_t BK) const {
    matmul(dgh, false, weight_hh_.value.data, false, dh, BK, H_, G * H_, true);
  }
  // dW_hh (G·H,H) += Σ_t dgh_t^T h_{t−1}, db_hh += Σ dgh, for dgh (T,B,K,G·H): one GEMM
  // on the initial states h0 (BK,H), one over all later steps, whose h_{t−1} rows are
  // the outputs Yk[0..T−2] (contiguous).
  void recurrent_weight_grads(const S* dgh, const S* h0, const S* Yk, index_t T, index_t BK) const {
    const index_t GH = G * H_;
    matmul(dgh, true, h0, false, weight_hh_.grad.data, GH, H_, BK, true);
    if (T > 1)
      matmul(dgh + BK * GH, true, Yk, false, weight_hh_.grad.data, GH, H_, (T - 1) * BK, true);
    sum_rows_accumulate(dgh, T * BK, GH, bias_hh_.grad.data);
  }
  // ddecay[k] (K,H) += Σ_{t,b} dgh[t,b,k, gate block]: the decay enters that gate's
  // pre-activation exactly as b_hh does.
  void decay_grads(const S* dgh, int gate, index_t TB, index_t K, View<S> ddecay) const {
    const index_t GH = G * H_;
    for (index_t tb = 0; tb < TB; ++tb)
      for (index_t k = 0; k < K; ++k) {
        const S* d = dgh + (tb * K + k) * GH + gate * H_;
        S* dd = ddecay.data + k * H_;
        for (index_t j = 0; j < H_; ++j) dd[j] += d[j];
      }
  }

  index_t I_, H_;
  Param<S> weight_ih_, weight_hh_, bias_ih_, bias_hh_;
};

}  // namespace mtp
